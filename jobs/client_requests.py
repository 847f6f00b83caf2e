"""What the client asks for or tells us: its scheduling report, cancelling, paying again.

The intake stores each request in the inbox (provider "client") and answers 202; these handlers
decide, against the booking as it is when the job runs. Stored first, a request outlives a lost
message like any webhook does.
"""

from __future__ import annotations

import dataclasses

from bookingflow.deliveries import CALENDLY, INVITEE_CREATED
from bookingflow.error_classes import ErrorClass
from jobs import flow
from jobs.outcomes import Outcome, Result
from models import bookings
from models.inbox import reopen_event
from models.states import REPORTABLE, State, TransitionRefused, Trigger, allowed, record_failure
from models.tables import Booking, ProviderEvent


def _booking(event: ProviderEvent) -> Booking | None:
    return Booking.by_id(event.subject)


def scheduled(event: ProviderEvent, body: dict) -> Outcome:
    booking = _booking(event)
    if booking is None:
        return Outcome(Result.UNMATCHED)
    event_uri, invitee_uri = body["event_uri"], body["invitee_uri"]
    outcome = Outcome(Result.RECORDED, booking.id)
    if State(booking.state) in REPORTABLE:
        # Checked again here, against Calendly, before anything moves: the intake may have stored the
        # report while Calendly could not answer, and the booking may have changed since.
        refusal = bookings.report_refusal(booking, event_uri, invitee_uri)
        if refusal is not None:
            record_failure(booking.id, ErrorClass.VALIDATION.value, refusal.message, f"report refused: {refusal.code}")
            return Outcome(Result(refusal.code), booking.id, refusal.message)
        try:
            flow.move(booking.id, Trigger.onCalendlyEventCreated, cause=f"client-{invitee_uri}"[:255],
                      calendly_event_uri=event_uri, calendly_invitee_uri=invitee_uri)
            outcome = Outcome(Result.ADVANCED, booking.id)
        except TransitionRefused:
            pass  # the webhook got there first: it carries the same URIs
    # An invitee.created that came before this report and found no booking is matched now.
    waiting = ProviderEvent.select(ProviderEvent.id).where(
        ProviderEvent.provider == CALENDLY, ProviderEvent.type == INVITEE_CREATED,
        ProviderEvent.subject == invitee_uri, ProviderEvent.outcome == Result.UNMATCHED.value,
    )
    reopened = tuple(stored.id for stored in waiting if reopen_event(stored.id, only_if_outcome=Result.UNMATCHED.value))
    return dataclasses.replace(outcome, reopened=reopened)


def cancel(event: ProviderEvent, body: dict) -> Outcome:
    booking = _booking(event)
    if booking is None:
        return Outcome(Result.UNMATCHED)
    # After confirmation a cancellation refunds by policy; before it, the flow is abandoned.
    applied = flow.cancel(booking.id, f"client-{event.event_id}"[:255], cancelled_by="client",
                          cancel_reason=body.get("reason") or "cancelled by the client")
    if applied is None:
        return Outcome(Result.STALE, booking.id, f"nothing to cancel in {Booking.get_by_id(booking.id).state}")
    return Outcome(Result.CANCELLED, booking.id)


def retry_payment(event: ProviderEvent, body: dict) -> Outcome:
    booking = _booking(event)
    if booking is None:
        return Outcome(Result.UNMATCHED)
    if not allowed(booking, Trigger.retryPayment):
        return Outcome(Result.STALE, booking.id, f"no payment to retry in {booking.state}")
    try:
        flow.start_payment_attempt(booking, Trigger.retryPayment, booking.amount_due, cause=f"client-{event.event_id}"[:255])
    except TransitionRefused as refused:
        return Outcome(Result.STALE, booking.id, str(refused))
    return Outcome(Result.ADVANCED, booking.id)
