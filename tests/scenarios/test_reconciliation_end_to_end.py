"""Webhooks are hints: with every delivery withheld, the broker's Redis flushed mid-flow and two
schedulers running, bookings still end where they should, through the scheduler's sweeps alone."""

from __future__ import annotations

import pytest
import redis


from support.flows import Client, money_at_stripe
from support.realstack import reached, run_cli, running_service

pytestmark = pytest.mark.e2e

# Seconds instead of minutes and hours, so that timeouts run out while the test watches.
FAST_TIMEOUTS = ",".join(f"{state}={seconds}" for state, seconds in {
    "CALENDLY_SCHEDULING": 6, "CALENDLY_SCHEDULED": 2, "CALENDLY_WEBHOOK_RECEIVED": 2, "PAYMENT_PENDING": 2,
    "PAYMENT_PROCESSING": 2, "PAYMENT_SUCCEEDED": 2, "BOOKING_CANCELLED": 2, "REFUND_PENDING": 2, "IDLE": 2,
}.items())


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("reconcile"), concurrency="scheduler=2",
                         extra_env={"STATE_TIMEOUTS": FAST_TIMEOUTS}) as running:
        running.sandbox.hold_deliveries("stripe")
        running.sandbox.hold_deliveries("calendly")
        yield running


def test_without_a_single_webhook_bookings_still_end_where_they_should(stack):
    frontend = Client(stack.base, stack.sandbox)
    paid = frontend.create_booking("strategy-session")
    paid_slot = frontend.schedule_in_calendly(paid["scheduling_url"])
    frontend.report_scheduled(paid["id"], paid_slot)
    unreported = frontend.create_booking("strategy-session", email="bo@example.com")
    frontend.schedule_in_calendly(unreported["scheduling_url"])  # and the client never reports it
    cancelled = frontend.create_booking("strategy-session", email="cy@example.com")
    frontend.report_scheduled(cancelled["id"], frontend.schedule_in_calendly(cancelled["scheduling_url"]))
    abandoned = frontend.create_booking("strategy-session", email="di@example.com")

    # The broker loses everything queued so far.
    redis.Redis.from_url(stack.redis_url).flushdb()

    for booking in (paid, unreported, cancelled):
        view = reached(frontend, booking["id"], "PAYMENT_PROCESSING", stack)
        frontend.pay(view["checkout_url"])  # Stripe's webhook is withheld too
    for booking in (paid, unreported, cancelled):
        reached(frontend, booking["id"], "BOOKING_CONFIRMED", stack)
    assert frontend.http.post(f"{stack.base}/v1/bookings/{cancelled['id']}/cancel", json={}).status_code == 202
    redis.Redis.from_url(stack.redis_url).flushdb()  # and again, while the cancellation is under way

    assert reached(frontend, cancelled["id"], "REFUND_COMPLETED", stack)["amount_refunded"] == 25000
    assert reached(frontend, abandoned["id"], "IDLE", stack)["amount_refunded"] == 0
    for booking, kept in ((paid, 25000), (unreported, 25000), (cancelled, 0), (abandoned, 0)):
        charged, refunded = money_at_stripe(stack.sandbox, booking["id"])
        assert charged - refunded == kept
    assert all(not d["delivered"] for d in stack.sandbox.deliveries())  # truly not one webhook
    # Two schedulers ran all along; each booking still got one transition per step.
    for booking in (paid, unreported, cancelled, abandoned):
        shown = run_cli(stack.env, "bookings", "show", booking["id"]).stdout
        history = [line.split()[4] for line in shown.splitlines() if "->" in line]
        assert len(history) == len(set(history)), shown
