"""Structured logs: one JSON object per line, carrying the request id that follows the work from
the intake to the job to the sweep, and the booking and provider event it concerns. E-mail
addresses, names given as fields, secrets (the configured ones by value) and signatures are masked in
every line, whatever logged them."""

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

EMAIL = re.compile(r"([A-Za-z0-9])[A-Za-z0-9._%+-]*(@|%40)([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
SECRET = re.compile(
    r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9_]+|\bwhsec_[A-Za-z0-9_]+|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+"
    r"|(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"  # user:password in a URL
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # a JWT, as Calendly's access tokens are
    r"|\b(?:pi|seti|cs|src)_[A-Za-z0-9]+_secret_[A-Za-z0-9]+"  # a Stripe client secret
    r"|(?<=\bv[01]=)[0-9A-Fa-f]{16,}"  # the MAC of a Stripe-Signature or Calendly-Webhook-Signature
    # Who holds a Checkout Session's URL can open its page, which shows the client's e-mail.
    r"|(?<=checkout\.stripe\.com/)[^\s\"'<>]+|(?<=/checkout/)cs_[A-Za-z0-9_]+(?:#[^\s\"'<>]*)?"
)
# A person's name can only be told from other text by where it stands: as the value of a key in a
# dict, a JSON object or a URL's query (the Calendly link is prefilled with the e-mail and the name).
PERSONAL_VALUE = re.compile(
    r"""(?P<key>["']?\b(?:name|first_name|last_name|full_name|email)["']?\s*[:=]\s*)"""
    r"""(?P<quote>["'])(?:(?!(?P=quote))[^\\]|\\.)*(?P=quote)"""
)
PERSONAL_PARAMETER = re.compile(r"(?P<key>[?&](?:name|first_name|last_name|email)=)[^&#\s\"'<>]*")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Configured credentials shorter than this are not masked by value (they would mask ordinary words).
SHORTEST_MASKED_CREDENTIAL = 8
_credentials: tuple[object, re.Pattern | None] = (None, None)


def _configured_credentials() -> re.Pattern | None:
    """The process's own credentials, whatever their shape (a Calendly signing key is any string the
    operator chose): matched by value, built again when the settings change."""
    global _credentials
    from bookingflow import settings as settings_module

    try:
        current = settings_module.get()
    except Exception:  # a malformed setting: the process stops with its own message, logging must not
        return None
    if _credentials[0] is not current:
        values = {current.stripe_secret_key, current.calendly_api_token, *current.stripe_webhook_secrets,
                  *current.calendly_signing_keys, *current.data_encryption_keys, current.metrics_token,
                  current.alert_webhook_url}  # a Slack incoming webhook's URL is its credential
        values = sorted((v for v in values if v and len(v) >= SHORTEST_MASKED_CREDENTIAL), key=len, reverse=True)
        _credentials = (current, re.compile("|".join(map(re.escape, values))) if values else None)
    return _credentials[1]


def mask(text: str) -> str:
    """The text with e-mail addresses shortened to their first letter and domain, and credentials,
    signatures, checkout links and the values of name and e-mail fields replaced."""
    credentials = _configured_credentials()
    if credentials is not None:
        text = credentials.sub("[secret]", text)
    text = PERSONAL_VALUE.sub(r"\g<key>\g<quote>[personal]\g<quote>", text)
    text = PERSONAL_PARAMETER.sub(r"\g<key>[personal]", text)
    return SECRET.sub("[secret]", EMAIL.sub(r"\1***\2\3", text))


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
