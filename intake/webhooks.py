"""Provider webhooks: verify, store, enqueue, answer. No provider call and no booking work here."""

from __future__ import annotations

import hashlib
import json

from flask import Blueprint, current_app, jsonify, request

from intake import inbox
from intake.errors import ApiError
from intake.signatures import SignatureInvalid, verify_calendly, verify_stripe
from bookingflow.providers.calendly_payloads import delivery_identity
from models.db import storable

bp = Blueprint("webhooks", __name__)


def _json_object(body: bytes) -> tuple[str, dict]:
    """The body as text (what is stored) and as the JSON object it must be."""
    # Decoded here, not by json.loads: that would take UTF-16 and UTF-32 too, but the payload is
    # stored and read again as UTF-8 text.
    try:
        text = body.decode("utf-8")
        parsed = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: nested too deep to parse
        raise ApiError(400, "invalid_json", "the body is not UTF-8 JSON") from None
    if not isinstance(parsed, dict):
        raise ApiError(400, "invalid_json", "the body is not a JSON object")
    return text, parsed


def _bounded(value, name: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or not storable(value):
        raise ApiError(400, "invalid_event", f"the event has no usable {name}")
    return value


def accept(provider: str, event_id: str, event_type: str, subject: str | None, payload: str):
    _, new = inbox.accept(provider, event_id, event_type, subject, payload)
    return jsonify({"received": True, "duplicate": not new}), 200


def _verified_body(verify) -> bytes:
    body = request.get_data(cache=False)  # MAX_CONTENT_LENGTH turns an oversize body into 413
    try:
        verify(body)
    except SignatureInvalid as exc:
        raise ApiError(400, "invalid_signature", str(exc)) from None
    return body


@bp.post("/webhooks/stripe")
def stripe_webhook():
    secrets = current_app.config["SETTINGS"].stripe_webhook_secrets
    body = _verified_body(lambda raw: verify_stripe(raw, request.headers.get("Stripe-Signature"), secrets))
    text, event = _json_object(body)
    event_id = _bounded(event.get("id"), "id", 255)
    event_type = _bounded(event.get("type"), "type", 100)
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    obj = data.get("object") if isinstance(data.get("object"), dict) else {}
    subject = obj.get("id") if isinstance(obj.get("id"), str) and storable(obj["id"]) else None
    # Parsed once, here: the stored copy loses any card and cardholder details from the same parse.
    payload = inbox.without_card_details(text, event)
    return accept("stripe", event_id, event_type, subject and subject[:500], payload)


@bp.post("/webhooks/calendly")
def calendly_webhook():
    keys = current_app.config["SETTINGS"].calendly_signing_keys
    body = _verified_body(lambda raw: verify_calendly(raw, request.headers.get("Calendly-Webhook-Signature"), keys))
    text, delivery = _json_object(body)
    event_type = _bounded(delivery.get("event"), "event", 100)
    event_id, subject = delivery_identity(delivery)
    if subject is not None and not storable(subject):
        raise ApiError(400, "invalid_event", "the event has no usable payload.uri")
    if event_id is None:
        event_id = f"{event_type}:sha256:{hashlib.sha256(body).hexdigest()}"
    return accept("calendly", event_id[:255], event_type, subject, text)
