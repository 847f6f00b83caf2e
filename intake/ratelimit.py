"""The per-address rate limit on the client API (`/v1/...`; never the webhooks or the operations
endpoints), with the `limits` package.

Counters live in Redis when there is one (RATE_LIMIT_STORAGE_URL, else the broker's Redis), so that
the limit holds across web workers and instances; otherwise in this process's memory, which is
enough for `bookingflow dev`. A moving window: at most N requests in any period of the given length,
and `Retry-After` is when the oldest of them leaves the window.

The limit never makes the client API fail: when the store cannot be reached the request is served
unchecked, a warning is logged (at most once a minute), and the store is left alone for a few seconds
so that every request does not wait for its timeout.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from urllib.parse import urlsplit

from flask import Flask, request
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from bookingflow.settings import Settings
from intake.client_ip import Address, client_address
from intake.errors import error_response
from intake.throttled_log import ThrottledWarning

CLIENT_API_PREFIX = "/v1/"
KEY_PREFIX = "bookingflow:ratelimit"
STORE_TIMEOUT_SECONDS = 1.0
STORE_PAUSE_SECONDS = 5.0

log = logging.getLogger(__name__)


def storage_url(settings: Settings) -> str:
    if settings.rate_limit_storage_url:
        return settings.rate_limit_storage_url
    if urlsplit(settings.broker_url).scheme in ("redis", "rediss"):
        return settings.broker_url
    return "memory://"


def client_key(address: Address | None) -> str:
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        # One IPv6 client is usually given a whole /64: counted by address it could rotate past any limit.
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ClientRateLimit:
    def __init__(self, spec: str, url: str):
        self.items = parse_many(spec)
        options = {}
        if urlsplit(url).scheme in ("redis", "rediss"):
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # No retries inside redis-py: a store that is down is paused below instead.
            options = {"key_prefix": KEY_PREFIX, "socket_connect_timeout": STORE_TIMEOUT_SECONDS,
                       "socket_timeout": STORE_TIMEOUT_SECONDS, "retry": Retry(NoBackoff(), 0)}
        self.limiter = MovingWindowRateLimiter(storage_from_string(url, **options))
        self._lock = threading.Lock()
        self._paused_until = 0.0
        self._failing = False
        self._store_down = ThrottledWarning(log)

    def retry_after(self, key: str) -> int | None:
        """Count a request from `key`: None when it may go on, else the seconds to wait."""
        if time.monotonic() < self._paused_until:
            self._store_down.warning("rate limit store unreachable: serving the client API unlimited")
            return None
        try:
            # In order, stopping at the first limit reached: a refused request still counts
            # towards the limits before it, which only errs on the side of refusing.
            for item in self.items:
                if not self.limiter.hit(item, key):
                    reset_at, _remaining = self.limiter.get_window_stats(item, key)
                    return max(1, math.ceil(reset_at - time.time()))
        except Exception as exc:  # noqa: BLE001 - whatever the store raises, the request is served
            with self._lock:
                self._paused_until = time.monotonic() + STORE_PAUSE_SECONDS
                self._failing = True
            self._store_down.warning("rate limit store unreachable (%s): serving the client API unlimited",
                                     exc.__class__.__name__)
            return None
        if self._failing:
            with self._lock:
                recovered, self._failing = self._failing, False
            if recovered:
                log.info("rate limit store reachable again: the client API is limited again")
        return None


def init_app(app: Flask, settings: Settings) -> None:
    if not settings.client_rate_limit:
        return
    limit = ClientRateLimit(settings.client_rate_limit, storage_url(settings))

    @app.before_request
    def limit_client_api():
        if not request.path.startswith(CLIENT_API_PREFIX):
            return None
        seconds = limit.retry_after(client_key(client_address()))
        if seconds is None:
            return None
        response = error_response(429, "rate_limited",
                                  f"too many requests from this address; try again in {seconds} s")
        response.headers["Retry-After"] = str(seconds)
        return response
