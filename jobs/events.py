"""Processing a stored provider event: dispatch by (provider, type) to a plain handler.

The intake stores every accepted delivery and sends only its row id. A handler returns an outcome
name; the event is then marked processed with a compare-and-set, so a second worker, a retry or a
replay finds it done. Handlers themselves are safe to run twice (transitions dedupe on the cause).
"""

from __future__ import annotations

import json
import logging

import dramatiq

from bookingflow import logs, metrics

from jobs import calendly_events, client_requests, stripe_events  # noqa: F401  (they register their handlers)
from jobs.calendly_payloads import PayloadInvalid
from jobs.dispatch import Outcome, handler_for
from models.db import utcnow
from models.tables import ProviderEvent

log = logging.getLogger(__name__)


def finish(event: ProviderEvent, outcome: Outcome) -> bool:
    """Mark the event processed unless someone already did; True if we did."""
    updated = (
        ProviderEvent.update(
            processed_at=utcnow(), outcome=outcome.name,
            detail=(outcome.detail or "")[:1000] or None,
            booking=outcome.booking_id or event.booking_id,
        )
        .where(ProviderEvent.id == event.id, ProviderEvent.processed_at.is_null())
        .execute()
    )
    return updated == 1


def run_handler(event: ProviderEvent) -> Outcome:
    handler = handler_for(event.provider, event.type)
    if handler is None:
        return Outcome("ignored", detail="event type not handled")
    try:
        body = json.loads(event.payload)
    except (TypeError, ValueError):
        return Outcome("invalid", detail="stored payload is not JSON")
    try:
        return handler(event, body)
    except PayloadInvalid as exc:
        return Outcome("invalid", detail=str(exc))


def process(event_pk: int) -> Outcome | None:
    event = ProviderEvent.get_or_none(ProviderEvent.id == event_pk)
    if event is None or event.processed_at is not None:
        return None
    logs.event_id.set(event.event_id)
    metrics.event_received_at.set(event.received_at)
    logs.bind_booking(event.booking_id or (event.subject if event.provider == "client" else None))
    ProviderEvent.update(attempts=ProviderEvent.attempts + 1).where(ProviderEvent.id == event_pk).execute()
    outcome = run_handler(event)
    if finish(event, outcome):
        logs.bind_booking(outcome.booking_id)
        log.info("event %s %s %s: %s", event.provider, event.type, event.event_id, outcome.name)
        metrics.delivery(event.provider, event.type, outcome.name)
    return outcome


@dramatiq.actor(max_retries=8, min_backoff=1_000, max_backoff=300_000, max_age=24 * 3600_000, time_limit=120_000)
def process_event(event_pk: int) -> None:
    process(event_pk)

