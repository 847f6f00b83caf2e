"""The providers' rate limits and failures: 429s are waited out as the provider asks, a long wait
goes back to the queue, Calendly's shrinking budget is warned about, and reads survive a 5xx."""

from __future__ import annotations

import logging

import pytest

from bookingflow.providers import calendly_client, limits, stripe_client
from support.waiting import wait_until
from support.flows import sessions_of


@pytest.fixture
def limits_of(sandbox):
    yield sandbox.limits
    sandbox.limits.throttle("stripe", 0)
    sandbox.limits.throttle("calendly", 0)
    sandbox.limits.calendly_remaining = sandbox.limits.calendly_limit


def test_a_stripe_429_is_waited_out_and_the_checkout_created_once(frontend, sandbox, limits_of):
    limits_of.throttle("stripe", times=1, retry_after=0)
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    assert len(sessions_of(sandbox, view["id"])) == 1
    throttled = [r for r in sandbox.api_requests("stripe") if r["path"] == "/v1/checkout/sessions"
                 and r["params"].get("client_reference_id") == view["id"]]
    assert len({r["idempotency_key"] for r in throttled}) == 1  # the same request, repeated


def test_a_long_stripe_wait_hands_the_job_back_to_the_queue_with_that_delay(app, limits_of):
    limits_of.throttle("stripe", times=5, retry_after=120)
    with pytest.raises(limits.RateLimited) as raised:
        stripe_client.retrieve_checkout_session("cs_test_whatever")
    assert raised.value.delay == 120_000  # Dramatiq runs the message again in exactly two minutes


def test_a_calendly_429_is_waited_out_as_its_reset_header_says(frontend, sandbox, limits_of):
    booking = frontend.create_booking("short-call")
    sandbox.hold_deliveries("calendly")
    slot = frontend.schedule_in_calendly(booking["scheduling_url"], shape="reference")
    limits_of.throttle("calendly", times=1, retry_after=0)
    event = calendly_client.get_scheduled_event(slot["event_uri"])
    assert event["uri"] == slot["event_uri"]


def test_a_long_calendly_wait_hands_the_job_back(app, limits_of):
    limits_of.throttle("calendly", times=5, retry_after=60)
    with pytest.raises(limits.RateLimited) as raised:
        calendly_client.get_scheduled_event("https://api.calendly.com/scheduled_events/ANY")
    assert raised.value.delay == 60_000


class Collected(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_calendly_s_shrinking_budget_is_warned_about_once_per_window(app, limits_of, monkeypatch):
    limits_of.calendly_remaining = 52  # of 500: the next answers report 51, 50, 49 left
    monkeypatch.setattr(calendly_client, "HEADROOM", limits.Headroom("Calendly"))  # a fresh window
    collected, logger = Collected(), logging.getLogger("bookingflow.providers.limits")
    logger.addHandler(collected)
    try:
        for _ in range(3):
            with pytest.raises(calendly_client.CalendlyNotFound):
                calendly_client.get_scheduled_event("https://api.calendly.com/scheduled_events/NONE")
    finally:
        logger.removeHandler(collected)
    assert collected.messages == ["Calendly rate limit nearly reached: 50 of 500 requests left in this window"]


def test_a_booking_goes_through_while_calendly_throttles_the_worker(frontend, sandbox, limits_of):
    booking = frontend.create_booking("short-call")
    limits_of.throttle("calendly", times=2, retry_after=0)
    slot = frontend.schedule_in_calendly(booking["scheduling_url"], shape="reference")
    frontend.report_scheduled(booking["id"], slot)
    view = frontend.wait_for_state(booking["id"], "PAYMENT_PROCESSING")
    assert view["scheduled_start"] is not None  # fetched from the API despite the 429s
    wait_until(lambda: limits_of._throttled["calendly"][0] == 0, message="the 429s to be used up")
