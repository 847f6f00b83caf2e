"""Calendly as it really behaves, on real processes (gunicorn, the dramatiq CLI and the scheduler as the
Procfile starts them, against PostgreSQL and Redis): a token without the write scope, a webhook
subscription Calendly disabled, and payload values Calendly added later, each played by the sandbox."""

from __future__ import annotations

import pytest
import requests

from support.flows import Client, calendly_event, confirmed_booking, event_of, hours_from_now
from support.realstack import on_stack, run_cli, running_service
from support.waiting import wait_until

pytestmark = pytest.mark.e2e

# Every scope bookingflow reads with, and webhooks; not scheduled_events:write.
READ_ONLY = {"users:read", "organizations:read", "event_types:read", "scheduled_events:read", "webhooks:write"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("calendly-e2e"),
                         extra_env={"CALENDLY_SUBSCRIPTION_CHECK_SECONDS": "10"}) as running:
        yield running


@pytest.fixture
def frontend(stack):
    yield Client(stack.base, stack.sandbox)
    stack.sandbox.calendly.revoke_grants()
    stack.sandbox.calendly.send_novel_values({})


def test_a_token_without_the_write_scope_leaves_the_slot_held_and_the_booking_flagged_naming_the_scope(stack, frontend):
    def scenario():
        view = confirmed_booking(frontend, "strategy-session", start_time=hours_from_now(72))
        stack.sandbox.calendly.grant(stack.env["CALENDLY_API_TOKEN"], scopes=READ_ONLY)
        answer = frontend.http.post(f"{frontend.base}/v1/bookings/{view['id']}/cancel", json={"reason": "plans"})
        assert answer.status_code == 202
        frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
        shown = wait_until(lambda: (out := run_cli(stack.env, "bookings", "show", view["id"]).stdout)
                           and "scheduled_events:write" in out and out, message="the booking flagged, naming the scope")
        assert "flagged" in shown.lower()
        assert calendly_event(stack.sandbox, event_of(stack.sandbox, view["id"]))["status"] == "active"
    on_stack(stack, scenario)


def test_a_subscription_calendly_disabled_is_alerted_by_the_scheduler(stack, frontend):
    def scenario():
        run_cli(stack.env, "calendly", "subscribe")
        (subscription,) = stack.sandbox.calendly.webhook_subscriptions()
        stack.sandbox.calendly.disable_webhook_subscription(subscription["uri"])
        wait_until(lambda: "calendly_subscription" in stack.log() and "disabled" in stack.log(), timeout=60,
                   message="the scheduler's alert of a disabled subscription")
        run_cli(stack.env, "calendly", "subscribe")
        (repaired,) = stack.sandbox.calendly.webhook_subscriptions()
        assert repaired["state"] == "active" and repaired["uri"] != subscription["uri"]
    on_stack(stack, scenario)


def test_a_booking_whose_deliveries_carry_values_calendly_added_later_still_confirms(stack, frontend):
    def scenario():
        stack.sandbox.calendly.send_novel_values({"status": "awaiting_confirmation",
                                                  "scheduled_event.location.type": "holographic"})
        view = confirmed_booking(frontend, "strategy-session", start_time=hours_from_now(72))
        assert view["state"] == "BOOKING_CONFIRMED"
        events = requests.get(f"{stack.base}/v1/bookings/{view['id']}", timeout=10).json()
        assert events["scheduled_start"] is not None
    on_stack(stack, scenario)
