"""Stripe's deliveries: find the payment or refund an object is about, and hand it to the decision
(jobs/payments.py, jobs/flow.py): Checkout Sessions paid, failed or expired, and refunds settling."""

from __future__ import annotations

from bookingflow.deliveries import CHECKOUT_EXPIRED
from bookingflow.providers.calendly_payloads import PayloadInvalid
from jobs import flow, ledger, payments
from jobs.outcomes import Outcome, Result
from models.tables import Booking, ProviderEvent, Refund


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


def checkout_paid(event: ProviderEvent, body: dict) -> Outcome:
    session = stripe_object(body, "cs_")
    payment = ledger.payment_of_session(session["id"])
    if payment is None:
        booking = booking_of(session)
        if booking is None:
            return Outcome(Result.UNMATCHED, detail="not a bookingflow Checkout Session")
        if session.get("payment_status") not in payments.PAID:
            return Outcome(Result.FOREIGN_SESSION, booking.id, "a Checkout Session bookingflow did not create")
        return payments.foreign_payment(session, booking, "bookingflow never created that session")
    if session.get("payment_status") not in payments.PAID:
        return Outcome(Result.AWAITING_PAYMENT, payment.booking_id, "completed, payment still settling")
    return payments.payment_received(payment, session)


def checkout_failed(event: ProviderEvent, body: dict) -> Outcome:
    session = stripe_object(body, "cs_")
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
    outcome = Outcome(Result.RECORDED, detail="no refund of ours awaiting news")
    for refund in ledger.refunds_of_intent(intent):
        if ledger.refresh(refund):
            flow.settle_refund_state(refund.booking_id)
            outcome = Outcome(Result.REFUND_UPDATED, refund.booking_id, Refund.get_by_id(refund.id).status)
    return outcome
