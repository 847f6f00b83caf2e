"""What the client asks for or tells us: its scheduling report, cancelling, paying again, rescheduling.

The intake checks the state for a quick 409 and enqueues; the decision is made here, against the
state as it is when the job runs.
"""

from __future__ import annotations

import dramatiq

from jobs import events, flow
from jobs.checkout import attempt_expiry
from models.db import utcnow
from models.states import State, Trigger, TransitionRefused, allowed
from models.tables import Booking, ProviderEvent

REPORTABLE = (State.CALENDLY_SCHEDULING, State.ERROR_WEBHOOK)
ACTOR_OPTIONS = dict(max_retries=6, min_backoff=1_000, max_backoff=60_000, max_age=6 * 3600_000, time_limit=120_000)


def record_scheduled(booking_id: str, event_uri: str, invitee_uri: str) -> None:
    booking = Booking.get_or_none(Booking.id == booking_id)
    if booking is None:
        return
    if State(booking.state) in REPORTABLE:
        try:
            flow.move(booking_id, Trigger.onCalendlyEventCreated, cause=f"client-{invitee_uri}",
                      calendly_event_uri=event_uri, calendly_invitee_uri=invitee_uri)
        except TransitionRefused:
            pass  # the webhook got there first: it carries the same URIs
    # An invitee.created that came before this report and found no booking is matched now.
    waiting = ProviderEvent.select(ProviderEvent.id).where(
        ProviderEvent.provider == "calendly", ProviderEvent.type == "invitee.created",
        ProviderEvent.subject == invitee_uri, ProviderEvent.outcome == "unmatched",
    )
    for event in waiting:
        reopened = (
            ProviderEvent.update(processed_at=None, outcome=None)
            .where(ProviderEvent.id == event.id, ProviderEvent.outcome == "unmatched")
            .execute()
        )
        if reopened:
            events.process(event.id)


@dramatiq.actor(**ACTOR_OPTIONS)
def client_reported_scheduled(booking_id: str, event_uri: str, invitee_uri: str) -> None:
    record_scheduled(booking_id, event_uri, invitee_uri)


def cancel(booking_id: str, reason: str, request_id: str) -> None:
    booking = Booking.get_or_none(Booking.id == booking_id)
    if booking is None:
        return
    # After confirmation a cancellation refunds by policy; before it, the flow is abandoned.
    trigger = next((t for t in (Trigger.cancelBooking, Trigger.cancelBookingProcess) if allowed(booking, t)), None)
    if trigger is None:
        return  # already cancelled, or past the point a client can cancel
    try:
        flow.move(booking_id, trigger, cause=f"client-cancel-{request_id}", cancelled_by="client",
                  cancel_reason=reason or "cancelled by the client", released_at=None, settled_at=None)
    except TransitionRefused:
        return
    flow.advance(booking_id)


@dramatiq.actor(**ACTOR_OPTIONS)
def client_cancelled(booking_id: str, reason: str, request_id: str) -> None:
    cancel(booking_id, reason, request_id)


def retry_payment(booking_id: str, request_id: str) -> None:
    booking = Booking.get_or_none(Booking.id == booking_id)
    if booking is None or not allowed(booking, Trigger.retryPayment):
        return
    attempt = booking.payment_attempt + 1
    try:
        # A new attempt: a new Checkout Session under a new idempotency key.
        flow.move(booking_id, Trigger.retryPayment, cause=f"client-retry-{request_id}", payment_attempt=attempt,
                  checkout_expires_at=attempt_expiry(utcnow()), checkout_session_id=None, checkout_url=None)
    except TransitionRefused:
        return
    flow.advance(booking_id)


@dramatiq.actor(**ACTOR_OPTIONS)
def client_retried_payment(booking_id: str, request_id: str) -> None:
    retry_payment(booking_id, request_id)
