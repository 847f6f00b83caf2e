"""Chargebacks (Stripe's `charge.dispute.*`): recorded on the booking's ledger, the booking flagged
and an operator alerted; won or lost recorded with its amount. Money under dispute is never refunded
by bookingflow (jobs/ledger.py holds it back): the card network decides where it goes.

A dispute is the booking's only through a payment bookingflow created (a Payment row's
PaymentIntent, or the charge of one as Stripe's API reports it), never through metadata, which
anyone on the account may write. Every handler works from the dispute object alone, idempotent on
its id and in any order: a closing status is never replaced by an earlier open one arriving late.
"""

from __future__ import annotations

import logging

import peewee

from bookingflow.providers import stripe_client
from bookingflow.providers.payload_schemas import expandable_id
from jobs import flow, ledger
from jobs.outcomes import Outcome, Result
from models.alerts import queue_alert, record_alert
from models.db import database, utcnow, write_transaction
from models.states import update_fields
from models.tables import Alert, Booking, Dispute, Payment

log = logging.getLogger(__name__)

# How a dispute ends (Stripe's statuses); an inquiry (warning_*) that ends in the merchant's favour
# closes as warning_closed. Any other status, known or new, is an open dispute.
CLOSED = ("won", "lost", "warning_closed")
KNOWN = ("warning_needs_response", "warning_under_review", "needs_response", "under_review",
         "prevented", *CLOSED)


def payment_intent_of(obj: dict) -> str | None:
    """The dispute's PaymentIntent: as the object names it or, when it does not (Stripe leaves it
    null for charges made without one), as Stripe's API says of the disputed charge."""
    intent = expandable_id(obj.get("payment_intent"))
    charge_id = expandable_id(obj.get("charge"))
    if intent is None and charge_id is not None:
        intent = expandable_id(stripe_client.retrieve_charge(charge_id).get("payment_intent"))
    return intent


def record(obj: dict, status: str) -> Outcome:
    intent = payment_intent_of(obj)
    payment = ledger.payment_of_intent(intent)
    booking_id = payment.booking_id if payment is not None else None
    with write_transaction():  # the dispute, its booking's flag and the alert become visible together
        dispute, changed = _upsert(obj, status, intent, booking_id)
        alert = _flag(booking_id, dispute) if booking_id is not None else None
    if booking_id is None:
        log.warning("dispute %s of %s is not of a payment bookingflow created; recorded unmatched", obj["id"], intent)
        return Outcome(Result.UNMATCHED, detail=f"dispute {obj['id']} of a payment bookingflow did not create")
    queue_alert(alert)
    held = ledger.refunds_held_back(intent, f"charge disputed ({obj['id']}): not refunded by bookingflow")
    if held:
        flow.settle_refund_state(booking_id)
    return Outcome(Result.DISPUTE_RECORDED, booking_id, f"{dispute.status} {dispute.amount} {dispute.currency}"
                   + ("" if changed else " (as recorded)"))


def _upsert(obj: dict, status: str, intent: str | None, booking_id: str | None) -> tuple[Dispute, bool]:
    amount = obj.get("amount") if isinstance(obj.get("amount"), int) and not isinstance(obj.get("amount"), bool) else 0
    currency = obj.get("currency").lower() if isinstance(obj.get("currency"), str) else ""
    reason = obj.get("reason") if isinstance(obj.get("reason"), str) else None
    fields = dict(charge_id=expandable_id(obj.get("charge")), payment_intent_id=intent, amount=amount,
                  currency=currency, reason=reason[:60] if reason else None, booking=booking_id)
    closed_at = utcnow() if status in CLOSED else None
    with write_transaction():
        if not Dispute.select().where(Dispute.stripe_dispute_id == obj["id"]).exists():
            try:
                with database.atomic():  # a savepoint: a delivery racing this one may create it first
                    return Dispute.create(stripe_dispute_id=obj["id"], status=status[:40], closed_at=closed_at,
                                          **fields), True
            except peewee.IntegrityError:
                pass
        # A closed dispute stays as it closed, whatever arrives late (an earlier `created`, a repeat).
        changed = bool(Dispute.update(status=status[:40], closed_at=closed_at, updated_at=utcnow(), **fields).where(
            Dispute.stripe_dispute_id == obj["id"], Dispute.closed_at.is_null()).execute())
    return Dispute.get(Dispute.stripe_dispute_id == obj["id"]), changed


def _flag(booking_id: str, dispute: Dispute) -> Alert | None:
    """Flag the booking and record its alert, once when the dispute opens and once when it is decided;
    returns the alert to queue once the transaction has committed (None if already raised)."""
    booking = Booking.get_by_id(booking_id)
    money = f"{dispute.amount} {dispute.currency}"
    if dispute.closed_at is None:
        reason = f"payment disputed ({dispute.stripe_dispute_id}, {dispute.reason or 'no reason'}): {money}, " \
                 f"{dispute.status}; bookingflow refunds nothing while it is open"
        if booking.flagged_at is None or not (booking.flag_reason or "").startswith("payment disputed"):
            update_fields(booking.id, flagged_at=utcnow(), flag_reason=reason[:500])
        return record_alert(f"dispute:{dispute.stripe_dispute_id}:opened", "dispute", f"booking {booking.id}: {reason}",
                            booking.id)
    outcome = {"won": "won: the money came back", "warning_closed": "closed in our favour",
               "lost": "lost: the money stays with the cardholder"}.get(dispute.status, dispute.status)
    reason = f"dispute {dispute.stripe_dispute_id} {outcome} ({money})"
    update_fields(booking.id, flagged_at=booking.flagged_at or utcnow(), flag_reason=reason[:500])
    return record_alert(f"dispute:{dispute.stripe_dispute_id}:closed", "dispute_closed", f"booking {booking.id}: {reason}",
                        booking.id)


def claim_early(payment: Payment) -> int:
    """Disputes of a payment recorded before the payment was (the dispute's delivery came first, the
    checkout's webhook late): tied to the booking now, which is flagged and alerted as if they had
    come after. Returns how many."""
    claimed = 0
    early = Dispute.select().where(Dispute.payment_intent_id == payment.payment_intent_id, Dispute.booking.is_null())
    for dispute in list(early) if payment.payment_intent_id else []:
        with write_transaction():
            if not Dispute.update(booking=payment.booking_id, updated_at=utcnow()).where(
                    Dispute.id == dispute.id, Dispute.booking.is_null()).execute():
                continue
            alert = _flag(payment.booking_id, Dispute.get_by_id(dispute.id))
        queue_alert(alert)
        claimed += 1
    return claimed
