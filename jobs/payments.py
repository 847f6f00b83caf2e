"""Money arriving for a booking: what counts as its money, and what the booking does then. Called by
the Stripe handlers (jobs/stripe_events.py) and the sweep's reconciliation (jobs/reconcile.py) alike.

Only a Checkout Session bookingflow created for the booking (its row on record), paid in its
currency for what its attempt asked, is the booking's money; anything else that names a booking is
foreign: recorded and alerted, never counted, never refunded automatically.
"""

from __future__ import annotations

import logging

from bookingflow.error_classes import ErrorClass, failure
from bookingflow.providers.payload_schemas import expandable_id
from jobs import disputes, flow, ledger, receipts
from jobs.outcomes import Outcome, Result
from models.alerts import flag_booking, raise_alert
from models.db import utcnow
from models.states import AWAITING_PAYMENT, State, TransitionRefused, Trigger, update_fields
from models.tables import Booking, Payment

log = logging.getLogger(__name__)

# Only these mean the money arrived; "unpaid" on a completed session is a delayed method still settling.
PAID = ("paid", "no_payment_required")

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
    if first_time:
        disputes.claim_early(Payment.get_by_id(payment.id))
        # Before the confirmation, so that its e-mail links them.
        receipts.collect_now(payment.id)
    # A superseded attempt's session is still ours: it settles the booking if it pays what is due now.
    settles = session["id"] == booking.checkout_session_id or payment.amount == booking.amount_due
    for _ in range(PAYMENT_DECISIONS):
        if State(booking.state) not in AWAITING_PAYMENT or not settles:
            break
        try:
            flow.move(booking.id, Trigger.onPaymentSucceeded, cause=f"paid-{session['id']}",
                      checkout_session_id=session["id"], checkout_url=None, payment_failure=None,
                      payment_intent_id=expandable_id(session.get("payment_intent")),
                      **_frozen_terms(booking))
        except TransitionRefused:
            # It moved since it was read (abandoned by the client this very moment, say): decide again
            # on what it is now, so that the money is not left kept as "stale".
            booking = Booking.get_by_id(booking.id)
            continue
        return Outcome(Result.ADVANCED, booking.id)
    state = State(booking.state)
    if state in AWAITING_PAYMENT and settles:
        return Outcome(Result.STALE, booking.id, f"still moving after {PAYMENT_DECISIONS} tries")
    if state == State.IDLE:
        # The race: the client abandoned the flow, and paid anyway. The money goes back in full.
        update_fields(booking.id, settled_at=None)
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


FAILURE_REASONS = {
    "checkout.session.async_payment_failed": "the payment failed",
    "checkout.session.expired": "the checkout expired",
}
CLIENT_MESSAGES = {
    "checkout.session.async_payment_failed": "The payment did not go through. Please retry the payment.",
    "checkout.session.expired": "The checkout expired before the payment was made. Please retry the payment.",
}


def payment_failed(booking: Booking, session_id: str, event_type: str) -> Outcome:
    """The booking's open checkout failed or expired: the client may pay again (PAYMENT_FAILED)."""
    if session_id != booking.checkout_session_id or booking.state != State.PAYMENT_PROCESSING.value:
        return Outcome(Result.RECORDED, booking.id, f"not the open checkout of a booking in {booking.state}")
    try:
        flow.move(booking.id, Trigger.onPaymentFailed, cause=f"failed-{session_id}",
                  payment_failure=FAILURE_REASONS[event_type], checkout_url=None,
                  failure=failure(ErrorClass.PAYMENT, CLIENT_MESSAGES[event_type]))
    except TransitionRefused as refused:
        return Outcome(Result.STALE, booking.id, str(refused))
    return Outcome(Result.ADVANCED, booking.id)


def outside_refund(payment: Payment, refund: dict, status: str | None) -> Outcome:
    """A refund of our payment that bookingflow did not ask for (the Stripe Dashboard, another API
    user): on the ledger like any refund, so the totals and every later refund of ours count it. A
    confirmed booking whose money all went back that way is flagged for an operator: its slot is
    still held, and nothing in bookingflow decided that."""
    row = ledger.record_outside_refund(payment, refund, status)
    booking = Booking.get_by_id(payment.booking_id)
    if row.status in ledger.DEAD_REFUND and ledger.refunds_resized(booking):
        # Our refund was cut down to make room for this one, which then failed: the client may be owed
        # the difference, and nothing of ours will ask for it again.
        raise_alert(f"outside_refund_failed:{row.stripe_refund_id}", "outside_refund",
                    f"booking {booking.id}: the refund made outside bookingflow {row.stripe_refund_id} "
                    f"({row.amount} {row.currency}) {row.status}, after bookingflow's own refund was reduced "
                    f"for it: check what the client is owed", booking.id)
    if State(booking.state) not in (State.IDLE, State.BOOKING_CANCELLED, State.REFUND_PENDING, State.REFUND_COMPLETED) \
            and booking.amount_paid > 0 and ledger.net_paid(booking) <= 0:
        reason = f"refunded in full outside bookingflow ({row.stripe_refund_id}) while {booking.state}"
        flag_booking(booking.id, reason, f"outside_refund:{booking.id}", "outside_refund",
                     f"booking {booking.id} {reason}: {booking.amount_paid} {booking.currency} paid, nothing left; "
                     f"the slot is still held", flagged_at=booking.flagged_at)
    flow.settle_refund_state(booking.id)
    return Outcome(Result.OUTSIDE_REFUND, booking.id, f"{row.stripe_refund_id} {row.amount} {row.currency} {row.status}")
