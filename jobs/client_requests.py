"""What the client asks for or tells us: its scheduling report, cancelling, paying again.

The intake stores each request in the inbox (provider "client") and answers 202; these handlers
decide, against the booking as it is when the job runs. Stored first, a request outlives a lost
message like any webhook does.
"""

from __future__ import annotations

from jobs import calendly_trust, errors, events, flow
from jobs.checkout import attempt_expiry
from jobs.dispatch import Outcome, handles
from models.db import utcnow
from models.states import State, Trigger, TransitionRefused, allowed, update_fields
from models.tables import Booking, ProviderEvent

CLIENT = "client"
SCHEDULED, CANCEL, RETRY_PAYMENT = "booking.scheduled", "booking.cancel", "booking.retry_payment"
REPORTABLE = (State.CALENDLY_SCHEDULING, State.ERROR_WEBHOOK)


def _booking(event: ProviderEvent) -> Booking | None:
    return Booking.get_or_none(Booking.id == event.subject)


@handles(CLIENT, SCHEDULED)
def scheduled(event: ProviderEvent, body: dict) -> Outcome:
    booking = _booking(event)
    if booking is None:
        return Outcome("unmatched")
    event_uri, invitee_uri = body["event_uri"], body["invitee_uri"]
    outcome = Outcome("recorded", booking.id)
    if State(booking.state) in REPORTABLE:
        # Checked again here, against Calendly, before anything moves: the intake may have stored the
        # report while Calendly could not answer, and the booking may have changed since.
        refusal = calendly_trust.check_report(booking, event_uri, invitee_uri)
        if refusal is not None:
            update_fields(booking.id, error_class=errors.ErrorClass.VALIDATION.value, error_message=refusal.message,
                          last_error=f"report refused: {refusal.code}")
            return Outcome(refusal.code, booking.id, refusal.message)
        try:
            flow.move(booking.id, Trigger.onCalendlyEventCreated, cause=f"client-{invitee_uri}"[:255],
                      calendly_event_uri=event_uri, calendly_invitee_uri=invitee_uri)
            outcome = Outcome("advanced", booking.id)
        except TransitionRefused:
            pass  # the webhook got there first: it carries the same URIs
    # An invitee.created that came before this report and found no booking is matched now.
    waiting = ProviderEvent.select(ProviderEvent.id).where(
        ProviderEvent.provider == "calendly", ProviderEvent.type == "invitee.created",
        ProviderEvent.subject == invitee_uri, ProviderEvent.outcome == "unmatched",
    )
    for stored in waiting:
        reopened = (
            ProviderEvent.update(processed_at=None, outcome=None)
            .where(ProviderEvent.id == stored.id, ProviderEvent.outcome == "unmatched")
            .execute()
        )
        if reopened:
            events.process(stored.id)
    return outcome


@handles(CLIENT, CANCEL)
def cancel(event: ProviderEvent, body: dict) -> Outcome:
    booking = _booking(event)
    if booking is None:
        return Outcome("unmatched")
    # After confirmation a cancellation refunds by policy; before it, the flow is abandoned.
    applied = flow.cancel(booking.id, f"client-{event.event_id}"[:255], cancelled_by="client",
                          cancel_reason=body.get("reason") or "cancelled by the client")
    if applied is None:
        return Outcome("stale", booking.id, f"nothing to cancel in {Booking.get_by_id(booking.id).state}")
    flow.advance(booking.id)
    return Outcome("cancelled", booking.id)


@handles(CLIENT, RETRY_PAYMENT)
def retry_payment(event: ProviderEvent, body: dict) -> Outcome:
    booking = _booking(event)
    if booking is None:
        return Outcome("unmatched")
    if not allowed(booking, Trigger.retryPayment):
        return Outcome("stale", booking.id, f"no payment to retry in {booking.state}")
    attempt = booking.payment_attempt + 1
    try:
        # A new attempt: a new Checkout Session under a new idempotency key.
        flow.move(booking.id, Trigger.retryPayment, cause=f"client-{event.event_id}"[:255], payment_attempt=attempt,
                  checkout_expires_at=attempt_expiry(utcnow()), checkout_session_id=None, checkout_url=None)
    except TransitionRefused as refused:
        return Outcome("stale", booking.id, str(refused))
    flow.advance(booking.id)
    return Outcome("advanced", booking.id)
