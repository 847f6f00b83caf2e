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
from jobs import errors, flow
from bookingflow.providers import payload_schemas
from bookingflow.providers.calendly_payloads import PayloadInvalid
from jobs.dispatch import Outcome, handler_for
from models.db import utcnow
from models.states import Trigger, allowed
from models.tables import Booking, ProviderEvent

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
        payload_schemas.check(event.provider, event.type, body)
        return handler(event, body)
    except PayloadInvalid as exc:
        return invalid(event, body, str(exc))


def _booking_named_by(body) -> Booking | None:
    """The booking an invalid payload is about, if the fields that name it can still be read."""
    def dig(*path):
        value = body
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value if isinstance(value, str) and len(value) <= 64 else None

    for booking_id in (dig("payload", "tracking", "utm_content"), dig("data", "object", "client_reference_id"),
                       dig("data", "object", "metadata", "booking_id")):
        if booking_id:
            booking = Booking.get_or_none(Booking.id == booking_id)
            if booking is not None:
                return booking
    return None


def invalid(event: ProviderEvent, body, reason: str) -> Outcome:
    """Kept with the reason; the booking it names, if any, shows a validation error and, where the
    table allows, goes to ERROR_WEBHOOK for the scheduler's recovery."""
    booking = _booking_named_by(body)
    if booking is None:
        return Outcome("invalid", detail=reason)
    failure = errors.failure(errors.ErrorClass.VALIDATION, "A message from our scheduling or payment partner about "
                                                           "this booking could not be read; we are looking into it.")
    if allowed(booking, Trigger.onWebhookError):
        flow.move(booking.id, Trigger.onWebhookError, cause=f"invalid-{event.event_id}"[:255],
                  last_error=f"invalid {event.provider} {event.type}: {reason}"[:500], failure=failure)
    else:
        Booking.update(error_class=failure.error_class, error_message=failure.message,
                       last_error=f"invalid {event.provider} {event.type}: {reason}"[:500]).where(
            Booking.id == booking.id).execute()
    return Outcome("invalid", booking.id, reason)


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

