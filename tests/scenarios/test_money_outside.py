"""Money that moves outside bookingflow, at Stripe: refunds made in the Dashboard (or by any other API
user) of a booking's payment, chargebacks (disputes) opened, won and lost, charges and refunds of
other payment methods (`py_`, `pyr_`), and enum values Stripe adds later. Through our HTTP API, the
sandbox's Stripe (its Dashboard and the cardholder's bank played by its simulator actions), signed
deliveries and the workers."""

from __future__ import annotations

import pytest
import requests

from models.tables import Alert, Booking, Dispute, ProviderEvent, Refund
from support.cli import suite_cli
from support.flows import Client, assert_money, calendly_event, confirmed_booking, hours_from_now, sessions_of
from support.waiting import wait_until


# --- at the sandbox and in our books -------------------------------------------------------------

def act(frontend: Client, booking_id: str, action: str, body: dict | None = None) -> requests.Response:
    return frontend.http.post(f"{frontend.base}/v1/bookings/{booking_id}/{action}", json=body if body is not None else {})


def idle(frontend: Client) -> None:
    """Every delivery the sandbox sent has been processed."""
    frontend.sandbox.wait_deliveries_idle()
    wait_until(lambda: ProviderEvent.select().where(ProviderEvent.processed_at.is_null()).count() == 0,
               message="every delivery processed")


def intent_of(sandbox, booking_id: str) -> str:
    (intent,) = {s["payment_intent"] for s in sessions_of(sandbox, booking_id) if s.get("payment_intent")}
    return intent


def charge_of(sandbox, intent_id: str) -> str:
    (intent,) = [i for i in sandbox.objects("payment_intent") if i["id"] == intent_id]
    return intent["latest_charge"]


def simulate(sandbox, path: str, **body) -> dict:
    response = requests.post(f"{sandbox.base}/stripe{path}", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def dashboard_refund(sandbox, intent_id: str, amount: int | None = None) -> dict:
    return simulate(sandbox, f"/payment_intents/{intent_id}/dashboard_refund",
                    **({"amount": amount} if amount is not None else {}))


def refunds_at_stripe(sandbox, intent_id: str) -> list[dict]:
    return [r for r in sandbox.objects("refund") if r["payment_intent"] == intent_id]


def cancelled_and_settled(booking_id: str) -> Booking:
    return wait_until(lambda: (b := Booking.get_by_id(booking_id)).settled_at is not None and b,
                      message="the cancellation's closing work done")


@pytest.fixture
def stripe_switches(sandbox):
    """The sandbox's switches put back after the test."""
    yield sandbox.config
    sandbox.config.non_card_ids = False
    sandbox.config.refund_status = "succeeded"


# --- refunds made outside bookingflow -----------------------------------------------------------

@pytest.mark.parametrize("hours, outside, ours", [
    (72, 2000, 3000),   # full refund by policy: exactly the rest
    (30, 1000, 2500),   # half by policy (2500): still within what remains (4000)
    (30, 4000, 1000),   # half by policy (2500), capped by what remains (1000)
])
def test_a_cancellation_after_a_partial_dashboard_refund_refunds_at_most_the_rest(frontend, sandbox, hours, outside, ours):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(hours))
    intent = intent_of(sandbox, view["id"])
    made = dashboard_refund(sandbox, intent, outside)
    wait_until(lambda: Booking.get_by_id(view["id"]).amount_refunded == outside, message="the outside refund counted")
    row = Refund.get(Refund.stripe_refund_id == made["id"])
    assert (row.purpose, row.amount, row.status) == ("outside", outside, "succeeded")

    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    (ours_row,) = Refund.select().where(Refund.booking == view["id"], Refund.purpose == "cancellation")
    assert ours_row.amount == ours
    assert sorted(r["amount"] for r in refunds_at_stripe(sandbox, intent)) == sorted([outside, ours])
    idle(frontend)
    assert_money(sandbox, frontend.status(done["id"]), kept=5000 - outside - ours)
    assert not ProviderEvent.select().where(ProviderEvent.outcome == "unmatched").exists()


def test_a_full_dashboard_refund_flags_the_confirmed_booking_and_a_cancellation_refunds_nothing(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    intent = intent_of(sandbox, view["id"])
    dashboard_refund(sandbox, intent)
    booking = wait_until(lambda: (b := Booking.get_by_id(view["id"])).flagged_at is not None and b,
                         message="the booking flagged")
    assert "refunded in full outside bookingflow" in booking.flag_reason
    assert booking.amount_refunded == 5000
    assert Alert.get(Alert.booking == view["id"]).kind == "outside_refund"

    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    booking = cancelled_and_settled(view["id"])
    assert booking.state == "BOOKING_CANCELLED"
    assert [r["amount"] for r in refunds_at_stripe(sandbox, intent)] == [5000]
    assert not Refund.select().where(Refund.booking == view["id"], Refund.purpose == "cancellation").exists()


# --- disputes -----------------------------------------------------------------------------------

def test_a_disputed_booking_is_flagged_shown_and_cancelling_it_releases_the_slot_and_refunds_nothing(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    intent = intent_of(sandbox, view["id"])
    dispute = simulate(sandbox, f"/charges/{charge_of(sandbox, intent)}/dispute", reason="fraudulent")
    shown = wait_until(lambda: (v := frontend.status(view["id"]))["disputes"] and v, message="the dispute shown")
    assert shown["disputes"][0]["status"] in ("needs_response",)
    assert (shown["disputes"][0]["amount"], shown["disputes"][0]["closed_at"]) == (5000, None)
    booking = Booking.get_by_id(view["id"])
    assert booking.flagged_at is not None and dispute["id"] in booking.flag_reason
    assert Alert.get(Alert.key == f"dispute:{dispute['id']}:opened").booking_id == view["id"]

    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    booking = cancelled_and_settled(view["id"])
    assert booking.state == "BOOKING_CANCELLED"
    assert "payment disputed" in booking.cancel_reason
    wait_until(lambda: calendly_event(sandbox, booking.calendly_event_uri)["status"] == "canceled", message="slot freed")
    assert refunds_at_stripe(sandbox, intent) == []

    simulate(sandbox, f"/disputes/{dispute['id']}/close", outcome="lost")
    closed = wait_until(lambda: (d := Dispute.get(Dispute.stripe_dispute_id == dispute["id"])).closed_at and d,
                        message="the dispute closed")
    assert (closed.status, closed.amount, closed.booking_id) == ("lost", 5000, view["id"])
    assert frontend.status(view["id"])["disputes"][0]["status"] == "lost"
    assert Alert.get(Alert.key == f"dispute:{dispute['id']}:closed").kind == "dispute_closed"
    idle(frontend)
    assert refunds_at_stripe(sandbox, intent) == []
    shown = suite_cli("bookings", "show", view["id"]).stdout
    assert f"{dispute['id']} of {intent}: $50.00 lost (fraudulent)" in shown
    stats = suite_cli("stats").stdout
    assert "disputes: 1" in stats and "1 lost ($50.00)" in stats


def test_a_won_dispute_is_recorded_with_its_amount_and_the_booking_can_be_refunded_again(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    intent = intent_of(sandbox, view["id"])
    dispute = simulate(sandbox, f"/charges/{charge_of(sandbox, intent)}/dispute", amount=3000)
    simulate(sandbox, f"/disputes/{dispute['id']}/close", outcome="under_review")
    simulate(sandbox, f"/disputes/{dispute['id']}/close", outcome="won")
    idle(frontend)
    row = Dispute.get(Dispute.stripe_dispute_id == dispute["id"])
    assert (row.status, row.amount, row.closed_at is not None) == ("won", 3000, True)
    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    assert [r["amount"] for r in refunds_at_stripe(sandbox, intent)] == [5000]


def test_a_dispute_opened_while_its_webhook_is_late_holds_back_the_refund_stripe_refuses(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    intent = intent_of(sandbox, view["id"])
    sandbox.hold_deliveries("stripe", True)
    try:
        dispute = simulate(sandbox, f"/charges/{charge_of(sandbox, intent)}/dispute")
        assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
        done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    finally:
        sandbox.hold_deliveries("stripe", False)
    (row,) = Refund.select().where(Refund.booking == view["id"])
    assert row.status == "withdrawn" and row.stripe_refund_id is None
    assert refunds_at_stripe(sandbox, intent) == []
    assert done["amount_refunded"] == 0
    assert "payment disputed" in Booking.get_by_id(view["id"]).cancel_reason
    wait_until(lambda: Dispute.get_or_none(Dispute.stripe_dispute_id == dispute["id"]), message="the dispute recorded")


# --- other payment methods and new enum values --------------------------------------------------

def test_a_booking_paid_and_refunded_with_py_and_pyr_ids_completes(frontend, sandbox, stripe_switches):
    stripe_switches.non_card_ids = True
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    assert charge_of(sandbox, intent_of(sandbox, view["id"])).startswith("py_")
    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    (row,) = Refund.select().where(Refund.booking == view["id"])
    assert row.stripe_refund_id.startswith("pyr_")
    idle(frontend)
    assert not ProviderEvent.select().where(ProviderEvent.outcome.in_(("invalid", "unmatched"))).exists()
    assert_money(sandbox, frontend.status(done["id"]), kept=0)


def test_a_refund_status_stripe_adds_later_is_stored_and_waits_until_a_known_one_comes(frontend, sandbox, stripe_switches):
    stripe_switches.refund_status = "awaiting_review"
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    frontend.wait_for_state(view["id"], "REFUND_PENDING")
    idle(frontend)
    (row,) = Refund.select().where(Refund.booking == view["id"])
    assert row.status == "awaiting_review"
    assert Booking.get_by_id(view["id"]).state == "REFUND_PENDING"
    assert not ProviderEvent.select().where(ProviderEvent.outcome == "invalid").exists()
    simulate(sandbox, f"/refunds/{row.stripe_refund_id}/settle", outcome="succeeded")
    frontend.wait_for_state(view["id"], "REFUND_COMPLETED")


# --- a refund made outside bookingflow while ours was on its way ----------------------------------

@pytest.mark.parametrize("outside, ours", [(2000, 3000), (5000, 0)])
def test_a_dashboard_refund_whose_webhook_is_late_leaves_our_refund_to_ask_for_exactly_the_rest(frontend, sandbox,
                                                                                                 outside, ours):
    """Stripe refuses a refund larger than what is left (amount_too_large, or charge_already_refunded):
    the refunds made outside bookingflow are read from Stripe, and ours asks for the rest, or for nothing."""
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    intent = intent_of(sandbox, view["id"])
    sandbox.hold_deliveries("stripe", True)
    try:
        dashboard_refund(sandbox, intent, outside)
        assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
        booking = cancelled_and_settled(view["id"])
    finally:
        sandbox.hold_deliveries("stripe", False)
    assert booking.state == "REFUND_COMPLETED"
    if not ours:
        assert "refunded outside bookingflow in full" in booking.cancel_reason
    assert sorted(r["amount"] for r in refunds_at_stripe(sandbox, intent)) == sorted(a for a in (outside, ours) if a)
    idle(frontend)
    assert_money(sandbox, frontend.status(view["id"]), kept=5000 - outside - ours)
    (row,) = Refund.select().where(Refund.booking == view["id"], Refund.purpose == "cancellation")
    assert (row.amount if row.status != "withdrawn" else 0) == ours


def test_an_outside_refund_that_fails_after_ours_was_reduced_for_it_is_alerted(frontend, sandbox, stripe_switches):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    intent = intent_of(sandbox, view["id"])
    stripe_switches.refund_status = "pending"
    sandbox.hold_deliveries("stripe", True)
    try:
        outside = dashboard_refund(sandbox, intent, 2000)
        assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
        wait_until(lambda: Refund.select().where(Refund.booking == view["id"], Refund.purpose == "cancellation",
                                                 Refund.stripe_refund_id.is_null(False)).exists(),
                   message="our refund made, reduced")
    finally:
        sandbox.hold_deliveries("stripe", False)
    (ours,) = Refund.select().where(Refund.booking == view["id"], Refund.purpose == "cancellation")
    assert ours.amount == 3000
    idle(frontend)
    response = requests.post(f"{sandbox.base}/stripe/refunds/{outside['id']}/settle", json={"outcome": "failed"}, timeout=10)
    assert response.status_code == 200, response.text
    alert = wait_until(lambda: Alert.get_or_none(Alert.key == f"outside_refund_failed:{outside['id']}"),
                       message="the failed outside refund alerted")
    assert alert.booking_id == view["id"] and "check what the client is owed" in alert.text
