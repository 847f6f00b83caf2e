"""The inbox: everything accepted from outside (provider deliveries and client requests) is stored
before it is acknowledged, then its row id is queued. A lost message is found again by the
scheduler's sweep of unprocessed rows, so an acknowledged delivery or request is never lost.

A delivery is stored as received, except that a Stripe payload loses its card and cardholder details
first (see bookingflow.privacy): nothing we do needs them, so we do not keep them. With
DATA_ENCRYPTION_KEY set, the stored body is encrypted (it holds the client's e-mail and name)."""

from __future__ import annotations

import json

from bookingflow import broker, logs
from bookingflow.privacy import may_hold_card_data, without_card_data
from intake.queue import enqueue
from models.inbox import store
from models.tables import ProviderEvent


def without_card_details(payload: str, body: dict) -> str:
    """A Stripe payload to keep: the body as received (`payload`, parsed as `body`), or, when it carries
    card or cardholder details, the same JSON without them."""
    if not may_hold_card_data(payload):
        return payload
    try:
        kept = without_card_data(body)
    except RecursionError:
        # Nested nearly as deep as json could parse, a few frames deeper here: no Stripe object is
        # shaped so, and its signature was good; kept as received rather than refused after that.
        return payload
    return payload if kept == body else json.dumps(kept, ensure_ascii=False, separators=(",", ":"))


def accept(provider: str, event_id: str, event_type: str, subject: str | None, payload: str) -> tuple[ProviderEvent, bool]:
    """Store, then queue unless already processed; a broker failure is a 503 (ApiError)."""
    logs.event_id.set(event_id[:255])
    event, new = store(provider, event_id, event_type, subject, payload)
    if event.processed_at is None:
        # Also for a repeat of an unprocessed one: its first enqueue may have failed (we answered 503
        # then). Processing is idempotent, so an extra message costs nothing.
        enqueue(broker.PROCESS_EVENT, event.id)
    return event, new
