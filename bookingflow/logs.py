"""Structured logs: one JSON object per line, carrying the request id that follows the work from
the intake to the job to the sweep, and the booking and provider event it concerns. E-mail
addresses and secrets are masked in every line, whatever logged them."""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import uuid
from contextlib import contextmanager

request_id = contextvars.ContextVar("request_id", default=None)
booking_id = contextvars.ContextVar("booking_id", default=None)
event_id = contextvars.ContextVar("event_id", default=None)
CONTEXT = {"request_id": request_id, "booking_id": booking_id, "event_id": event_id}

EMAIL = re.compile(r"([A-Za-z0-9])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
SECRET = re.compile(
    r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9_]+|\bwhsec_[A-Za-z0-9_]+|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"
    r"|(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"  # user:password in a URL
)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def mask(text: str) -> str:
    return SECRET.sub("[secret]", EMAIL.sub(r"\1***@\2", text))


def new_request_id(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex[:16]


def valid_request_id(value: str | None) -> str | None:
    return value if value and REQUEST_ID.match(value) else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask(record.getMessage()),
        }
        for name, variable in CONTEXT.items():
            value = getattr(record, name, None) or variable.get()
            if value:
                entry[name] = value
        if record.exc_info:
            entry["error"] = mask(self.formatException(record.exc_info))
        entry["pid"] = record.process
        return json.dumps(entry, default=str)


class MaskingFormatter(logging.Formatter):
    """Plain text for `bookingflow dev`, masked all the same."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


def configure(json_lines: bool = True, level: int = logging.INFO, stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else MaskingFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def configure_unless_configured() -> None:
    """For processes started by a CLI that left logging to us (`dramatiq --skip-logging`)."""
    if not logging.getLogger().handlers:
        configure(json_lines=True)


@contextmanager
def bound(**values):
    """Set context (request_id, booking_id, event_id) for the duration of a block."""
    tokens = [(CONTEXT[name], CONTEXT[name].set(value)) for name, value in values.items() if value is not None]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


def bind_booking(value: str | None) -> None:
    """The booking the current request or message is about, from here on (reset with the context)."""
    if value:
        booking_id.set(value)
