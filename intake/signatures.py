"""Webhook signature checks. Both providers sign `t.body` with HMAC-SHA256 and send `t=<unix time>,
v1=<hex digest>`; both may list several secrets while one is rotated, and a delivery signed with any
of them is genuine. One parser reads both headers, so that they refuse alike whatever a header holds;
stripe-python then checks Stripe's signature on the header rebuilt from what was read."""

from __future__ import annotations

import hashlib
import hmac
import time

import stripe

STRIPE_TOLERANCE_SECONDS = 300  # stripe-python's default
CALENDLY_TOLERANCE_SECONDS = 180  # Calendly's own sample rejects anything older than 3 minutes
# Unix times have 10 digits until the year 2286; anything much longer is not a time.
MAX_TIMESTAMP_DIGITS = 12


class SignatureInvalid(Exception):
    pass


def _parse_header(header: str, name: str) -> tuple[int, list[bytes]]:
    timestamps, signatures = [], []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1" and value:
            # Compared as bytes: hmac.compare_digest refuses str that is not ASCII.
            signatures.append(value.encode("utf-8", "surrogateescape"))
    if len(timestamps) != 1 or not signatures:
        raise SignatureInvalid(f"malformed {name} header")
    (timestamp,) = timestamps
    # isdigit() alone takes '²' and other digits int() cannot read.
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= MAX_TIMESTAMP_DIGITS):
        raise SignatureInvalid(f"malformed {name} header")
    return int(timestamp), signatures


def _read(header: str | None, name: str, tolerance: int, now: float | None) -> tuple[int, list[bytes]]:
    if not header:
        raise SignatureInvalid(f"missing {name} header")
    timestamp, signatures = _parse_header(header, name)
    now = time.time() if now is None else now
    # Too old is a replay; from the future is refused as well (stripe-python lets those through).
    if abs(now - timestamp) > tolerance:
        raise SignatureInvalid("timestamp outside the tolerance")
    return timestamp, signatures


def verify_stripe(body: bytes, header: str | None, secrets: tuple[str, ...], now: float | None = None) -> None:
    try:
        payload = body.decode("utf-8")  # Stripe signs the text of the event: a body that is not UTF-8 is not one
    except UnicodeDecodeError:
        raise SignatureInvalid("body is not UTF-8") from None
    timestamp, signatures = _read(header, "Stripe-Signature", STRIPE_TOLERANCE_SECONDS, now)
    # stripe-python compares str digests, and raises on one that is not ASCII: it gets only those
    # that could match, in the header's own format.
    candidates = [s.decode() for s in signatures if s.isascii()]
    if not candidates:
        raise SignatureInvalid("no valid signature")
    rebuilt = ",".join([f"t={timestamp}"] + [f"v1={candidate}" for candidate in candidates])
    for secret in filter(None, secrets):  # an empty secret would be one anybody can sign with
        try:
            stripe.WebhookSignature.verify_header(payload, rebuilt, secret, tolerance=STRIPE_TOLERANCE_SECONDS)
            return
        except stripe.SignatureVerificationError:
            continue
    raise SignatureInvalid("no valid signature")


def verify_calendly(body: bytes, header: str | None, keys: tuple[str, ...], now: float | None = None) -> None:
    timestamp, signatures = _read(header, "Calendly-Webhook-Signature", CALENDLY_TOLERANCE_SECONDS, now)
    signed = str(timestamp).encode() + b"." + body
    for key in filter(None, keys):  # an empty key would be one anybody can sign with
        expected = hmac.new(key.encode(), signed, hashlib.sha256).hexdigest().encode()
        if any(hmac.compare_digest(expected, candidate) for candidate in signatures):
            return
    raise SignatureInvalid("no valid signature")
