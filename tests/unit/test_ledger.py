"""jobs/ledger.py: a booking's money, each Checkout Session and refund a row of its own, on a real
database. Nothing here talks to Stripe (issue and expire_open_sessions are exercised by the scenarios)."""

from __future__ import annotations

import pytest

from jobs import ledger
from models.tables import Payment, Refund
from support.catalogue import make_session_type
from support.providers import checkout_session
from support.records import booking_in, checkout, fresh


@pytest.fixture
def booking(app, sandbox):
    return booking_in(make_session_type(sandbox.base, "coaching-hour", price=12000), payment_attempt=1)


def paid(booking, amount: int | None = None, currency: str | None = None) -> Payment:
    """A session of ours for the booking, recorded and then paid as Stripe charged it."""
    session = checkout_session(booking.id, amount if amount is not None else booking.amount_due,
                               currency or booking.currency)
    ledger.record_session(fresh(booking), checkout(session["id"]))
    payment = ledger.payment_of_session(session["id"])
    if currency:
        Payment.update(currency=currency).where(Payment.id == payment.id).execute()
        payment = Payment.get_by_id(payment.id)
    assert ledger.mark_paid(payment, session)
    return Payment.get_by_id(payment.id)


def planned(booking) -> list[tuple[str, int]]:
    return sorted((row.payment_intent_id, row.amount) for row in Refund.select().where(Refund.booking == booking.id))


# --- payments -----------------------------------------------------------------------------------

def test_a_recorded_session_asks_for_what_the_attempt_owes(booking):
    ledger.record_session(booking, checkout("cs_test_one"))
    payment = ledger.payment_of_session("cs_test_one")
    assert (payment.booking_id, payment.attempt, payment.amount, payment.currency, payment.status) == (
        booking.id, 1, 12000, "usd", "open")


def test_recording_the_same_session_twice_keeps_one_row(booking):
    ledger.record_session(booking, checkout("cs_test_one"))
    ledger.record_session(booking, checkout("cs_test_one"))
    assert Payment.select().count() == 1


@pytest.mark.parametrize("session_id", ["cs_test_not_ours", None, 42, ["cs_test_one"]])
def test_a_session_bookingflow_did_not_create_has_no_payment(booking, session_id):
    ledger.record_session(booking, checkout("cs_test_one"))
    assert ledger.payment_of_session(session_id) is None


def test_a_paid_session_counts_what_stripe_charged_as_the_bookings_money(booking):
    payment = paid(booking, amount=11000)
    assert (payment.status, payment.amount) == ("paid", 11000)
    assert payment.payment_intent_id.startswith("pi_")
    assert (fresh(booking).amount_paid, fresh(booking).amount_refunded) == (11000, 0)


def test_a_session_is_marked_paid_only_once(booking):
    session = checkout_session(booking.id, 12000)
    ledger.record_session(booking, checkout(session["id"]))
    payment = ledger.payment_of_session(session["id"])
    assert ledger.mark_paid(payment, session)
    assert not ledger.mark_paid(payment, session)
    assert not ledger.mark_paid(payment, {**session, "amount_total": 99999})
    assert fresh(booking).amount_paid == 12000
    assert Payment.get_by_id(payment.id).amount == 12000


def test_two_paid_sessions_of_one_booking_add_up(booking):
    paid(booking)
    paid(booking)
    assert fresh(booking).amount_paid == 24000


def test_money_paid_in_another_currency_is_never_added_to_the_bookings(booking):
    paid(booking)
    paid(booking, amount=500, currency="eur")
    assert fresh(booking).amount_paid == 12000


def test_an_expired_or_failed_session_is_marked_only_while_open(booking):
    ledger.record_session(booking, checkout("cs_test_open"))
    ledger.mark_session("cs_test_open", "expired")
    assert ledger.payment_of_session("cs_test_open").status == "expired"
    payment = paid(booking)
    ledger.mark_session(payment.checkout_session_id, "failed")
    assert Payment.get_by_id(payment.id).status == "paid"


# --- refunds ------------------------------------------------------------------------------------

def test_a_refund_is_planned_against_the_paid_payment(booking):
    payment = paid(booking)
    (row,) = ledger.plan_refund(fresh(booking), "cancellation", 6000, "client-cancel", "by policy")
    assert (row.payment_intent_id, row.amount, row.currency, row.status, row.purpose) == (
        payment.payment_intent_id, 6000, "usd", "new", "cancellation")
    assert row.key == f"cancellation:{booking.id}:client-cancel:{payment.payment_intent_id}"


def test_planning_the_same_decision_again_returns_its_rows_and_adds_none(booking):
    paid(booking)
    first = ledger.plan_refund(fresh(booking), "cancellation", 6000, "client-cancel", "by policy")
    again = ledger.plan_refund(fresh(booking), "cancellation", 12000, "client-cancel", "a retried job")
    assert [row.id for row in again] == [row.id for row in first]
    assert Refund.select().count() == 1 and Refund.get().amount == 6000


def test_a_refund_is_never_planned_beyond_what_was_paid(booking):
    payment = paid(booking)
    ledger.plan_refund(fresh(booking), "cancellation", 50000, "too-much", "more than paid")
    assert planned(booking) == [(payment.payment_intent_id, 12000)]


def test_a_second_decision_refunds_only_what_the_first_left(booking):
    payment = paid(booking)
    ledger.plan_refund(fresh(booking), "reschedule", 9000, "first", "first")
    (row,) = ledger.plan_refund(fresh(booking), "cancellation", 12000, "second", "second")
    assert row.amount == 3000
    assert ledger.plan_refund(fresh(booking), "cancellation", 1, "third", "third") == []
    assert sum(amount for _, amount in planned(booking)) == payment.amount


def test_a_failed_refund_leaves_its_money_refundable_again(booking):
    paid(booking)
    (row,) = ledger.plan_refund(fresh(booking), "cancellation", 12000, "first", "first")
    ledger.record_status(row.id, "re_test_first", "failed")
    (again,) = ledger.plan_refund(fresh(booking), "cancellation", 12000, "second", "second")
    assert again.amount == 12000


@pytest.mark.parametrize("amount", [0, -100])
def test_nothing_is_planned_for_nothing(booking, amount):
    paid(booking)
    assert ledger.plan_refund(fresh(booking), "cancellation", amount, "none", "none") == []
    assert Refund.select().count() == 0


def test_nothing_is_planned_when_nothing_was_paid(booking):
    ledger.record_session(booking, checkout("cs_test_open"))
    assert ledger.plan_refund(fresh(booking), "cancellation", 12000, "unpaid", "unpaid") == []


def test_a_refund_spreads_across_payments_without_exceeding_any(booking):
    first, second = paid(booking, amount=5000), paid(booking, amount=5000)
    rows = ledger.plan_refund(fresh(booking), "cancellation", 7000, "spread", "spread")
    assert sum(row.amount for row in rows) == 7000
    assert sorted(row.amount for row in rows) == [2000, 5000]
    assert {row.payment_intent_id for row in rows} == {first.payment_intent_id, second.payment_intent_id}


def test_a_refund_of_only_one_payment_leaves_the_others_alone(booking):
    paid(booking)
    duplicate = paid(booking)
    (row,) = ledger.plan_refund(fresh(booking), "duplicate_payment", 50000, "dup", "a second payment",
                                only_payment=duplicate)
    assert (row.payment_intent_id, row.amount) == (duplicate.payment_intent_id, 12000)


def test_each_refund_row_is_in_its_payments_currency(booking):
    paid(booking)
    foreign = paid(booking, amount=500, currency="eur")
    rows = ledger.plan_refund(fresh(booking), "duplicate_payment", 500, "eur", "foreign", only_payment=foreign)
    assert [(row.amount, row.currency) for row in rows] == [(500, "eur")]


def test_only_settled_refunds_in_the_bookings_currency_count_as_refunded(booking):
    own = paid(booking)
    foreign = paid(booking, amount=500, currency="eur")
    (usd,) = ledger.plan_refund(fresh(booking), "cancellation", 4000, "usd", "usd", only_payment=own)
    (eur,) = ledger.plan_refund(fresh(booking), "duplicate_payment", 500, "eur", "eur", only_payment=foreign)
    ledger.record_status(usd.id, "re_test_usd", "pending")
    assert fresh(booking).amount_refunded == 0
    ledger.record_status(usd.id, "re_test_usd", "succeeded")
    ledger.record_status(eur.id, "re_test_eur", "succeeded")
    assert (fresh(booking).amount_paid, fresh(booking).amount_refunded) == (12000, 4000)


def test_net_paid_counts_refunds_done_or_under_way_but_not_dead_ones(booking):
    paid(booking)
    (pending,) = ledger.plan_refund(fresh(booking), "cancellation", 3000, "a", "a")
    assert ledger.net_paid(fresh(booking)) == 9000
    ledger.record_status(pending.id, "re_test_a", "canceled")
    assert ledger.net_paid(fresh(booking)) == 12000


# --- refund statuses, in any order ---------------------------------------------------------------

@pytest.fixture
def refund(booking):
    paid(booking)
    (row,) = ledger.plan_refund(fresh(booking), "cancellation", 12000, "order", "order")
    return row


def status_of(refund) -> str:
    return Refund.get_by_id(refund.id).status


def test_a_late_pending_never_replaces_a_final_status(refund):
    ledger.record_status(refund.id, "re_test_x", "succeeded")
    ledger.record_status(refund.id, "re_test_x", "pending")
    assert status_of(refund) == "succeeded"


def test_a_refund_that_succeeded_may_still_fail(refund):
    ledger.record_status(refund.id, "re_test_x", "succeeded")
    ledger.record_status(refund.id, "re_test_x", "failed")
    assert status_of(refund) == "failed"
    assert fresh(refund.booking).amount_refunded == 0


def test_a_failed_refund_does_not_succeed_afterwards(refund):
    ledger.record_status(refund.id, "re_test_x", "failed")
    ledger.record_status(refund.id, "re_test_x", "succeeded")
    assert status_of(refund) == "failed"


def test_a_stripe_refund_is_ours_by_its_id(refund):
    ledger.record_status(refund.id, "re_test_x", "pending")
    assert ledger.refund_of_stripe({"id": "re_test_x"}).id == refund.id


def test_a_stripe_refund_is_ours_by_its_metadata_key_only_for_our_payment_and_amount(refund):
    obj = {"id": "re_test_new", "metadata": {"refund_key": refund.key}, "payment_intent": refund.payment_intent_id,
           "amount": refund.amount}
    assert ledger.refund_of_stripe(obj).id == refund.id
    assert ledger.refund_of_stripe({**obj, "payment_intent": "pi_test_someone_else"}) is None
    assert ledger.refund_of_stripe({**obj, "amount": refund.amount - 1}) is None
    assert ledger.refund_of_stripe({"id": "re_test_unknown", "metadata": "junk"}) is None


def test_refunds_in_flight_are_those_of_the_purposes_asked_for(refund, booking):
    assert [row.id for row in ledger.refunds_in_flight(fresh(booking), ("cancellation",))] == [refund.id]
    assert ledger.refunds_in_flight(fresh(booking), ("reschedule",)) == []
