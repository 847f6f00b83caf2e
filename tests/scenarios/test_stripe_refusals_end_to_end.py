"""Stripe refuses a request for good and repeats that refusal for its idempotency key: on real
processes (gunicorn, the dramatiq CLI, the scheduler) against PostgreSQL and Redis, the checkout and
the refund are asked again under their next attempt's key, by the scheduler's sweep, and complete."""

from __future__ import annotations

import pytest
import requests

from support.flows import Client, hours_from_now, sessions_of
from support.realstack import reached, running_service

pytestmark = pytest.mark.e2e

# Seconds instead of minutes and hours: the sweep carries a failed step on while the test watches.
FAST_TIMEOUTS = "PAYMENT_PENDING=2,REFUND_PENDING=3"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("refusals"), extra_env={"STATE_TIMEOUTS": FAST_TIMEOUTS}) as running:
        yield running


def refuse_next(stack, path: str, status: int, code: str) -> None:
    response = requests.post(f"{stack.sandbox.base}/stripe/_sandbox/refuse", timeout=10,
                             json={"path": path, "status": status, "code": code})
    assert response.status_code == 200, response.text


def posts(stack, path: str, booking_id: str) -> list[tuple[str, int]]:
    return [(r["idempotency_key"], r["status"]) for r in stack.sandbox.api_requests("stripe")
            if r["method"] == "POST" and r["path"] == path and booking_id in (r["idempotency_key"] or "")]


def test_a_refused_checkout_and_a_refused_refund_complete_under_their_next_keys(stack):
    frontend = Client(stack.base, stack.sandbox)
    refuse_next(stack, "/v1/checkout/sessions", 400, "parameter_invalid_empty")
    booking = frontend.create_booking("strategy-session")
    slot = frontend.schedule_in_calendly(booking["scheduling_url"], start_time=hours_from_now(72))
    assert frontend.report_scheduled(booking["id"], slot).status_code == 202
    view = reached(frontend, booking["id"], "PAYMENT_PROCESSING", stack)
    assert posts(stack, "/v1/checkout/sessions", booking["id"]) == [
        (f"bookingflow-checkout-{booking['id']}-1", 400), (f"bookingflow-checkout-{booking['id']}-2", 200)]
    assert len(sessions_of(stack.sandbox, booking["id"])) == 1

    frontend.pay(view["checkout_url"])
    reached(frontend, booking["id"], "BOOKING_CONFIRMED", stack)
    refuse_next(stack, "/v1/refunds", 402, "card_declined")
    assert frontend.http.post(f"{stack.base}/v1/bookings/{booking['id']}/cancel", json={}).status_code == 202

    done = reached(frontend, booking["id"], "REFUND_COMPLETED", stack)
    assert done["amount_refunded"] == 25000
    keys = [key for key, _ in posts(stack, "/v1/refunds", booking["id"])]
    assert len(set(keys)) == 2 and keys[-1] == f"{keys[0]}-1"
    refunds = [r for r in stack.sandbox.objects("refund") if r["metadata"].get("booking_id") == booking["id"]]
    assert len(refunds) == 1
