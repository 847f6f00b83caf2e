"""Stripe as it really behaves, on real processes (gunicorn, the dramatiq CLI and the scheduler as the
Procfile starts them, against PostgreSQL and Redis): payments and refunds of other methods (`py_`,
`pyr_`), a chargeback, and a refund made in the Dashboard, each played by the sandbox's Stripe."""

from __future__ import annotations

import pytest
import requests

from support.flows import (
    Client, calendly_event, confirmed_booking, event_of, hours_from_now, money_at_stripe, sessions_of,
)
from support.realstack import run_cli, running_service
from support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("providers-e2e")) as running:
        yield running


@pytest.fixture
def frontend(stack):
    yield Client(stack.base, stack.sandbox)
    stack.sandbox.config.non_card_ids = False


def simulate(stack, path: str, **body) -> dict:
    response = requests.post(f"{stack.sandbox.base}/stripe{path}", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def intent_of(stack, booking_id: str) -> str:
    (intent,) = {s["payment_intent"] for s in sessions_of(stack.sandbox, booking_id) if s.get("payment_intent")}
    return intent


def refunds_at_stripe(stack, intent_id: str) -> list[dict]:
    return [r for r in stack.sandbox.objects("refund") if r["payment_intent"] == intent_id]


def cancel(frontend: Client, booking_id: str) -> None:
    answer = frontend.http.post(f"{frontend.base}/v1/bookings/{booking_id}/cancel", json={"reason": "plans changed"})
    assert answer.status_code == 202, answer.text


def test_a_disputed_booking_paid_by_another_method_is_cancelled_with_its_slot_freed_and_nothing_refunded(stack, frontend):
    stack.sandbox.config.non_card_ids = True
    try:
        view = confirmed_booking(frontend, "strategy-session", start_time=hours_from_now(72))
        intent = intent_of(stack, view["id"])
        (charge,) = [i["latest_charge"] for i in stack.sandbox.objects("payment_intent") if i["id"] == intent]
        assert charge.startswith("py_")
        dispute = simulate(stack, f"/charges/{charge}/dispute", reason="fraudulent")
        shown = wait_until(lambda: (v := frontend.status(view["id"]))["disputes"] and v, message="the dispute shown")
        assert (shown["disputes"][0]["amount"], shown["disputes"][0]["currency"]) == (25000, "usd")

        cancel(frontend, view["id"])
        frontend.wait_for_state(view["id"], "BOOKING_CANCELLED")
        wait_until(lambda: calendly_event(stack.sandbox, event_of(stack.sandbox, view["id"]))["status"] == "canceled",
                   message="the slot freed")
        assert refunds_at_stripe(stack, intent) == []
        assert money_at_stripe(stack.sandbox, view["id"]) == (25000, 0)
        shown = run_cli(stack.env, "bookings", "show", view["id"]).stdout
        assert dispute["id"] in shown and "payment disputed" in shown
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n--- stack log ---\n{stack.log()}") from None


def test_a_cancellation_after_a_dashboard_refund_refunds_exactly_the_rest_with_pyr_ids(stack, frontend):
    stack.sandbox.config.non_card_ids = True
    try:
        view = confirmed_booking(frontend, "strategy-session", start_time=hours_from_now(72))
        intent = intent_of(stack, view["id"])
        simulate(stack, f"/payment_intents/{intent}/dashboard_refund", amount=10000)
        wait_until(lambda: frontend.status(view["id"])["amount_refunded"] == 10000, message="the outside refund counted")

        cancel(frontend, view["id"])
        done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
        refunds = refunds_at_stripe(stack, intent)
        assert sorted(r["amount"] for r in refunds) == [10000, 15000]
        assert all(r["id"].startswith("pyr_") for r in refunds)
        assert done["amount_refunded"] == 25000 and money_at_stripe(stack.sandbox, view["id"]) == (25000, 25000)
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n--- stack log ---\n{stack.log()}") from None
