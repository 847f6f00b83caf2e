"""Moving a booking along the automatic parts of its path.

`advance(booking_id)` runs the entry action of the booking's state, again and again, until the booking
rests in a state that waits for the outside world (a client, Calendly or Stripe). Every action is
idempotent, so running it twice, from two workers at once, or after a worker died half-way, ends in
the same place: one transition, one Checkout Session, one refund.

`move()` is how jobs change state: the state machine's apply(), with the transition's e-mail
written into the outbox in the same transaction and sent after it commits.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import dramatiq
import stripe

from bookingflow import broker, logs, metrics, refund_policy
from bookingflow.error_classes import ErrorClass, failure
from bookingflow.providers import calendly_client, stripe_amounts
from bookingflow.providers.calendly_claims import type_refusal
from bookingflow.providers.calendly_payloads import invitee_identity, scheduled_event_info
from jobs import calendly_lasting, checkout, ledger, outbox
from models.alerts import flag_booking, raise_alert
from models.db import utcnow
from models.states import CLOSING, Applied, State, TransitionRefused, Trigger, allowed, apply, update_fields
from models.tables import Booking

log = logging.getLogger(__name__)

# More than the longest automatic run (RESCHEDULED -> PENDING -> PROCESSING, or IDLE -> REFUND_PENDING
# -> REFUND_COMPLETED); a bound, so that a bug can never spin a worker.
MAX_STEPS = 10


def move(booking_id: str, trigger: Trigger, cause: str | None = None, read: Booking | None = None, **changes) -> Applied:
    """apply() with the transition's e-mail; `read`: the booking as the caller has just read it (apply
    decides on it rather than reading it again, and reads afresh if it was written since)."""
    logs.bind_booking(booking_id)
    applied = apply(booking_id, trigger, cause=cause, effects=outbox.queue_for_transition, read=read, **changes)
    if applied.changed:
        log.info("booking %s: %s -> %s (%s)", booking_id, applied.from_state, applied.booking.state, trigger.value)
        metrics.transition(applied.from_state, applied.booking.state)
    # Only a transition that wrote an e-mail sends: one left unsent by an earlier broker failure is the
    # outbox sweep's, a minute or so later.
    if applied.effected:
        try:
            outbox.send_waiting(booking_id)
        except Exception as exc:  # the broker is down: the transition stands, the job goes on
            # The e-mail is in the outbox, where the scheduler's sweep finds it; failing the job here
            # would skip the rest of its work (the entry action of the new state) until a recovery.
            log.warning("booking %s: e-mail not queued (%s); left to the outbox sweep", booking_id, exc.__class__.__name__)
    return applied


# --- decisions: each written once, called by the handlers, the sweep and the entry actions alike ---

def start_payment_attempt(booking: Booking, trigger: Trigger, amount_due: int, cause: str | None = None,
                          **changes) -> Applied:
    """A new payment attempt: a number of its own (so a Checkout Session and an idempotency key of its
    own), what it charges, and its expiry fixed now (a retried create sends the very same parameters)."""
    attempt = booking.payment_attempt + 1
    return move(booking.id, trigger, cause=cause or f"attempt-{attempt}", read=booking, payment_attempt=attempt,
                amount_due=amount_due, checkout_expires_at=checkout.attempt_expiry(utcnow()),
                checkout_session_id=None, checkout_url=None, **changes)


def confirm_or_charge(booking: Booking, **changes) -> Applied:
    """The slot is the booking's: a free session is confirmed, any other one is charged its price."""
    if booking.amount == 0:
        return move(booking.id, Trigger.confirmBooking, cause="free-session", **changes)
    return start_payment_attempt(booking, Trigger.initiatePayment, booking.amount, **changes)


# A cancellation decided against a booking that moves before the write (a payment landing) is
# decided again; a few rounds are plenty: each decision moves it somewhere it then rests a while.
CANCEL_DECISIONS = 5


def cancel(booking_id: str, cause: str, *, cancelled_by: str, cancel_reason: str, **changes) -> Applied | None:
    """Cancel the booking (paid: refunded by policy) or abandon its flow (never paid), whichever it
    allows when the write happens; None when neither applies. Never dropped for a race: a payment
    that lands between the decision and the write makes it a cancellation instead of an abandonment."""
    for _ in range(CANCEL_DECISIONS):
        booking = Booking.get_by_id(booking_id)
        if booking.state == State.PAYMENT_SUCCEEDED.value:
            # Paid, a moment from confirmed, where neither trigger applies: confirm first.
            advance(booking_id)
            booking = Booking.get_by_id(booking_id)
        trigger = next((t for t in (Trigger.cancelBooking, Trigger.cancelBookingProcess) if allowed(booking, t)), None)
        if trigger is None:
            return None
        try:
            return move(booking_id, trigger, cause=cause, cancelled_by=cancelled_by, cancel_reason=cancel_reason,
                        released_at=None, settled_at=None, **changes)
        except TransitionRefused:
            continue  # it moved under us: decide again on what it is now
    return None


# --- entry actions ----------------------------------------------------------------------------

def _initiate_payment(booking: Booking) -> None:
    confirm_or_charge(booking)


def _create_checkout_session(booking: Booking) -> None:
    if not checkout.attempt_still_creatable(booking, utcnow()):
        # A retry long after the attempt began: its expires_at is too close for Stripe. Start a fresh
        # attempt (a new idempotency key) rather than send different parameters under the old key.
        update_fields(booking.id, payment_attempt=booking.payment_attempt + 1,
                      checkout_expires_at=checkout.attempt_expiry(utcnow()))
        booking = Booking.get_by_id(booking.id)
    # Only the newest checkout may be paid: expire any older attempt's session still open. Never this
    # attempt's: a second copy of this job (same idempotency key, same session) may have just recorded it.
    ledger.expire_open_sessions(booking, before_attempt=booking.payment_attempt)
    session = checkout.create_session(booking)
    ledger.record_session(booking, session)
    move(
        booking.id, Trigger.onStripeSessionCreated, cause=session.id, read=booking,
        checkout_session_id=session.id, checkout_url=session.url, payment_failure=None,
        checkout_expires_at=dt.datetime.fromtimestamp(session.expires_at, dt.timezone.utc),
    )


def _confirm(booking: Booking) -> None:
    if booking.replaced_event_uri and booking.replaced_event_uri != booking.calendly_event_uri:
        # The new slot is settled (its difference paid, if any): only now is the old one let go.
        calendly_lasting.release_slot(booking.id, booking.replaced_event_uri, "Rescheduled to another session")
    changes = {}
    if booking.reschedule_session_type_id:
        # A reschedule to another session type, its difference now paid: the booking becomes that type.
        new_type = booking.reschedule_session_type
        changes = dict(session_type=new_type.id, amount=reschedule_price(booking), reschedule_session_type=None,
                       reschedule_requested_at=None)
    move(booking.id, Trigger.confirmBooking, cause=f"confirm-{booking.payment_attempt}-{booking.calendly_invitee_uri}", read=booking,
         checkout_url=None, **changes)


def _release(booking: Booking) -> bool:
    """Abandoned (IDLE): free the Calendly slot and close open checkouts, once. False when Calendly
    refused to free the slot (the booking is flagged; `bookings retry` runs this again)."""
    if booking.released_at is None:
        ledger.expire_open_sessions(booking)
        if booking.calendly_event_uri and not calendly_lasting.release_slot(
                booking.id, booking.calendly_event_uri, "Booking abandoned before payment"):
            return False
        update_fields(booking.id, released_at=utcnow())
    return True


def _release_and_refund(booking: Booking) -> None:
    released = _release(booking)
    booking = Booking.get_by_id(booking.id)
    # Money that arrived for an abandoned flow goes back in full. The decision's rows, planned now or
    # by a run that died before its transition (whose rows already count against what is held).
    rows = ledger.plan_refund(booking, "abandoned", ledger.net_paid(booking), f"v{booking.amount_paid}",
                              "payment after the flow was abandoned")
    if rows:
        move(booking.id, Trigger.onLatePayment, cause=f"late-payment-{booking.amount_paid}", settled_at=None)
    elif released:
        _settle(booking)


def _settle(booking: Booking, **changes) -> None:
    """The closing work is done, as decided on `booking` as read. Unless money arrived since: a payment
    recorded after that read (its worker then unsettles the booking and runs this again) must not be
    covered by a decision that never saw it, or the late payment is kept and never refunded."""
    if not update_fields(booking.id, only_if=Booking.amount_paid == booking.amount_paid, settled_at=utcnow(), **changes):
        # Not settled: the payment's worker, or else the scheduler's sweep, runs the closing work again.
        log.info("booking %s: paid while its closing work was being decided; left unsettled", booking.id)


# Cancellations made here, not in Calendly: the slots are still held there, and ours to release.
CANCELLED_ON_OUR_SIDE = ("client", "system", refund_policy.OPERATOR, refund_policy.OPERATOR_IN_FULL)


def _refund_cancellation(booking: Booking) -> None:
    """Cancelled after payment: close an open checkout, free the slots unless Calendly cancelled them,
    then refund by policy."""
    if booking.released_at is None:
        ledger.expire_open_sessions(booking)
        released = True
        if booking.cancelled_by in CANCELLED_ON_OUR_SIDE:
            for event_uri in {booking.calendly_event_uri, booking.replaced_event_uri} - {None}:
                released &= calendly_lasting.release_slot(booking.id, event_uri, booking.cancel_reason or "Booking cancelled")
        if released:  # else flagged: the refund goes on, the slot is still held
            update_fields(booking.id, released_at=utcnow())
    # The policy grants its share of what the client paid (less what bookingflow already gave back);
    # money refunded outside bookingflow since counts against it: never more than what remains.
    held = ledger.net_paid(booking)
    decision = refund_policy.decide(
        held + ledger.refunded_outside(booking), refund_policy.terms_of(booking), booking.scheduled_start,
        cancelled_at=booking.state_changed_at, cancelled_by=booking.cancelled_by, cap_percent=booking.refund_percent_cap,
    )
    # A share is rounded down to an amount Stripe accepts in the currency; all that is held, as held.
    amount, reason = min(stripe_amounts.round_down(decision.amount, booking.currency), held), decision.reason
    if decision.percent == 100 and decision.amount >= held:
        amount = held
    if held < decision.amount:
        reason = _with(reason, f"capped at the {max(held, 0)} left after refunds made outside bookingflow")
    if ledger.has_disputed_payment(booking):
        # Stripe refuses to refund a charge under dispute, and the card network decides that money:
        # the slot is released above, and nothing is refunded, not even from another payment of the
        # booking (a reschedule's difference), whose share the policy counted the disputed money in:
        # a cardholder who wins the chargeback would have it twice. An operator decides.
        amount, reason = 0, _with(reason, DISPUTED_NOTE)
    rows = ledger.plan_refund(booking, "cancellation", amount, "cancel", reason)
    if not rows:
        # Nothing to give back: the booking rests here, and says why.
        _settle(booking, cancel_reason=_with(booking.cancel_reason, reason))
        return
    move(booking.id, Trigger.initiateRefund, cause="cancellation-refund", cancel_reason=_with(booking.cancel_reason, reason))


DISPUTED_NOTE = "payment disputed: not refunded by bookingflow, the card network decides"


def _with(reason: str | None, addition: str) -> str:
    return (f"{reason}; {addition}" if reason and addition not in reason else reason or addition)[:500]


def _settle_refunds(booking: Booking) -> None:
    sync_refunds(booking)


def sync_refunds(booking: Booking, ask_stripe: bool = False) -> None:
    """REFUND_PENDING: every closing refund asked for (again, harmlessly, under its key); with
    `ask_stripe`, those still pending read again from Stripe (a webhook may be late, or lost); the
    booking finishes when Stripe says they all succeeded."""
    for row in ledger.refunds_in_flight(booking, ledger.CLOSING_REFUNDS):
        if row.status == "new":
            try:
                ledger.issue(row)
            except stripe.InvalidRequestError as exc:
                if exc.code in REFUNDED_MEANWHILE:
                    _refund_the_rest(row)
                elif exc.code == "charge_disputed":
                    # Disputed at Stripe before its webhook reached us: held back; the dispute's own
                    # delivery records it and tells an operator.
                    ledger.refunds_held_back(row.payment_intent_id, f"{DISPUTED_NOTE} (Stripe: charge_disputed)")
                else:
                    raise
        elif ask_stripe:
            ledger.refresh(row)
    settle_refund_state(booking.id)


# Stripe's answers to a refund larger than what is left of the charge: someone refunded part or all
# of it outside bookingflow (the Dashboard) after our refund was planned and before it was made.
REFUNDED_MEANWHILE = ("amount_too_large", "charge_already_refunded")


def _refund_the_rest(row) -> None:
    """Count the refunds made outside bookingflow meanwhile, then ask again for what is left of
    the payment (or for nothing): never more than remains, never the refused amount again."""
    ledger.record_refunds_made_outside(row.payment_intent_id)
    fitted = ledger.fit_to_remaining(row)
    if fitted.status == "new":
        ledger.issue(fitted)


def settle_refund_state(booking_id: str) -> None:
    booking = Booking.get_by_id(booking_id)
    if booking.state != State.REFUND_PENDING.value:
        return
    planned = ledger.refunds_in_flight(booking, ledger.CLOSING_REFUNDS)
    # Rows withdrawn (their charge disputed, or refunded outside bookingflow in full) are nothing to
    # wait for, nor a failure.
    rows = [row for row in planned if row.status != ledger.WITHDRAWN]
    withdrawn = [row for row in planned if row.status == ledger.WITHDRAWN]
    failed = [row for row in rows if row.status in ledger.DEAD_REFUND]
    if failed:
        refund = failed[0]
        move(booking_id, Trigger.onPaymentError, cause=f"refund-failed-{refund.id}",
             last_error=f"refund {refund.stripe_refund_id or refund.id} {refund.status}",
             failure=failure(ErrorClass.PAYMENT, "Your refund could not be sent back to your card; "
                                                               "we will contact you to pay you back another way."))
        raise_alert(f"refund_failed:{refund.id}", "refund_failed",
                           f"refund {refund.stripe_refund_id or refund.id} of {stripe_amounts.display(refund.amount, refund.currency)} "
                           f"for booking {booking_id} {refund.status}: the client has not been paid back", booking_id)
    elif planned and all(row.status in ledger.SETTLED_REFUND for row in rows):
        note = {}
        for row in withdrawn:  # why each was not made, said once
            why = DISPUTED_NOTE if "disputed" in (row.reason or "") else row.reason or "withdrawn"
            note["cancel_reason"] = _with(note.get("cancel_reason", booking.cancel_reason), why)
        move(booking_id, Trigger.completeRefund, cause="refunds-succeeded", settled_at=utcnow(), **note)


def _settle_reschedule(booking: Booking) -> None:
    """BOOKING_RESCHEDULED: learn the new slot, free the old one if it is ours to free, settle the
    price difference, and confirm."""
    if booking.reschedule_invitee_uri and booking.reschedule_invitee_uri != booking.calendly_invitee_uri:
        # Calendly told of the cancel half only: ask it for the new invitee and its event.
        invitee = calendly_client.get_invitee(booking.reschedule_invitee_uri)
        event = scheduled_event_info(calendly_client.get_scheduled_event(invitee["event"]))
        target = booking.reschedule_session_type or booking.session_type
        if type_refusal(event.event_type, target) is not None:
            _flag(booking, f"rescheduled in Calendly to an event of another type ({event.event_type})")
            return
        update_fields(booking.id, calendly_invitee_uri=booking.reschedule_invitee_uri, calendly_event_uri=event.uri,
                      scheduled_start=event.start, scheduled_end=event.end,
                      calendly_cancel_url=invitee.get("cancel_url"), calendly_reschedule_url=invitee.get("reschedule_url"),
                      **invitee_identity(invitee.get("email"), invitee.get("name")))
        booking = Booking.get_by_id(booking.id)
    # Priced by the type of the event actually booked (set when its invitee was matched), in the
    # booking's currency.
    new_price = reschedule_price(booking)
    if new_price is None:
        _flag(booking, f"rescheduled to {booking.reschedule_session_type.slug}, which is no longer priced in "
                       f"{booking.currency}")
        return
    difference = new_price - booking.amount
    # Giving up a slot is a partial cancellation: what cancelling then would have refunded caps every
    # later refund, and a downgrade's difference comes back under the policy at that moment.
    decision = refund_policy.decide(
        paid_share(booking, max(-difference, 0)), refund_policy.terms_of(booking), booking.rescheduled_from_start,
        cancelled_at=booking.state_changed_at, cancelled_by="client", cap_percent=booking.refund_percent_cap)
    if booking.refund_percent_cap is None or decision.percent < booking.refund_percent_cap:
        update_fields(booking.id, refund_percent_cap=decision.percent)
    if difference > 0:
        start_payment_attempt(booking, Trigger.initiatePayment, difference)
        return
    if difference < 0:
        # The policy's share of it, rounded down to an amount Stripe accepts in the currency.
        amount = stripe_amounts.round_down(min(decision.amount, ledger.net_paid(booking)), booking.currency)
        rows = ledger.plan_refund(booking, "reschedule", amount,
                                  f"to-{booking.reschedule_session_type_id}-{booking.reschedule_invitee_uri}",
                                  f"rescheduled to a cheaper session; {decision.reason}")
        for row in rows:
            ledger.issue(row)
    _confirm(booking)


def reschedule_price(booking: Booking) -> int | None:
    """What the booking costs after its reschedule, in its currency: the new type's price there (None
    when the type is not priced in it), or the same amount when the type stays."""
    if not booking.reschedule_session_type_id:
        return booking.amount
    new_type = booking.reschedule_session_type
    price = new_type.price_in(booking.currency)
    return None if price is None else (price if new_type.collect_payment else 0)


def paid_share(booking: Booking, list_amount: int) -> int:
    """`list_amount` of the booking's price, as the client actually paid it: after the discount they
    were given, with the tax they paid (a downgrade by half the price gives back half of what was paid,
    never half the list price). Rounded down to what Stripe accepts in the currency."""
    if booking.amount <= 0:
        return 0
    share = min(list_amount, booking.amount) * booking.amount_paid // booking.amount
    return stripe_amounts.round_down(share, booking.currency)


def _flag(booking: Booking, reason: str) -> None:
    """Automation cannot decide: an operator must look (alerted once)."""
    flag_booking(booking.id, reason, f"flagged:{booking.id}:{reason}", "flagged_booking",
                 f"booking {booking.id} is flagged: {reason}", next_check_at=None)


ENTRY_ACTIONS: dict[State, Callable[[Booking], None]] = {
    State.CALENDLY_WEBHOOK_RECEIVED: _initiate_payment,
    State.PAYMENT_PENDING: _create_checkout_session,
    State.PAYMENT_SUCCEEDED: _confirm,
    State.BOOKING_RESCHEDULED: _settle_reschedule,
    State.BOOKING_CANCELLED: _refund_cancellation,
    State.REFUND_PENDING: _settle_refunds,
    State.IDLE: _release_and_refund,
}



def advance(booking_id: str) -> State | None:
    """Run entry actions until the booking rests; return where it rests (None if it does not exist)."""
    booking = Booking.by_id(booking_id)
    for _ in range(MAX_STEPS):
        if booking is None:
            return None
        state = State(booking.state)
        action = ENTRY_ACTIONS.get(state)
        if action is None or (state in CLOSING and booking.settled_at is not None):
            return state
        try:
            action(booking)
        except TransitionRefused:
            log.info("booking %s moved under us from %s", booking_id, booking.state)
            booking = Booking.by_id(booking_id)
            continue
        after = Booking.get_by_id(booking_id)
        if after.state == booking.state:
            return state  # the action made no transition: the booking waits here
        booking = after
    return State(Booking.get_by_id(booking_id).state)


@dramatiq.actor(actor_name=broker.ADVANCE_BOOKING, max_retries=6, min_backoff=1_000, max_backoff=120_000, max_age=6 * 3600_000, time_limit=120_000)
def advance_booking(booking_id: str) -> None:
    advance(booking_id)


def release_hold(booking_id: str) -> None:
    """The payment hold ran out: abandon the booking, which frees its slot and closes its checkouts."""
    booking = Booking.by_id(booking_id)
    if booking is None or booking.state != State.PAYMENT_FAILED.value:
        return
    # Never paid: abandoned. Already paid (a reschedule's difference failed): cancelled, refunded.
    if cancel(booking_id, f"hold-expired-{booking.payment_attempt}", cancelled_by="system",
              cancel_reason="payment not completed while the slot was held") is not None:
        advance(booking_id)

