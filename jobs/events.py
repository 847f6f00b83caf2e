"""Processing a stored provider event: dispatch by (provider, type) to a plain handler.

The intake stores every accepted delivery and sends only its row id. A handler returns an outcome
name; the event is then marked processed with a compare-and-set, so a second worker, a retry or a
replay finds it done. Handlers themselves are safe to run twice (transitions dedupe on the cause).
"""

from __future__ import annotations

import json
import logging

import dramatiq

from bookingflow import broker, logs, metrics
from bookingflow.deliveries import CLIENT
from bookingflow.error_classes import ErrorClass, failure
from bookingflow.providers import payload_schemas
from bookingflow.providers.calendly_payloads import PayloadInvalid
from jobs import flow
from jobs.dispatch import handler_for
from jobs.outcomes import MOVED, Outcome, Result
from models import inbox
from models.states import Trigger, allowed, record_failure
from models.tables import Booking, ProviderEvent

log = logging.getLogger(__name__)


def run_handler(event: ProviderEvent) -> Outcome:
    handler = handler_for(event.provider, event.type)
    if handler is None:
        return Outcome(Result.IGNORED, detail="event type not handled")
    try:
        body = json.loads(event.payload)
    except (TypeError, ValueError):
        return Outcome(Result.INVALID, detail="stored payload is not JSON")
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
            booking = Booking.by_id(booking_id)
            if booking is not None:
                return booking
    return None


def invalid(event: ProviderEvent, body, reason: str) -> Outcome:
    """Kept with the reason; the booking it names, if any, shows a validation error and, where the
    table allows, goes to ERROR_WEBHOOK for the scheduler's recovery."""
    booking = _booking_named_by(body)
    if booking is None:
        return Outcome(Result.INVALID, detail=reason)
    unreadable = failure(ErrorClass.VALIDATION, "A message from our scheduling or payment partner about "
                                                "this booking could not be read; we are looking into it.")
    last_error = f"invalid {event.provider} {event.type}: {reason}"
    if allowed(booking, Trigger.onWebhookError):
        flow.move(booking.id, Trigger.onWebhookError, cause=f"invalid-{event.event_id}"[:255],
                  last_error=last_error[:500], failure=unreadable)
    else:
        record_failure(booking.id, unreadable.error_class, unreadable.message, last_error)
    return Outcome(Result.INVALID, booking.id, reason)


def process(event_pk: int) -> Outcome | None:
    event = inbox.take_unprocessed(event_pk)
    if event is None:
        return None
    logs.event_id.set(event.event_id)
    metrics.event_received_at.set(event.received_at)
    logs.bind_booking(event.booking_id or (event.subject if event.provider == CLIENT else None))
    outcome = run_handler(event)
    if outcome.booking_id and outcome.result in MOVED:
        # Before the event is marked processed: a failure here retries the whole delivery, whose
        # handler then finds its transition done and the booking is advanced again.
        flow.advance(outcome.booking_id)
    if inbox.finish(event, outcome.name, outcome.booking_id, outcome.detail):
        logs.bind_booking(outcome.booking_id)
        log.info("event %s %s %s: %s", event.provider, event.type, event.event_id, outcome.name)
        metrics.delivery(event.provider, event.type, outcome.name)
    for waiting in outcome.reopened:
        process(waiting)
    return outcome


@dramatiq.actor(actor_name=broker.PROCESS_EVENT, max_retries=8, min_backoff=1_000, max_backoff=300_000, max_age=24 * 3600_000, time_limit=120_000)
def process_event(event_pk: int) -> None:
    process(event_pk)

