"""Living within the providers' rate limits.

A 429 is answered by waiting as long as the provider asks (Retry-After, or Calendly's
X-RateLimit-Reset): briefly inside the call, or, when the wait is longer, by handing the message
back to Dramatiq to run again after exactly that delay. Calendly reports its remaining budget on
every response; dropping below a tenth of it logs a warning, once per window.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from dramatiq.errors import Retry

log = logging.getLogger(__name__)

INLINE_WAIT_SECONDS = 5.0  # longer waits go back to the queue instead of holding a worker thread
INLINE_ATTEMPTS = 2
HEADROOM_WARNING = 0.1


class RateLimited(Retry):
    """The provider asked us to slow down; the job runs again after `delay` milliseconds."""

    def __init__(self, provider: str, wait_seconds: float):
        super().__init__(f"{provider} rate limit: retry in {wait_seconds:.1f}s", delay=int(wait_seconds * 1000))
        self.provider, self.wait_seconds = provider, wait_seconds


def backoff(attempt: int) -> float:
    return min(30.0, 0.5 * 2 ** attempt) * (0.5 + random.random() / 2)


def seconds_from(header_value) -> float | None:
    try:
        value = float(header_value)
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


def wait_or_defer(provider: str, wait_seconds: float, attempt: int) -> None:
    """Sleep now if the wait is short and we have attempts left; else raise RateLimited."""
    if wait_seconds <= INLINE_WAIT_SECONDS and attempt < INLINE_ATTEMPTS:
        log.warning("%s rate limit reached: waiting %.1fs (attempt %d)", provider, wait_seconds, attempt + 1)
        time.sleep(wait_seconds)
        return
    log.warning("%s rate limit reached: job deferred %.1fs", provider, wait_seconds)
    raise RateLimited(provider, wait_seconds)


class Headroom:
    """Warns once per rate-limit window when a provider's remaining budget runs low."""

    def __init__(self, provider: str):
        self.provider = provider
        self._lock = threading.Lock()
        self._warned_until = 0.0

    def observe(self, limit, remaining, reset_seconds) -> bool:
        limit, remaining = seconds_from(limit), seconds_from(remaining)
        if not limit or remaining is None or remaining > limit * HEADROOM_WARNING:
            return False
        with self._lock:
            now = time.monotonic()
            if now < self._warned_until:
                return False
            self._warned_until = now + (seconds_from(reset_seconds) or 60)
        log.warning("%s rate limit nearly reached: %d of %d requests left in this window",
                    self.provider, int(remaining), int(limit))
        return True
