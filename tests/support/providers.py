"""Signed provider deliveries for tests, built from the real payload shapes in tests/fixtures/."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def luhn_valid(digits: str) -> bool:
    """The check digit every payment card number carries: a stored run of digits that passes it may be one."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def fixture(path: str) -> dict:
    return json.loads((FIXTURES / path).read_text())


def _hmac(key: str, timestamp: int, body: bytes) -> str:
    return hmac.new(key.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def stripe_signature(body: bytes, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={_hmac(secret, timestamp, body)}"


def calendly_signature(body: bytes, key: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return f"t={timestamp},v1={_hmac(key, timestamp, body)}"


def encode(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def stripe_event(event_type: str, obj: dict, event_id: str | None = None) -> dict:
    """Stripe's event envelope (fixtures/stripe/event.json) around `obj`."""
    event = fixture("stripe/event.json")
    event.update(id=event_id or f"evt_test_{secrets.token_hex(12)}", type=event_type, created=int(time.time()))
    event["data"] = {"object": obj}
    return event


def checkout_session(booking_id: str, amount: int, currency: str = "usd", payment_status: str = "paid",
                     session_id: str | None = None) -> dict:
    """A Checkout Session (fixtures/stripe/checkout_session.json) for a booking."""
    session = fixture("stripe/checkout_session.json")
    session.update(
        id=session_id or f"cs_test_{secrets.token_hex(16)}", client_reference_id=booking_id,
        metadata={"booking_id": booking_id}, amount_total=amount, amount_subtotal=amount, currency=currency,
        payment_status=payment_status, status="complete", payment_intent=f"pi_test_{secrets.token_hex(12)}",
    )
    return session


def calendly_invitee_delivery(kind: str, *, event_uri: str, invitee_uri: str, utm_content: str | None,
                              embedded: dict | None = None) -> dict:
    """An invitee webhook body: the 2023 shape, or the newer one when `embedded` (the event) is given."""
    if embedded is not None:
        body = copy.deepcopy(fixture(f"calendly/calendly_{kind.replace('.', '_')}__docs_transcription_with_scheduled_event.json"))
        body["payload"]["scheduled_event"] = {**body["payload"]["scheduled_event"], **embedded, "uri": event_uri}
    else:
        body = copy.deepcopy(fixture(f"calendly/openapi_webhook_{kind.replace('.', '_')}.json"))
    body["payload"].update(uri=invitee_uri, event=event_uri)
    body["payload"]["tracking"] = {**body["payload"].get("tracking", {}), "utm_content": utm_content}
    return body
