"""Feature flags and switches, set through the CLI, seen through HTTP: the global switch for new
bookings, session types switched off, and free sessions that skip the checkout."""

from __future__ import annotations

import pytest
import requests

from support.suite import STRIPE_WEBHOOK_SECRET, SUITE_SETTINGS
from support.flows import history_states, sessions_of
from support.providers import checkout_session, encode, stripe_event, stripe_signature
from support.realstack import base_environment, run_cli


def cli(*args: str):
    return run_cli({**base_environment(), "DATABASE_URL": SUITE_SETTINGS.database_url}, *args)


@pytest.fixture
def bookings_reopened():
    yield
    cli("flags", "set", "bookings_open", "on")


def test_with_bookings_closed_new_bookings_get_503_while_webhooks_and_status_carry_on(
        frontend, live_server, bookings_reopened):
    existing = frontend.create_booking("short-call")
    assert "bookings_open is off" in cli("flags", "set", "bookings_open", "off", "--note", "maintenance").stdout
    closed = requests.post(f"{live_server}/v1/bookings", timeout=10,
                           json={"session_type": "short-call", "email": "a@example.com", "name": "A"})
    assert closed.status_code == 503 and closed.json()["error"]["code"] == "bookings_closed"
    assert frontend.status(existing["id"])["state"] == "CALENDLY_SCHEDULING"
    body = encode(stripe_event("checkout.session.completed", checkout_session(existing["id"], 5000)))
    delivered = requests.post(f"{live_server}/webhooks/stripe", data=body, timeout=10, headers={
        "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, STRIPE_WEBHOOK_SECRET)})
    assert delivered.status_code == 200
    assert "off" in cli("flags", "list").stdout and "maintenance" in cli("flags", "list").stdout
    cli("flags", "set", "bookings_open", "on")
    frontend.create_booking("short-call")


def test_a_session_type_switched_off_is_no_longer_offered_or_bookable(frontend, live_server):
    cli("session-types", "disable", "long-call")
    try:
        offered = {t["slug"] for t in requests.get(f"{live_server}/v1/session-types", timeout=10).json()}
        assert "long-call" not in offered and "short-call" in offered
        refused = requests.post(f"{live_server}/v1/bookings", timeout=10,
                                json={"session_type": "long-call", "email": "a@example.com", "name": "A"})
        assert refused.status_code == 422
    finally:
        cli("session-types", "enable", "long-call")
    assert "long-call" in {t["slug"] for t in requests.get(f"{live_server}/v1/session-types", timeout=10).json()}


def test_a_free_session_is_confirmed_without_a_checkout(frontend, sandbox):
    cli("session-types", "payment", "short-call", "off")
    booking = frontend.create_booking("short-call")
    frontend.schedule_in_calendly(booking["scheduling_url"])
    confirmed = frontend.wait_for_state(booking["id"], "BOOKING_CONFIRMED")
    assert confirmed["amount"] == 0 and confirmed["scheduled_start"]
    assert "PAYMENT_PENDING" not in history_states(confirmed)
    assert sessions_of(sandbox, booking["id"]) == []


def test_flags_refuse_unknown_names_and_values(app):
    env = {**base_environment(), "DATABASE_URL": SUITE_SETTINGS.database_url}
    unknown = run_cli(env, "flags", "set", "no_such_flag", "on", check=False)
    assert unknown.returncode == 2 and "no flag 'no_such_flag'" in unknown.stderr
    assert run_cli(env, "flags", "set", "bookings_open", "maybe", check=False).returncode == 2
