"""Stripe deliveries about Checkout Sessions."""

from __future__ import annotations

import logging

from jobs import flow
from jobs.calendly_payloads import PayloadInvalid
from jobs.dispatch import Outcome, handles
from models.states import State, Trigger, TransitionRefused, apply
from models.tables import Booking, ProviderEvent

log = logging.getLogger(__name__)

# Only these mean the money arrived; "unpaid" on a completed session is a delayed method still settling.
PAID = ("paid", "no_payment_required")
# States in which a payment is expected (or, for PAYMENT_FAILED, still welcome).
AWAITING_PAYMENT = (State.PAYMENT_PENDING, State.PAYMENT_PROCESSING, State.PAYMENT_FAILED)


def checkout_session_of(body: dict) -> dict:
    data = body.get("data") if isinstance(body, dict) else None
    session = data.get("object") if isinstance(data, dict) else None
    if not isinstance(session, dict) or not isinstance(session.get("id"), str):
        raise PayloadInvalid("data.object is not a Checkout Session")
    return session


def booking_of(session: dict) -> Booking | None:
    metadata = session.get("metadata") if isinstance(session.get("metadata"), dict) else {}
    booking_id = session.get("client_reference_id") or metadata.get("booking_id")
    if not isinstance(booking_id, str):
        return None
    return Booking.get_or_none(Booking.id == booking_id)


def payment_received(booking: Booking, session: dict) -> Outcome:
    amount, currency = session.get("amount_total"), session.get("currency")
    if amount != booking.amount or (currency or "").lower() != booking.currency:
        log.warning("booking %s paid %s %s, expected %s %s", booking.id, amount, currency, booking.amount, booking.currency)
    if State(booking.state) not in AWAITING_PAYMENT:
        if booking.checkout_session_id == session["id"] and booking.amount_paid:
            return Outcome("duplicate", booking.id)
        log.error("booking %s: payment for session %s arrived in %s", booking.id, session["id"], booking.state)
        return Outcome("unhandled", booking.id, f"payment arrived in {booking.state}")
    try:
        apply(
            booking.id, Trigger.onPaymentSucceeded, cause=f"paid-{session['id']}",
            checkout_session_id=session["id"], checkout_url=None,
            payment_intent_id=session.get("payment_intent") if isinstance(session.get("payment_intent"), str) else None,
            amount_paid=amount if isinstance(amount, int) else booking.amount,
        )
    except TransitionRefused as refused:
        return Outcome("stale", booking.id, str(refused))
    flow.advance(booking.id)
    return Outcome("advanced", booking.id)


@handles("stripe", "checkout.session.completed", "checkout.session.async_payment_succeeded")
def checkout_paid(event: ProviderEvent, body: dict) -> Outcome:
    session = checkout_session_of(body)
    booking = booking_of(session)
    if booking is None:
        return Outcome("unmatched", detail="not a bookingflow Checkout Session")
    if session.get("payment_status") not in PAID:
        return Outcome("awaiting_payment", booking.id, "completed, payment still settling")
    return payment_received(booking, session)
