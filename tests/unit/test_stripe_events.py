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
from models.tables import Alert, Dispute, Payment, Refund
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


# --- refunds made outside bookingflow, other payment methods, open enums -------------------------

@pytest.fixture
def confirmed(paying, quiet_sandbox):
    """The booking paid at the Stripe sandbox and confirmed."""
    deliver(d.CHECKOUT_COMPLETED, paid_at_stripe(quiet_sandbox, paying), stripe_events.checkout_paid)
    return fresh(paying)


def test_a_refund_of_our_payment_made_outside_bookingflow_is_recorded_once_and_counted(confirmed):
    obj = {**fixture("stripe/refund.json"), "id": "pyr_test_dashboard", "amount": 2000,
           "payment_intent": confirmed.payment_intent_id, "metadata": {}}
    outcome = deliver(d.REFUND_CREATED, obj, stripe_events.refund_event)
    assert (outcome.result, outcome.booking_id) == (Result.OUTSIDE_REFUND, confirmed.id)
    deliver(d.REFUND_UPDATED, obj, stripe_events.refund_event)
    (row,) = Refund.select().where(Refund.booking == confirmed.id)
    assert (row.purpose, row.amount, row.status, row.stripe_refund_id) == ("outside", 2000, "succeeded", obj["id"])
    assert (fresh(confirmed).amount_refunded, ledger.net_paid(fresh(confirmed))) == (2000, 10000)
    assert fresh(confirmed).flagged_at is None  # partial: nothing for an operator to decide


def test_a_refund_status_bookingflow_does_not_know_is_stored_and_neither_settles_nor_kills(confirmed):
    obj = {**fixture("stripe/refund.json"), "id": "re_test_future", "amount": 2000, "status": "in_transit",
           "payment_intent": confirmed.payment_intent_id, "metadata": {}}
    deliver(d.REFUND_CREATED, obj, stripe_events.refund_event)
    row = Refund.get(Refund.stripe_refund_id == obj["id"])
    assert row.status == "in_transit"
    assert (fresh(confirmed).amount_refunded, ledger.net_paid(fresh(confirmed))) == (0, 10000)
    deliver(d.REFUND_UPDATED, {**obj, "status": "succeeded"}, stripe_events.refund_event)
    assert fresh(confirmed).amount_refunded == 2000


@pytest.mark.parametrize("session_changes", [{"id": "cs_live_other_prefix_ok"}, {"payment_status": "paid_later_maybe"},
                                             {"status": "archived"}])
def test_a_checkout_session_with_new_enum_values_or_id_prefixes_is_still_handled(app, session_changes):
    session = {**checkout_session("no-such-booking", 12000), **session_changes}
    assert deliver(d.CHECKOUT_COMPLETED, session, stripe_events.checkout_paid).result == Result.UNMATCHED


@pytest.mark.parametrize("bad_id", ["", "re_<script>", "x" * 300, "re_ space"])
def test_a_refund_whose_id_is_not_of_stripes_shape_is_invalid(app, bad_id):
    obj = {**fixture("stripe/refund.json"), "id": bad_id}
    assert deliver(d.REFUND_CREATED, obj, stripe_events.refund_event).result == Result.INVALID


# --- disputes -----------------------------------------------------------------------------------

def dispute_object(booking, status: str, **changes) -> dict:
    return {**fixture("stripe/dispute.json"), "id": "du_test_unit", "amount": 12000, "charge": "py_test_unit",
            "payment_intent": booking.payment_intent_id, "status": status, "reason": "fraudulent", **changes}


def test_a_dispute_closing_before_it_was_told_opened_ends_closed_whatever_comes_late(confirmed):
    deliver(d.DISPUTE_CLOSED, dispute_object(confirmed, "lost"), stripe_events.dispute_event)
    outcome = deliver(d.DISPUTE_CREATED, dispute_object(confirmed, "needs_response"), stripe_events.dispute_event)
    assert (outcome.result, outcome.booking_id) == (Result.DISPUTE_RECORDED, confirmed.id)
    deliver(d.DISPUTE_FUNDS_WITHDRAWN, dispute_object(confirmed, "needs_response"), stripe_events.dispute_event)
    (row,) = Dispute.select()
    assert (row.status, row.amount, row.booking_id, row.closed_at is not None) == ("lost", 12000, confirmed.id, True)
    assert "lost" in fresh(confirmed).flag_reason


def test_a_dispute_without_its_payment_intent_is_matched_through_the_charge_stripe_reports(confirmed, quiet_sandbox):
    (intent,) = [i for i in quiet_sandbox.objects("payment_intent") if i["id"] == confirmed.payment_intent_id]
    obj = dispute_object(confirmed, "needs_response", charge=intent["latest_charge"], payment_intent=None)
    outcome = deliver(d.DISPUTE_CREATED, obj, stripe_events.dispute_event)
    assert (outcome.result, outcome.booking_id) == (Result.DISPUTE_RECORDED, confirmed.id)
    assert Dispute.get().payment_intent_id == confirmed.payment_intent_id
    assert Alert.select().where(Alert.kind == "dispute", Alert.booking == confirmed.id).count() == 1


def test_a_dispute_status_bookingflow_does_not_know_is_recorded_and_counts_as_open(confirmed):
    deliver(d.DISPUTE_UPDATED, dispute_object(confirmed, "awaiting_arbitration"), stripe_events.dispute_event)
    assert Dispute.get().status == "awaiting_arbitration"
    assert ledger.has_disputed_payment(fresh(confirmed))
    assert ledger.plan_refund(fresh(confirmed), "cancellation", 12000, "cancel", "test") == []


def test_a_dispute_naming_a_booking_only_in_metadata_is_unmatched_and_alerts_nothing(confirmed):
    obj = dispute_object(confirmed, "needs_response", payment_intent="pi_test_not_ours", charge="ch_test_not_ours",
                         metadata={"booking_id": confirmed.id})
    assert deliver(d.DISPUTE_CREATED, obj, stripe_events.dispute_event).result == Result.UNMATCHED
    assert Dispute.get().booking_id is None
    assert not Alert.select().exists()
    assert fresh(confirmed).flagged_at is None


def test_a_dispute_delivered_before_its_payment_is_tied_to_the_booking_when_the_payment_comes(paying, quiet_sandbox):
    session = paid_at_stripe(quiet_sandbox, paying)
    early = deliver(d.DISPUTE_CREATED, dispute_object(paying, "needs_response", payment_intent=session["payment_intent"]),
                    stripe_events.dispute_event)
    assert early.result == Result.UNMATCHED

    deliver(d.CHECKOUT_COMPLETED, session, stripe_events.checkout_paid)

    assert Dispute.get(Dispute.stripe_dispute_id == "du_test_unit").booking_id == paying.id
    booking = fresh(paying)
    assert booking.flagged_at is not None and "payment disputed" in booking.flag_reason
    assert Alert.select().where(Alert.kind == "dispute", Alert.booking == paying.id).count() == 1


def test_a_refund_carrying_our_refund_key_for_another_amount_is_an_outside_refund_not_ours(confirmed):
    """Metadata anyone refunding on the account may write: our key on a Dashboard refund of another
    amount does not make it ours (ours would never be sent, and the ledger would count our amount)."""
    (row,) = ledger.plan_refund(confirmed, "cancellation", 6000, "cancel", "policy")
    obj = {**fixture("stripe/refund.json"), "id": "re_test_forged_key", "amount": 1000,
           "payment_intent": confirmed.payment_intent_id, "metadata": {"refund_key": row.key}}
    assert deliver(d.REFUND_CREATED, obj, stripe_events.refund_event).result == Result.OUTSIDE_REFUND
    ours = Refund.get_by_id(row.id)
    assert (ours.stripe_refund_id, ours.status, ours.amount) == (None, "new", 6000)


def test_a_refund_withdrawn_for_a_dispute_is_never_sent_even_when_issued_again(confirmed, quiet_sandbox):
    (row,) = ledger.plan_refund(confirmed, "duplicate_payment", 6000, "dup", "a second payment")
    deliver(d.DISPUTE_CREATED, dispute_object(confirmed, "warning_needs_response"), stripe_events.dispute_event)
    assert Refund.get_by_id(row.id).status == "withdrawn"

    assert ledger.issue(row).status == "withdrawn"
    assert [r for r in quiet_sandbox.objects("refund") if r["payment_intent"] == confirmed.payment_intent_id] == []
