"""jobs/stripe_events.py: each handler called with a stored delivery and a body built from
tests/fixtures/stripe, one outcome per test. The booking is set up in the state under test; its
checkout is a real one at the Stripe sandbox."""

from __future__ import annotations

import pytest
import requests

from bookingflow import deliveries as d
from jobs import flow, ledger, payments, stripe_events
from jobs.outcomes import Result
from models.states import State
from models.tables import Alert, Payment, Refund
from support.providers import checkout_session, fixture, stripe_event
from support.records import booking_in, checkout, fresh, handled, paid_at_stripe, stored

EVENT_URI = "https://api.calendly.com/scheduled_events/EVTUNIT"


@pytest.fixture
def paying(app, quiet_sandbox, session_type):
    """A booking whose slot Calendly confirmed, advanced to its open checkout at the Stripe sandbox."""
    booking = booking_in(session_type, State.CALENDLY_WEBHOOK_RECEIVED, calendly_event_uri=EVENT_URI,
                         calendly_invitee_uri=f"{EVENT_URI}/invitees/INV", amount_due=0)
    assert flow.advance(booking.id) == State.PAYMENT_PROCESSING
    return fresh(booking)


def deliver(kind: str, obj: dict, handler):
    body = stripe_event(kind, obj)
    return handled(stored(d.STRIPE, kind, body, subject=obj["id"], event_id=body["id"]), handler)


# --- checkout.session.completed -------------------------------------------------------------------

def test_a_paid_checkout_of_ours_confirms_the_booking(paying, quiet_sandbox):
    session = paid_at_stripe(quiet_sandbox, paying)
    outcome = deliver(d.CHECKOUT_COMPLETED, session, stripe_events.checkout_paid)
    assert (outcome.result, outcome.booking_id) == (Result.ADVANCED, paying.id)
    booking = fresh(paying)
    assert (booking.state, booking.amount_paid) == (State.BOOKING_CONFIRMED.value, 12000)


def test_paying_freezes_the_session_types_refund_policy_on_the_booking(paying, quiet_sandbox):
    deliver(d.CHECKOUT_COMPLETED, paid_at_stripe(quiet_sandbox, paying), stripe_events.checkout_paid)
    assert fresh(paying).refund_policy_frozen_at is not None


def test_the_same_paid_checkout_delivered_again_is_a_duplicate(paying, quiet_sandbox):
    session = paid_at_stripe(quiet_sandbox, paying)
    deliver(d.CHECKOUT_COMPLETED, session, stripe_events.checkout_paid)
    outcome = deliver(d.CHECKOUT_COMPLETED, session, stripe_events.checkout_paid)
    assert outcome.result == Result.DUPLICATE
    assert fresh(paying).amount_paid == 12000


def test_a_completed_checkout_still_settling_waits_for_its_payment(paying, quiet_sandbox):
    session = {**paid_at_stripe(quiet_sandbox, paying), "payment_status": "unpaid"}
    outcome = deliver(d.CHECKOUT_COMPLETED, session, stripe_events.checkout_paid)
    assert outcome.result == Result.AWAITING_PAYMENT
    assert fresh(paying).state == State.PAYMENT_PROCESSING.value


def test_a_checkout_of_ours_paying_less_than_asked_is_foreign_money_and_confirms_nothing(paying, quiet_sandbox):
    session = {**paid_at_stripe(quiet_sandbox, paying), "amount_subtotal": 100, "amount_total": 100}
    outcome = deliver(d.CHECKOUT_COMPLETED, session, stripe_events.checkout_paid)
    assert outcome.result == Result.FOREIGN_PAYMENT
    assert (fresh(paying).state, fresh(paying).amount_paid) == (State.PAYMENT_PROCESSING.value, 0)
    assert Alert.select().where(Alert.kind == "foreign_payment").count() == 1


def test_a_checkout_of_ours_paid_in_another_currency_is_foreign_money(paying, quiet_sandbox):
    session = {**paid_at_stripe(quiet_sandbox, paying), "currency": "eur"}
    assert deliver(d.CHECKOUT_COMPLETED, session, stripe_events.checkout_paid).result == Result.FOREIGN_PAYMENT


def test_a_paid_checkout_bookingflow_never_created_that_names_a_booking_is_foreign_money(paying):
    session = checkout_session(paying.id, 12000)
    outcome = deliver(d.CHECKOUT_COMPLETED, session, stripe_events.checkout_paid)
    assert (outcome.result, outcome.booking_id) == (Result.FOREIGN_PAYMENT, paying.id)
    assert fresh(paying).amount_paid == 0


def test_an_unpaid_checkout_bookingflow_never_created_is_a_foreign_session(paying):
    session = checkout_session(paying.id, 12000, payment_status="unpaid")
    assert deliver(d.CHECKOUT_COMPLETED, session, stripe_events.checkout_paid).result == Result.FOREIGN_SESSION


def test_a_checkout_naming_no_booking_of_ours_is_unmatched(app):
    session = checkout_session("no-such-booking", 12000)
    assert deliver(d.CHECKOUT_COMPLETED, session, stripe_events.checkout_paid).result == Result.UNMATCHED


def test_a_payment_that_lands_after_the_booking_was_abandoned_goes_back(paying, quiet_sandbox):
    session = paid_at_stripe(quiet_sandbox, paying)
    flow.cancel(paying.id, "client-gone", cancelled_by="client", cancel_reason="changed my mind")
    assert fresh(paying).state == State.IDLE.value
    outcome = deliver(d.CHECKOUT_COMPLETED, session, stripe_events.checkout_paid)
    assert outcome.result == Result.REFUNDING_LATE_PAYMENT
    (refund,) = Refund.select().where(Refund.booking == paying.id)
    assert (refund.amount, refund.payment_intent_id) == (12000, session["payment_intent"])


def test_a_second_checkout_of_ours_paid_for_a_confirmed_booking_is_refunded_whole(paying, quiet_sandbox):
    first = paid_at_stripe(quiet_sandbox, paying)
    # The client had opened an earlier checkout of the same booking too: recorded, then paid after.
    earlier = checkout_session(paying.id, 12000, payment_status="paid")
    ledger.record_session(fresh(paying), checkout(earlier["id"]))
    deliver(d.CHECKOUT_COMPLETED, first, stripe_events.checkout_paid)
    earlier = {**earlier, "payment_intent": first["payment_intent"]}  # the sandbox's charge, so Stripe can refund it
    outcome = deliver(d.CHECKOUT_COMPLETED, earlier, stripe_events.checkout_paid)
    assert outcome.result == Result.REFUNDED_DUPLICATE
    assert fresh(paying).state == State.BOOKING_CONFIRMED.value
    assert [r.purpose for r in Refund.select().where(Refund.booking == paying.id)] == ["duplicate_payment"]


# --- checkout.session.async_payment_failed / expired ----------------------------------------------

@pytest.mark.parametrize("kind", [d.ASYNC_PAYMENT_FAILED, d.CHECKOUT_EXPIRED])
def test_the_open_checkout_failing_moves_the_booking_to_payment_failed(paying, quiet_sandbox, kind):
    (session,) = [s for s in quiet_sandbox.objects("checkout.session") if s["id"] == paying.checkout_session_id]
    outcome = deliver(kind, session, stripe_events.checkout_failed)
    assert outcome.result == Result.ADVANCED
    booking = fresh(paying)
    assert (booking.state, booking.payment_failure) == (State.PAYMENT_FAILED.value,
                                                        payments.FAILURE_REASONS[kind])
    assert Payment.get(Payment.checkout_session_id == session["id"]).status == (
        "expired" if kind == d.CHECKOUT_EXPIRED else "failed")


def test_an_older_checkout_expiring_is_only_recorded(paying):
    older = checkout_session(paying.id, 12000, payment_status="unpaid")
    ledger.record_session(fresh(paying), checkout(older["id"]))
    outcome = deliver(d.CHECKOUT_EXPIRED, older, stripe_events.checkout_failed)
    assert outcome.result == Result.RECORDED
    assert fresh(paying).state == State.PAYMENT_PROCESSING.value


def test_a_checkout_bookingflow_never_created_failing_is_unmatched(paying):
    session = checkout_session(paying.id, 12000, payment_status="unpaid")
    assert deliver(d.CHECKOUT_EXPIRED, session, stripe_events.checkout_failed).result == Result.UNMATCHED


# --- refunds ------------------------------------------------------------------------------------

@pytest.fixture
def refunding(paying, quiet_sandbox):
    """The booking paid, then cancelled by its client: its refund asked of the Stripe sandbox, where
    it stays pending until settled."""
    quiet_sandbox.config.refund_status = "pending"
    deliver(d.CHECKOUT_COMPLETED, paid_at_stripe(quiet_sandbox, paying), stripe_events.checkout_paid)
    flow.cancel(paying.id, "client-cancel", cancelled_by="client", cancel_reason="cannot come")
    flow.advance(paying.id)
    (refund,) = Refund.select().where(Refund.booking == paying.id)
    assert (refund.status, fresh(paying).state) == ("pending", State.REFUND_PENDING.value)
    yield refund
    quiet_sandbox.config.refund_status = "succeeded"


def settled_at_stripe(sandbox, refund: Refund, outcome: str) -> None:
    response = requests.post(f"{sandbox.base}/stripe/refunds/{refund.stripe_refund_id}/settle",
                             json={"outcome": outcome}, timeout=10)
    assert response.status_code == 200, response.text


def refund_object(refund: Refund, status: str) -> dict:
    return {**fixture("stripe/refund.json"), "id": refund.stripe_refund_id, "status": status,
            "payment_intent": refund.payment_intent_id, "amount": refund.amount}


def test_a_refund_of_ours_succeeding_completes_the_bookings_refund(refunding):
    outcome = deliver(d.REFUND_UPDATED, refund_object(refunding, "succeeded"), stripe_events.refund_event)
    assert (outcome.result, outcome.detail) == (Result.REFUND_UPDATED, "succeeded")
    booking = fresh(refunding.booking)
    assert (booking.state, booking.amount_refunded) == (State.REFUND_COMPLETED.value, 12000)


def test_a_refund_failed_event_marks_our_refund_failed_whatever_status_it_carries(refunding):
    deliver(d.REFUND_FAILED, refund_object(refunding, "pending"), stripe_events.refund_event)
    assert Refund.get_by_id(refunding.id).status == "failed"


def test_a_refund_that_is_not_ours_is_unmatched(app):
    obj = {**fixture("stripe/refund.json"), "id": "re_test_someone_elses", "metadata": {}}
    assert deliver(d.REFUND_CREATED, obj, stripe_events.refund_event).result == Result.UNMATCHED


def test_a_late_pending_refund_event_leaves_a_settled_refund_alone(refunding):
    deliver(d.REFUND_UPDATED, refund_object(refunding, "succeeded"), stripe_events.refund_event)
    deliver(d.REFUND_CREATED, refund_object(refunding, "pending"), stripe_events.refund_event)
    assert Refund.get_by_id(refunding.id).status == "succeeded"
    assert fresh(refunding.booking).state == State.REFUND_COMPLETED.value


def test_a_charge_refunded_asks_stripe_about_our_refunds_awaiting_news(refunding, quiet_sandbox):
    settled_at_stripe(quiet_sandbox, refunding, "succeeded")
    charge = {**fixture("stripe/charge.json"), "payment_intent": refunding.payment_intent_id}
    outcome = deliver(d.CHARGE_REFUNDED, charge, stripe_events.charge_refunded)
    assert (outcome.result, outcome.detail) == (Result.REFUND_UPDATED, "succeeded")
    assert Refund.get_by_id(refunding.id).status == "succeeded"
    assert fresh(refunding.booking).state == State.REFUND_COMPLETED.value


def test_a_charge_refunded_of_a_payment_bookingflow_did_not_create_is_unmatched(app):
    charge = {**fixture("stripe/charge.json"), "payment_intent": "pi_test_nothing_of_ours"}
    assert deliver(d.CHARGE_REFUNDED, charge, stripe_events.charge_refunded).result == Result.UNMATCHED
