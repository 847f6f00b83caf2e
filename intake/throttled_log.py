"""A warning that may recur on every request, logged at most once per interval with how often it
recurred meanwhile: a flood of requests must not become a flood of log lines."""

from __future__ import annotations

import logging
import threading
import time


class ThrottledWarning:
    def __init__(self, logger: logging.Logger, every_seconds: float = 60.0):
        self.logger, self.every_seconds = logger, every_seconds
        self._lock = threading.Lock()
        self._next_at = 0.0
        self._unreported = 0

    def warning(self, message: str, *args) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next_at:
                self._unreported += 1
                return
            again, self._unreported = self._unreported, 0
            self._next_at = now + self.every_seconds
        if again:
            message += " (and %d times more since the last such line)"
            args = (*args, again)
        self.logger.warning(message, *args, stacklevel=2)
