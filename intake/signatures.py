"""Webhook signature checks. Both providers sign `t.body` with HMAC-SHA256; both may list several
secrets while one is rotated, and a delivery signed with any of them is genuine."""

from __future__ import annotations

import hashlib
import hmac
import time

import stripe

STRIPE_TOLERANCE_SECONDS = 300  # stripe-python's default
CALENDLY_TOLERANCE_SECONDS = 180  # Calendly's own sample rejects anything older than 3 minutes


class SignatureInvalid(Exception):
    pass


def verify_stripe(body: bytes, header: str | None, secrets: tuple[str, ...]) -> None:
    if not header:
        raise SignatureInvalid("missing Stripe-Signature header")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureInvalid("body is not UTF-8") from None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=STRIPE_TOLERANCE_SECONDS)
            return
        except stripe.SignatureVerificationError:
            continue
    raise SignatureInvalid("no valid Stripe signature")


def _parse_calendly_header(header: str) -> tuple[int, list[str]]:
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureInvalid("malformed Calendly-Webhook-Signature header")
    return timestamp, signatures


def verify_calendly(body: bytes, header: str | None, keys: tuple[str, ...], now: float | None = None) -> None:
    if not header:
        raise SignatureInvalid("missing Calendly-Webhook-Signature header")
    timestamp, signatures = _parse_calendly_header(header)
    now = time.time() if now is None else now
    if abs(now - timestamp) > CALENDLY_TOLERANCE_SECONDS:
        raise SignatureInvalid("timestamp outside the tolerance")
    signed = str(timestamp).encode() + b"." + body
    for key in keys:
        expected = hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, candidate) for candidate in signatures):
            return
    raise SignatureInvalid("no valid Calendly signature")
