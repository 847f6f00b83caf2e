"""Stripe's deliveries: find the payment, refund or dispute an object is about, and hand it to the
decision (jobs/payments.py, jobs/flow.py, jobs/disputes.py): Checkout Sessions paid, failed or
expired, refunds settling (ours, or made outside bookingflow of our payments), and disputes.

Stripe's ids are checked by shape, not prefix (`py_` charges and `pyr_` refunds are as good as `ch_`
and `re_`), and its enums are open sets: a value bookingflow does not know is recorded, logged once,
and acted on only as far as the known fields allow.
"""

from __future__ import annotations

import logging
import re

from bookingflow.deliveries import CHECKOUT_EXPIRED
from bookingflow.providers.calendly_payloads import PayloadInvalid
from bookingflow.providers.payload_schemas import STRIPE_ID_PATTERN
from jobs import disputes, flow, ledger, payments
from jobs.outcomes import Outcome, Result
from models.tables import Booking, ProviderEvent, Refund

log = logging.getLogger(__name__)

STRIPE_ID = re.compile(STRIPE_ID_PATTERN)
REFUND_STATUSES = ("pending", "requires_action", "succeeded", "failed", "canceled")
SESSION_STATUSES = ("open", "complete", "expired")
PAYMENT_STATUSES = ("paid", "unpaid", "no_payment_required")
_unknown_seen: set[tuple[str, str]] = set()


def stripe_object(body: dict, kind: str) -> dict:
    """The event's object, with an id of Stripe's shape (any prefix: Stripe has several per kind)."""
    data = body.get("data") if isinstance(body, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not STRIPE_ID.match(obj["id"]):
        raise PayloadInvalid(f"data.object is not a Stripe {kind}")
    return obj


def open_enum(obj: dict, field: str, known: tuple[str, ...]) -> str | None:
    """A Stripe enum field as sent. A value outside `known` is kept and logged once per process: Stripe
    adds values as a backward-compatible change, and a delivery carrying one is still handled."""
    value = obj.get(field)
    if not isinstance(value, str):
        return None
    if value not in known and (field, value) not in _unknown_seen:
        _unknown_seen.add((field, value))
        log.warning("Stripe sent %s %r, which bookingflow does not know: recorded, not acted on", field, value[:60])
    return value


def booking_of(obj: dict) -> Booking | None:
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    booking_id = obj.get("client_reference_id") or metadata.get("booking_id")
    if not isinstance(booking_id, str):
        return None
    return Booking.by_id(booking_id)


def checkout_paid(event: ProviderEvent, body: dict) -> Outcome:
    session = stripe_object(body, "Checkout Session")
    open_enum(session, "status", SESSION_STATUSES)
    payment_status = open_enum(session, "payment_status", PAYMENT_STATUSES)
    payment = ledger.payment_of_session(session["id"])
    if payment is None:
        booking = booking_of(session)
        if booking is None:
            return Outcome(Result.UNMATCHED, detail="not a bookingflow Checkout Session")
        if payment_status not in payments.PAID:
            return Outcome(Result.FOREIGN_SESSION, booking.id, "a Checkout Session bookingflow did not create")
        return payments.foreign_payment(session, booking, "bookingflow never created that session")
    if payment_status not in payments.PAID:
        return Outcome(Result.AWAITING_PAYMENT, payment.booking_id, f"completed, payment {payment_status}")
    return payments.payment_received(payment, session)


def checkout_failed(event: ProviderEvent, body: dict) -> Outcome:
    session = stripe_object(body, "Checkout Session")
    payment = ledger.payment_of_session(session["id"])
    if payment is None:
        return Outcome(Result.UNMATCHED, detail="not a bookingflow Checkout Session")
    booking = Booking.get_by_id(payment.booking_id)
    ledger.mark_session(session["id"], "expired" if event.type == CHECKOUT_EXPIRED else "failed")
    return payments.payment_failed(booking, session["id"], event.type)


def _refund_changed(refund: Refund, status: str, stripe_refund_id: str) -> Outcome:
    ledger.record_status(refund.id, stripe_refund_id, status)
    flow.settle_refund_state(refund.booking_id)
    return Outcome(Result.REFUND_UPDATED, refund.booking_id, status)


def refund_seen(obj: dict, status: str | None) -> Outcome:
    """A refund as Stripe describes it (a delivery, or its list of a PaymentIntent's refunds): ours
    updated; one of our payment made outside bookingflow recorded; anything else unmatched."""
    refund = ledger.refund_of_stripe(obj)
    if refund is not None and refund.purpose != ledger.OUTSIDE:
        if status is None:
            return Outcome(Result.RECORDED, refund.booking_id, "refund without a status")
        return _refund_changed(refund, status, obj["id"])
    payment = ledger.payment_of_intent(obj.get("payment_intent"))
    if payment is None:
        return Outcome(Result.UNMATCHED, detail="not a refund of a bookingflow payment")
    return payments.outside_refund(payment, obj, status)


def refund_event(event: ProviderEvent, body: dict) -> Outcome:
    obj = stripe_object(body, "refund")
    status = "failed" if event.type == "refund.failed" else open_enum(obj, "status", REFUND_STATUSES)
    return refund_seen(obj, status)


def charge_refunded(event: ProviderEvent, body: dict) -> Outcome:
    # Since API version 2022-11-15 the charge no longer lists its refunds: ask Stripe for every refund
    # of the PaymentIntent, ours and any made outside bookingflow (the Dashboard, another API user).
    charge = stripe_object(body, "charge")
    payment = ledger.payment_of_intent(charge.get("payment_intent"))
    if payment is None:
        return Outcome(Result.UNMATCHED, detail="not a charge of a bookingflow payment")
    outcome = Outcome(Result.RECORDED, payment.booking_id, "no refund awaiting news")
    for found in ledger.list_refunds_at_stripe(payment.payment_intent_id):
        status = open_enum(found, "status", REFUND_STATUSES)
        known = ledger.refund_of_stripe(found)
        if known is not None and known.status == status:
            continue
        seen = refund_seen(found, status)
        if seen.result in (Result.REFUND_UPDATED, Result.OUTSIDE_REFUND):
            outcome = seen
    return outcome


def dispute_event(event: ProviderEvent, body: dict) -> Outcome:
    """charge.dispute.created, updated, closed, funds_withdrawn, funds_reinstated: each carries the
    dispute as it is then, which is all that is recorded (jobs/disputes.py)."""
    obj = stripe_object(body, "dispute")
    status = open_enum(obj, "status", disputes.KNOWN)
    if status is None:
        raise PayloadInvalid("data.object.status: a dispute without a status")
    return disputes.record(obj, status)
