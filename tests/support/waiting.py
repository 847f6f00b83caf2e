"""Waiting for work done elsewhere (a worker, a real process, the sandbox) without guessing a sleep."""

from __future__ import annotations

import time


def wait_until(predicate, timeout: float = 20, interval: float = 0.02, message: str = "condition"):
    """Poll with a deadline; returns the predicate's truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)
