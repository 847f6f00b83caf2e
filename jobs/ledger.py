"""The money of a booking: Checkout Sessions paid or not, and refunds, each a row of its own.

A refund row is written before Stripe is asked, under a key that names the decision; the Stripe
call carries an idempotency key derived from that row. A retried job therefore finds the row and
repeats the same request, and Stripe answers with the same refund. Stripe also repeats a refusal for
its key, so once it refused a refund for good the row's next request goes under a new key, derived
from the row and its attempt (`issue()` says why that can never refund twice).
"""

from __future__ import annotations

import logging

import peewee
import stripe

from bookingflow.providers import stripe_client
from bookingflow.providers.payload_schemas import expandable_id
from models.db import is_postgres, utcnow, write_transaction
from models.states import update_fields
from models.tables import Booking, Dispute, Payment, Refund

log = logging.getLogger(__name__)

SETTLED_REFUND = ("succeeded",)
DEAD_REFUND = ("failed", "canceled")
# bookingflow's own status for a refund row never sent: its charge was disputed before it went out
# (Stripe would refuse it, `charge_disputed`). Like a dead refund it holds no money.
WITHDRAWN = "withdrawn"
NOT_COMMITTED = (*DEAD_REFUND, WITHDRAWN)
# Refunds that close a cancelled or abandoned booking (REFUND_PENDING waits for them, and the refund
# e-mail reports them); a reschedule's refund does not.
CLOSING_REFUNDS = ("cancellation", "abandoned")
# A refund made outside bookingflow (the Stripe Dashboard, another API user) of one of our payments.
OUTSIDE = "outside"
# Dispute statuses after which Stripe lets the charge be refunded again; under any other (an open
# chargeback, lost, or a status bookingflow does not know yet) no refund is attempted.
REFUNDABLE_DISPUTE = ("won", "warning_closed")


# --- payments ---------------------------------------------------------------------------------

def record_session(booking: Booking, session) -> None:
    """Remember a Checkout Session we created (idempotent on its id), with what its attempt asks for:
    only a session on record, paying that, is ever counted as the booking's money."""
    try:
        Payment.create(
            booking=booking.id, attempt=booking.payment_attempt, checkout_session_id=session.id,
            amount=booking.amount_due, currency=booking.currency,
        )
    except peewee.IntegrityError:
        pass


def payment_of_session(session_id) -> Payment | None:
    """Our row for a Checkout Session: None for any session bookingflow did not create."""
    if not isinstance(session_id, str):
        return None
    return Payment.get_or_none(Payment.checkout_session_id == session_id)


def _refresh_totals(booking_id: str) -> None:
    # In the booking's currency only: money in different currencies is never added up. (Nothing in
    # another currency is recorded as paid; this keeps it so should that ever change.)
    currency = Booking.select(Booking.currency).where(Booking.id == booking_id).scalar()
    paid = Payment.select(peewee.fn.COALESCE(peewee.fn.SUM(Payment.amount), 0)).where(
        Payment.booking == booking_id, Payment.status == "paid", Payment.currency == currency).scalar()
    refunded = Refund.select(peewee.fn.COALESCE(peewee.fn.SUM(Refund.amount), 0)).where(
        Refund.booking == booking_id, Refund.status.in_(SETTLED_REFUND), Refund.currency == currency).scalar()
    update_fields(booking_id, amount_paid=int(paid), amount_refunded=int(refunded))


def _whole(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def breakdown(session: dict, asked: int) -> dict:
    """What a paid session charged, as Stripe reports it: the subtotal (the price, before discounts
    and tax), the discount a promotion code gave, the tax Stripe Tax added, and the total."""
    details = session.get("total_details") if isinstance(session.get("total_details"), dict) else {}
    subtotal = _whole(session.get("amount_subtotal"))
    total = _whole(session.get("amount_total"))
    return {
        "amount_subtotal": subtotal if subtotal is not None else asked,
        "amount_discount": _whole(details.get("amount_discount")) or 0,
        "amount_tax": _whole(details.get("amount_tax")) or 0,
        "amount": total if total is not None else asked,
    }


def mark_paid(payment: Payment, session: dict) -> bool:
    """Record the money of a paid session of ours, as Stripe charged it (the total: after any discount,
    with any tax), with its breakdown and its invoice; True the first time."""
    with write_transaction():
        updated = Payment.update(
            status="paid", updated_at=utcnow(), **breakdown(session, payment.amount),
            payment_intent_id=expandable_id(session.get("payment_intent")),
            invoice_id=expandable_id(session.get("invoice")),
        ).where(Payment.id == payment.id, Payment.status != "paid").execute()
        if updated:
            _refresh_totals(payment.booking_id)
    return bool(updated)


def mark_session(session_id: str, status: str) -> None:
    Payment.update(status=status, updated_at=utcnow()).where(
        Payment.checkout_session_id == session_id, Payment.status == "open").execute()


def expire_open_sessions(booking: Booking, before_attempt: int | None = None) -> int:
    """Expire, through Stripe, the booking's open sessions (only those of attempts before
    `before_attempt`, if given), so that an abandoned or superseded checkout can no longer be paid."""
    expired = 0
    open_payments = Payment.select().where(Payment.booking == booking.id, Payment.status == "open")
    if before_attempt is not None:
        open_payments = open_payments.where(Payment.attempt < before_attempt)
    for payment in open_payments:
        try:
            session = stripe_client.expire_checkout_session(
                payment.checkout_session_id, idempotency_key=f"bookingflow-expire-{payment.checkout_session_id}")
            status = "expired" if session.status == "expired" else None
        except stripe.InvalidRequestError:
            # Not open any more (paid, or expired on its own): ask what it is now.
            session = stripe_client.retrieve_checkout_session(payment.checkout_session_id)
            status = "expired" if session.status == "expired" else None
        if status:
            mark_session(payment.checkout_session_id, status)
            expired += 1
        # A session that turned out paid is left to its webhook: the money is handled there.
    return expired


def payment_of_intent(payment_intent_id) -> Payment | None:
    """Our paid row for a PaymentIntent: None for any payment bookingflow did not create."""
    if not isinstance(payment_intent_id, str):
        return None
    return Payment.get_or_none(Payment.payment_intent_id == payment_intent_id)


def net_paid(booking: Booking) -> int:
    """Money held for the booking: paid, less refunds done or under way (by us or from outside)."""
    committed = Refund.select(peewee.fn.COALESCE(peewee.fn.SUM(Refund.amount), 0)).where(
        Refund.booking == booking.id, Refund.status.not_in(NOT_COMMITTED)).scalar()
    return booking.amount_paid - int(committed)


# --- refunds ----------------------------------------------------------------------------------

def plan_refund(booking: Booking, purpose: str, amount: int, decision_key: str, reason: str,
                only_payment: Payment | None = None) -> list[Refund]:
    """Rows for refunding `amount` across the booking's paid payments (or `only_payment`), newest
    first; idempotent on `decision_key`. Returns the rows of that decision (created now or earlier)."""
    prefix = f"{purpose}:{booking.id}:{decision_key}:"
    try:
        return _plan_refund_rows(booking, purpose, amount, prefix, reason, only_payment)
    except peewee.IntegrityError:
        # Another worker planned the same decision at the same moment; its rows are the plan.
        return list(Refund.select().where(Refund.key.startswith(prefix)))


def _plan_refund_rows(booking: Booking, purpose: str, amount: int, prefix: str, reason: str,
                      only_payment: Payment | None) -> list[Refund]:
    with write_transaction():
        _lock_booking(booking.id)
        existing = list(Refund.select().where(Refund.key.startswith(prefix)))
        if existing or amount <= 0:
            return existing
        remaining = amount
        payments = Payment.select().where(Payment.booking == booking.id, Payment.status == "paid",
                                          Payment.payment_intent_id.is_null(False)).order_by(Payment.created_at.desc())
        if only_payment is not None:
            payments = payments.where(Payment.id == only_payment.id)
        for payment in payments:
            if is_disputed(payment.payment_intent_id):
                continue  # the card network decides where that money goes; Stripe would refuse anyway
            already = Refund.select(peewee.fn.COALESCE(peewee.fn.SUM(Refund.amount), 0)).where(
                Refund.payment_intent_id == payment.payment_intent_id, Refund.status.not_in(NOT_COMMITTED)).scalar()
            share = min(remaining, payment.amount - int(already))
            if share <= 0:
                continue
            existing.append(Refund.create(
                booking=booking.id, key=prefix + payment.payment_intent_id, purpose=purpose,
                payment_intent_id=payment.payment_intent_id, amount=share, currency=payment.currency,
                reason=reason[:500],
            ))
            remaining -= share
            if remaining == 0:
                break
        if remaining:
            log.error("booking %s: %s refund of %s short by %s", booking.id, purpose, amount, remaining)
    return existing


def _lock_booking(booking_id: str) -> None:
    """Refund planners of one booking take turns. Without it, two workers planning the same decision
    at once could each see the other's rows only half (PostgreSQL reads each statement afresh): not
    yet under the decision's key, but already counted against the payment, which left one of them
    with nothing to refund and the booking marked settled. SQLite's IMMEDIATE transaction already
    serializes writers."""
    if is_postgres():
        list(Booking.select(Booking.id).where(Booking.id == booking_id).for_update())


def issue(refund: Refund) -> Refund:
    """Ask Stripe for the refund (again, harmlessly, if the row already has one).

    The idempotency key is the row's key and its attempt: `bookingflow-refund-{key}` first,
    `bookingflow-refund-{key}-{attempt}` after Stripe refused it for good. Why a new key never
    refunds twice:
    - the attempt moves on only after a definitive refusal under the current key (a 400/402/404:
      Stripe refused the request and created nothing), and only once (a compare-and-set on the
      attempt); a lost answer, a 409, a 429, a 5xx or an idempotency error (the key seen with other
      parameters: the first request may have made something) keeps the key, whose repeat Stripe
      answers with whatever the first request did;
    - every earlier key of the row therefore created nothing; a late worker still holding an older
      key is refused again, or else finds the row's refund in the listing below;
    - before a key other than the first is used, Stripe's refunds of the PaymentIntent are read, and
      one carrying this row's `refund_key` and amount is taken as the row's refund instead of asking
      for another.
    """
    refund = Refund.get_by_id(refund.id)  # the attempt as it is now, not as the caller read it
    if refund.status != "new" or refund.stripe_refund_id:
        return refund  # made already, or withdrawn: never sent (again)
    if is_disputed(refund.payment_intent_id):
        # Disputed since the refund was planned: the card network decides that money.
        refunds_held_back(refund.payment_intent_id, "charge disputed before the refund was made: not refunded by bookingflow")
        return Refund.get_by_id(refund.id)
    if refund.attempt > 0:
        existing = _refund_made_for(refund)
        if existing is not None:
            record_status(refund.id, existing["id"], existing["status"])
            return Refund.get_by_id(refund.id)
    key = f"bookingflow-refund-{refund.key}" + (f"-{refund.attempt}" if refund.attempt else "")
    try:
        created = stripe_client.create_refund(
            {
                "payment_intent": refund.payment_intent_id,
                "amount": refund.amount,
                "reason": "requested_by_customer",
                "metadata": {"booking_id": refund.booking_id, "refund_key": refund.key[:500]},
            },
            idempotency_key=key,
        )
    except stripe.StripeError as exc:
        if stripe_client.is_definitive(exc):
            # Refused, and Stripe repeats that refusal for this key: the next try goes under the next
            # attempt's key (moved once, whoever saw the refusal first). The job fails on, through the
            # retries and the alert, and the booking says why for the operator they lead to.
            Refund.update(attempt=Refund.attempt + 1, updated_at=utcnow()).where(
                Refund.id == refund.id, Refund.attempt == refund.attempt, Refund.status == "new").execute()
            update_fields(refund.booking_id, last_error=(
                f"refund {refund.key} refused by Stripe under attempt {refund.attempt} "
                f"({exc.http_status} {exc.code or exc.__class__.__name__}): {exc.user_message or exc}")[:500])
        raise
    record_status(refund.id, created.id, created.status)
    return Refund.get_by_id(refund.id)


def _refund_made_for(refund: Refund):
    """The refund Stripe holds for this row under any of its keys: one of its PaymentIntent's refunds
    carrying the row's `refund_key` (not a failed or canceled one: that money is back in the balance)."""
    for candidate in stripe_client.list_refunds(refund.payment_intent_id):
        metadata = candidate.get("metadata") or {}
        if metadata.get("refund_key") == refund.key[:500] and candidate.get("status") not in DEAD_REFUND \
                and _is_refund_of(candidate, refund):
            return candidate
    return None


def record_status(refund_id: int, stripe_refund_id: str, status: str) -> None:
    """Stripe's events come in any order: a final status (succeeded, failed, canceled) is never
    replaced by an earlier one (pending) that arrives late; only `failed` may follow `succeeded`."""
    final = (*SETTLED_REFUND, *DEAD_REFUND)
    status = status[:20]  # the column's width; a status Stripe adds later is kept, not understood
    with write_transaction():
        update = Refund.update(stripe_refund_id=stripe_refund_id, status=status, updated_at=utcnow()).where(
            Refund.id == refund_id)
        if status not in final:
            update = update.where(Refund.status.not_in(final))
        elif status in SETTLED_REFUND:
            update = update.where(Refund.status.not_in(DEAD_REFUND))
        update.execute()
        _refresh_totals(Refund.get_by_id(refund_id).booking_id)


def refresh(refund: Refund) -> bool:
    """Read a refund still under way again from Stripe (its webhook may be late, or lost); True if
    there was one to read."""
    if not refund.stripe_refund_id or refund.status in (*SETTLED_REFUND, *DEAD_REFUND):
        return False
    current = stripe_client.retrieve_refund(refund.stripe_refund_id)
    record_status(refund.id, current.id, current.status)
    return True


def list_refunds_at_stripe(payment_intent_id: str) -> list[dict]:
    """Every refund of a PaymentIntent as Stripe's API lists it, whoever made it: a charge.refunded
    names the intent, no longer its refunds."""
    return list(stripe_client.list_refunds(payment_intent_id))


def refund_of_stripe(obj: dict) -> Refund | None:
    """Our row for a Stripe refund object, by its id or the key we put in its metadata."""
    refund = Refund.get_or_none(Refund.stripe_refund_id == obj.get("id"))
    if refund is None:
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        key = metadata.get("refund_key")
        refund = Refund.get_or_none(Refund.key == key) if isinstance(key, str) else None
        # Metadata anyone refunding on the account may write: ours only if it is of our payment, for
        # our amount, and the row has no other refund of Stripe's already.
        if refund is not None and not _is_refund_of(obj, refund):
            return None
    return refund


def _is_refund_of(obj: dict, refund: Refund) -> bool:
    return (obj.get("payment_intent") == refund.payment_intent_id and obj.get("amount") == refund.amount
            and refund.stripe_refund_id in (None, obj.get("id")))


def refunded_outside(booking: Booking) -> int:
    """Refunds of the booking's payments made outside bookingflow, done or under way."""
    return int(Refund.select(peewee.fn.COALESCE(peewee.fn.SUM(Refund.amount), 0)).where(
        Refund.booking == booking.id, Refund.purpose == OUTSIDE, Refund.status.not_in(NOT_COMMITTED)).scalar())


def record_outside_refund(payment: Payment, obj: dict, status: str | None) -> Refund:
    """A refund of our payment that none of our rows asked for (the Dashboard, another API user):
    recorded as it is, idempotent on its Stripe id, so that the booking's totals and every later
    refund of ours count it."""
    refund = Refund.get_or_none(Refund.stripe_refund_id == obj["id"])
    if refund is None:
        amount = obj.get("amount")
        currency = obj.get("currency") if isinstance(obj.get("currency"), str) else payment.currency
        try:
            refund = Refund.create(
                booking=payment.booking_id, key=f"{OUTSIDE}:{obj['id']}", purpose=OUTSIDE,
                payment_intent_id=payment.payment_intent_id, stripe_refund_id=obj["id"],
                amount=amount if isinstance(amount, int) and not isinstance(amount, bool) else 0,
                currency=currency.lower(), status=(status or "pending")[:20], reason="refunded outside bookingflow")
        except peewee.IntegrityError:  # the same refund recorded by another delivery at this moment
            refund = Refund.get(Refund.stripe_refund_id == obj["id"])
    if status is not None:
        record_status(refund.id, obj["id"], status)
    return Refund.get_by_id(refund.id)


def record_refunds_made_outside(payment_intent_id: str) -> int:
    """Record the refunds of one of our PaymentIntents that Stripe lists and our ledger lacks (made in
    the Dashboard while their webhooks are still on the way); returns how many were new."""
    payment = payment_of_intent(payment_intent_id)
    if payment is None:
        return 0
    found = 0
    for obj in list_refunds_at_stripe(payment_intent_id):
        if refund_of_stripe(obj) is None and isinstance(obj.get("id"), str):
            record_outside_refund(payment, obj, obj.get("status") if isinstance(obj.get("status"), str) else None)
            found += 1
    return found


RESIZED = "reduced for a refund made outside bookingflow"
RESIZED_WITHDRAWN = "refunded outside bookingflow in full before this refund was made"


def refunds_resized(booking: Booking) -> bool:
    """Whether a refund of ours was reduced, or withdrawn, to make room for one made outside."""
    return Refund.select().where(Refund.booking == booking.id, Refund.purpose != OUTSIDE,
                                 Refund.reason.contains(RESIZED) | Refund.reason.contains(RESIZED_WITHDRAWN)).exists()


def fit_to_remaining(refund: Refund) -> Refund:
    """A refund not yet made, resized to what is left of its payment once every other refund of it
    (ours and those made outside bookingflow) is counted; withdrawn when nothing is left. Only a row
    Stripe has refused (attempt > 0, no Stripe refund) is resized: its next request goes under the
    next attempt's key, so Stripe's saved refusal of the old amount is never replayed, and no refund
    was made under the old one."""
    with write_transaction():
        row = Refund.get_by_id(refund.id)
        if row.status != "new" or row.stripe_refund_id is not None or row.attempt == 0:
            return row  # made, withdrawn, or never refused: its key must keep asking for its amount
        payment = payment_of_intent(row.payment_intent_id)
        others = Refund.select(peewee.fn.COALESCE(peewee.fn.SUM(Refund.amount), 0)).where(
            Refund.payment_intent_id == row.payment_intent_id, Refund.id != row.id,
            Refund.status.not_in(NOT_COMMITTED)).scalar()
        left = (payment.amount if payment is not None else 0) - int(others)
        if left <= 0:
            Refund.update(status=WITHDRAWN, updated_at=utcnow(),
                          reason=RESIZED_WITHDRAWN).where(
                Refund.id == row.id).execute()
        elif left < row.amount:
            Refund.update(amount=left, updated_at=utcnow(), reason=(
                f"{row.reason or ''}; {RESIZED} by {row.amount - left}").strip("; ")[:500]).where(
                Refund.id == row.id).execute()
    return Refund.get_by_id(refund.id)


def refunds_held_back(payment_intent_id: str, why: str) -> int:
    """Withdraw our refunds of a PaymentIntent not yet sent to Stripe (its charge was disputed)."""
    return Refund.update(status=WITHDRAWN, reason=why[:500], updated_at=utcnow()).where(
        Refund.payment_intent_id == payment_intent_id, Refund.status == "new",
        Refund.stripe_refund_id.is_null()).execute()


# --- disputes ---------------------------------------------------------------------------------

def is_disputed(payment_intent_id) -> bool:
    """A dispute on the payment still keeps its money from being refunded."""
    return Dispute.select().where(Dispute.payment_intent_id == payment_intent_id,
                                  Dispute.status.not_in(REFUNDABLE_DISPUTE)).exists()


def has_disputed_payment(booking: Booking) -> bool:
    intents = Payment.select(Payment.payment_intent_id).where(Payment.booking == booking.id, Payment.status == "paid")
    return Dispute.select().where(Dispute.payment_intent_id.in_(intents),
                                  Dispute.status.not_in(REFUNDABLE_DISPUTE)).exists()


def refunds_in_flight(booking: Booking, purposes: tuple[str, ...]) -> list[Refund]:
    return list(Refund.select().where(Refund.booking == booking.id, Refund.purpose.in_(purposes)))

