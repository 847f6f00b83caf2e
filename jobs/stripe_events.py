"""Stripe deliveries: Checkout Sessions paid, failed or expired, and refunds settling."""

from __future__ import annotations

import logging

from bookingflow.providers import stripe_client
from jobs import flow, ledger
from models.alerts import raise_alert
from bookingflow.error_classes import ErrorClass, failure
from bookingflow.providers.calendly_payloads import PayloadInvalid
from jobs.outcomes import Outcome, Result
from models.db import utcnow
from models.states import State, Trigger, TransitionRefused, update_fields
from models.tables import Booking, Payment, ProviderEvent, Refund

log = logging.getLogger(__name__)

# Only these mean the money arrived; "unpaid" on a completed session is a delayed method still settling.
PAID = ("paid", "no_payment_required")
# States in which a payment is expected (or, for PAYMENT_FAILED, still welcome).
AWAITING_PAYMENT = (State.PAYMENT_PENDING, State.PAYMENT_PROCESSING, State.PAYMENT_FAILED)


def stripe_object(body: dict, prefix: str) -> dict:
    data = body.get("data") if isinstance(body, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not obj["id"].startswith(prefix):
        raise PayloadInvalid(f"data.object is not a {prefix}... object")
    return obj


def booking_of(obj: dict) -> Booking | None:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    booking_id = obj.get("client_reference_id") or metadata.get("booking_id")
    if not isinstance(booking_id, str):
        return None
    return Booking.get_or_none(Booking.id == booking_id)


# A payment decided again a few times, as the booking moves under it (a cancellation landing at the
# same moment), finds it resting: the decisions below each move it somewhere it then stays a while.
PAYMENT_DECISIONS = 5


def charged_for(session: dict) -> int | None:
    """What the session charged before discounts and tax: what the attempt asked for."""
    subtotal = session.get("amount_subtotal")
    if isinstance(subtotal, int) and not isinstance(subtotal, bool):
        return subtotal
    total = session.get("amount_total")
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def mismatch(payment: Payment, session: dict) -> str | None:
    """Why a paid session of ours does not pay what its attempt asked for, in its currency."""
    currency = session.get("currency")
    if not isinstance(currency, str) or currency.lower() != payment.currency:
        return f"paid in {str(currency)[:10]}, the attempt asked for {payment.currency}"
    if charged_for(session) != payment.amount:
        return f"charged {charged_for(session)}, the attempt asked for {payment.amount} {payment.currency}"
    return None


def foreign_payment(session: dict, booking: Booking | None, why: str) -> Outcome:
    """Money bookingflow did not ask for (another Checkout or Payment Link on the same Stripe account,
    or a session that is not what we created) but that names a booking. Kept on record and alerted;
    it confirms nothing, and is never refunded by bookingflow: whose it is, an operator decides."""
    booking_id = booking.id if booking else None
    raise_alert(f"foreign_payment:{session['id']}"[:255], "foreign_payment",
                       f"Checkout Session {session['id']} names booking {booking_id} but {why}: "
                       f"{session.get('amount_total')} {session.get('currency')} not counted, not refunded", booking_id)
    log.warning("session %s for booking %s is not ours to count: %s", session["id"], booking_id, why)
    return Outcome(Result.FOREIGN_PAYMENT, booking_id, why)


def payment_received(payment: Payment, session: dict) -> Outcome:
    """A paid session that bookingflow created for the booking (its row on record), as charged."""
    booking = Booking.get_by_id(payment.booking_id)
    # Checked when the money first arrives; a repeat of that delivery finds it recorded (and the
    # row's amount then is what Stripe charged).
    problem = mismatch(payment, session) if payment.status != "paid" else None
    if problem is not None:
        return foreign_payment(session, booking, problem)
    first_time = ledger.mark_paid(payment, session)
    # A superseded attempt's session is still ours: it settles the booking if it pays what is due now.
    settles = session["id"] == booking.checkout_session_id or payment.amount == booking.amount_due
    for _ in range(PAYMENT_DECISIONS):
        if State(booking.state) not in AWAITING_PAYMENT or not settles:
            break
        try:
            flow.move(booking.id, Trigger.onPaymentSucceeded, cause=f"paid-{session['id']}",
                      checkout_session_id=session["id"], checkout_url=None, payment_failure=None,
                      payment_intent_id=session.get("payment_intent") if isinstance(session.get("payment_intent"), str) else None,
                      **_frozen_terms(booking))
        except TransitionRefused:
            # It moved since it was read (abandoned by the client this very moment, say): decide again
            # on what it is now, so that the money is not left kept as "stale".
            booking = Booking.get_by_id(booking.id)
            continue
        flow.advance(booking.id)
        return Outcome(Result.ADVANCED, booking.id)
    state = State(booking.state)
    if state in AWAITING_PAYMENT and settles:
        return Outcome(Result.STALE, booking.id, f"still moving after {PAYMENT_DECISIONS} tries")
    if state == State.IDLE:
        # The race: the client abandoned the flow, and paid anyway. The money goes back in full.
        update_fields(booking.id, settled_at=None)
        flow.advance(booking.id)
        return Outcome(Result.REFUNDING_LATE_PAYMENT, booking.id)
    if session["id"] == booking.checkout_session_id and not first_time:
        return Outcome(Result.DUPLICATE, booking.id)
    if session["id"] == booking.checkout_session_id:
        return Outcome(Result.RECORDED, booking.id)
    # Another checkout of ours for the same booking was paid: that money is not owed, refund it whole.
    rows = ledger.plan_refund(booking, "duplicate_payment", payment.amount, session["id"],
                              "a second payment for the same booking", only_payment=payment)
    for row in rows:
        ledger.issue(row)
    return Outcome(Result.REFUNDED_DUPLICATE, booking.id, f"session {session['id']} paid in {booking.state}")


def _frozen_terms(booking: Booking) -> dict:
    """The refund policy the client pays under, frozen on the booking with its first payment."""
    if booking.refund_policy_frozen_at is not None:
        return {}
    return {"refund_policy": booking.session_type.refund_policy, "refund_policy_frozen_at": utcnow()}


def checkout_paid(event: ProviderEvent, body: dict) -> Outcome:
    session = stripe_object(body, "cs_")
    payment = ledger.payment_of_session(session["id"])
    if payment is None:
        booking = booking_of(session)
        if booking is None:
            return Outcome(Result.UNMATCHED, detail="not a bookingflow Checkout Session")
        if session.get("payment_status") not in PAID:
            return Outcome(Result.FOREIGN_SESSION, booking.id, "a Checkout Session bookingflow did not create")
        return foreign_payment(session, booking, "bookingflow never created that session")
    if session.get("payment_status") not in PAID:
        return Outcome(Result.AWAITING_PAYMENT, payment.booking_id, "completed, payment still settling")
    return payment_received(payment, session)


FAILURE_REASONS = {
    "checkout.session.async_payment_failed": "the payment failed",
    "checkout.session.expired": "the checkout expired",
}
CLIENT_MESSAGES = {
    "checkout.session.async_payment_failed": "The payment did not go through. Please retry the payment.",
    "checkout.session.expired": "The checkout expired before the payment was made. Please retry the payment.",
}


def checkout_failed(event: ProviderEvent, body: dict) -> Outcome:
    session = stripe_object(body, "cs_")
    payment = ledger.payment_of_session(session["id"])
    if payment is None:
        return Outcome(Result.UNMATCHED, detail="not a bookingflow Checkout Session")
    booking = Booking.get_by_id(payment.booking_id)
    ledger.mark_session(session["id"], "expired" if event.type.endswith("expired") else "failed")
    if session["id"] != booking.checkout_session_id or booking.state != State.PAYMENT_PROCESSING.value:
        return Outcome(Result.RECORDED, booking.id, f"not the open checkout of a booking in {booking.state}")
    try:
        flow.move(booking.id, Trigger.onPaymentFailed, cause=f"failed-{session['id']}",
                  payment_failure=FAILURE_REASONS[event.type], checkout_url=None,
                  failure=failure(ErrorClass.PAYMENT, CLIENT_MESSAGES[event.type]))
    except TransitionRefused as refused:
        return Outcome(Result.STALE, booking.id, str(refused))
    return Outcome(Result.ADVANCED, booking.id)


def _refund_changed(refund: Refund, status: str, stripe_refund_id: str) -> Outcome:
    ledger.record_status(refund.id, stripe_refund_id, status)
    flow.settle_refund_state(refund.booking_id)
    return Outcome(Result.REFUND_UPDATED, refund.booking_id, status)


def refund_event(event: ProviderEvent, body: dict) -> Outcome:
    obj = stripe_object(body, "re_")
    refund = ledger.refund_of_stripe(obj)
    if refund is None:
        return Outcome(Result.UNMATCHED, detail="not a bookingflow refund")
    status = "failed" if event.type == "refund.failed" else obj.get("status")
    if not isinstance(status, str):
        raise PayloadInvalid("refund without status")
    return _refund_changed(refund, status, obj["id"])


def charge_refunded(event: ProviderEvent, body: dict) -> Outcome:
    # Since API version 2022-11-15 the charge no longer lists its refunds: ask Stripe about ours.
    charge = stripe_object(body, "ch_")
    intent = charge.get("payment_intent")
    pending = Refund.select().where(Refund.payment_intent_id == intent, Refund.stripe_refund_id.is_null(False),
                                    Refund.status.not_in(("succeeded", "failed", "canceled")))
    outcome = Outcome(Result.RECORDED, detail="no refund of ours awaiting news")
    for refund in pending:
        current = stripe_client.retrieve_refund(refund.stripe_refund_id)
        outcome = _refund_changed(refund, current.status, current.id)
    return outcome
