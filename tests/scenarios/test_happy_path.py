"""The paid-booking happy path through HTTP, the workers and the provider sandbox."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import requests

from support.suite import CALENDLY_KEY, STRIPE_WEBHOOK_SECRET
from support.waiting import wait_until
from support.flows import history_states, sessions_of, without_utm_content
from models.tables import ProviderEvent, Transition
from support.providers import calendly_signature, encode, stripe_signature

HAPPY_PATH = [
    "CALENDLY_SCHEDULING", "CALENDLY_WEBHOOK_RECEIVED", "PAYMENT_PENDING", "PAYMENT_PROCESSING",
    "PAYMENT_SUCCEEDED", "BOOKING_CONFIRMED",
]




@pytest.mark.parametrize("shape", ["embedded", "reference"])
def test_a_booking_is_confirmed_once_scheduled_and_paid(frontend, sandbox, shape):
    view, slot = frontend.book_and_wait_for_checkout("coaching-hour", shape=shape)
    booking_id = view["id"]
    assert view["checkout_url"].startswith(sandbox.base)
    frontend.pay(view["checkout_url"])
    confirmed = frontend.wait_for_state(booking_id, "BOOKING_CONFIRMED")
    assert confirmed["checkout_url"] is None
    assert confirmed["scheduled_start"] and confirmed["scheduled_end"] > confirmed["scheduled_start"]
    assert set(HAPPY_PATH) <= set(history_states(confirmed))
    assert history_states(confirmed)[-3:] == HAPPY_PATH[-3:]
    if shape == "reference":
        # The 2023 payload does not embed the event: its times came from the Calendly API.
        fetched = [r for r in sandbox.api_requests("calendly") if r["method"] == "GET"]
        assert any(slot["event_uri"].endswith(r["path"]) for r in fetched)


def test_the_checkout_session_carries_the_booking_and_an_idempotency_key(frontend, sandbox):
    view, _ = frontend.book_and_wait_for_checkout("coaching-hour")
    booking_id = view["id"]
    (session,) = sessions_of(sandbox, booking_id)
    assert (session["amount_total"], session["currency"]) == (12000, "usd")
    assert session["metadata"]["booking_id"] == booking_id
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    # Stripe's 30 minutes, a margin for its clock and a slow call, and room for a retried create.
    assert 35 * 60 <= session["expires_at"] - now <= 37 * 60
    creates = [r for r in sandbox.api_requests("stripe")
               if r["path"] == "/v1/checkout/sessions" and r["params"].get("client_reference_id") == booking_id]
    assert {r["idempotency_key"] for r in creates} == {f"bookingflow-checkout-{booking_id}-1"}
    item = creates[0]["params"]["line_items"][0]
    assert item["price_data"]["unit_amount"] == "12000" and item["price_data"]["currency"] == "usd"
    assert creates[0]["params"]["success_url"].startswith("https://frontend.example/")


def test_an_early_webhook_moves_the_booking_on_before_the_client_reports(frontend):
    booking = frontend.create_booking("coaching-hour")
    slot = frontend.schedule_in_calendly(booking["scheduling_url"])
    view = frontend.wait_for_state(booking["id"], "PAYMENT_PROCESSING")
    assert "CALENDLY_SCHEDULED" not in history_states(view)
    # The client's report arrives late: accepted, and changes nothing.
    assert frontend.report_scheduled(booking["id"], slot).status_code == 202
    wait_until(lambda: Transition.select().where(Transition.booking == booking["id"]).count() == 4, message="history")
    assert frontend.status(booking["id"])["state"] == "PAYMENT_PROCESSING"


def test_the_clients_report_then_the_webhook(frontend, sandbox):
    sandbox.hold_deliveries("calendly")
    booking = frontend.create_booking("coaching-hour")
    slot = frontend.schedule_in_calendly(booking["scheduling_url"])
    frontend.report_scheduled(booking["id"], slot)
    frontend.wait_for_state(booking["id"], "CALENDLY_SCHEDULED")
    sandbox.hold_deliveries("calendly", False)
    view = frontend.wait_for_state(booking["id"], "PAYMENT_PROCESSING")
    assert history_states(view)[:3] == ["CALENDLY_SCHEDULING", "CALENDLY_SCHEDULED", "CALENDLY_WEBHOOK_RECEIVED"]


def test_a_slot_scheduled_without_our_utm_content_is_not_taken_on_the_clients_word(frontend):
    # Calendly's invitee does not name the booking: nothing proves the slot was made for it, so the
    # client's report is refused and the delivery stays unmatched.
    booking = frontend.create_booking("coaching-hour")
    slot = frontend.schedule_in_calendly(without_utm_content(booking["scheduling_url"]))
    event = wait_until(
        lambda: ProviderEvent.get_or_none(ProviderEvent.subject == slot["invitee_uri"], ProviderEvent.outcome == "unmatched"),
        message="the delivery to be stored unmatched",
    )
    response = frontend.report_scheduled(booking["id"], slot)
    assert response.status_code == 422 and response.json()["error"]["code"] == "not_this_booking"
    assert frontend.status(booking["id"])["state"] == "CALENDLY_SCHEDULING"
    assert ProviderEvent.get_by_id(event.id).outcome == "unmatched"


def test_a_delayed_payment_confirms_only_when_it_settles(frontend, sandbox):
    view, _ = frontend.book_and_wait_for_checkout("coaching-hour")
    frontend.pay(view["checkout_url"], outcome="delayed")
    wait_until(lambda: ProviderEvent.get_or_none(ProviderEvent.outcome == "awaiting_payment"), message="completed, unpaid")
    assert frontend.status(view["id"])["state"] == "PAYMENT_PROCESSING"
    frontend.settle(view["checkout_url"], "succeeded")
    frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")


def post_concurrently(url: str, body: bytes, headers: dict, times: int) -> list[int]:
    statuses, barrier = [], threading.Barrier(times)

    def send():
        barrier.wait()
        statuses.append(requests.post(url, data=body, headers=headers, timeout=10).status_code)

    threads = [threading.Thread(target=send) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_one_calendly_delivery_sent_ten_times_at_once_makes_one_transition_and_one_checkout_session(
        frontend, sandbox, live_server):
    sandbox.hold_deliveries("calendly")
    booking = frontend.create_booking("coaching-hour")
    frontend.schedule_in_calendly(booking["scheduling_url"])
    (delivery,) = [d for d in sandbox.deliveries("calendly") if d["payload"]["payload"]["tracking"]["utm_content"] == booking["id"]]
    body = encode(delivery["payload"])
    headers = {"Content-Type": "application/json", "Calendly-Webhook-Signature": calendly_signature(body, CALENDLY_KEY)}
    statuses = post_concurrently(f"{live_server}/webhooks/calendly", body, headers, times=10)
    assert statuses == [200] * 10
    frontend.wait_for_state(booking["id"], "PAYMENT_PROCESSING")
    wait_until(lambda: ProviderEvent.get().processed_at is not None, message="the event processed")
    assert ProviderEvent.select().count() == 1, [(e.provider, e.type, e.event_id, e.outcome) for e in ProviderEvent.select()]
    received = Transition.select().where(Transition.booking == booking["id"], Transition.trigger == "onCalendlyWebhookReceived")
    assert received.count() == 1
    assert len(sessions_of(sandbox, booking["id"])) == 1


def test_one_payment_delivery_sent_ten_times_at_once_confirms_once(frontend, sandbox, live_server):
    view, _ = frontend.book_and_wait_for_checkout("coaching-hour")
    sandbox.hold_deliveries("stripe")
    frontend.pay(view["checkout_url"])
    (delivery,) = [d for d in sandbox.deliveries("stripe")
                   if d["type"] == "checkout.session.completed" and d["payload"]["data"]["object"]["client_reference_id"] == view["id"]]
    body = encode(delivery["payload"])
    headers = {"Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, STRIPE_WEBHOOK_SECRET)}
    assert post_concurrently(f"{live_server}/webhooks/stripe", body, headers, times=10) == [200] * 10
    frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    triggers = [t.trigger for t in Transition.select().where(Transition.booking == view["id"])]
    assert triggers.count("onPaymentSucceeded") == 1 and triggers.count("confirmBooking") == 1
