"""The seed's edge cases (seeds/001, "Edge Cases and Special Conditions"), one test each, through HTTP,
the workers and the provider sandbox."""

from __future__ import annotations

import re

import pytest
import requests

from support.suite import STRIPE_WEBHOOK_SECRET
from support.waiting import wait_until
from support.flows import assert_money, calendly_event, confirmed_booking, history_states, hours_from_now, sessions_of
from models.db import database
from models.tables import Booking, Payment, ProviderEvent, Refund, Transition
from support.providers import encode, luhn_valid, stripe_signature





def test_early_webhook_arrival(frontend):
    booking = frontend.create_booking("short-call")
    slot = frontend.schedule_in_calendly(booking["scheduling_url"])
    view = frontend.wait_for_state(booking["id"], "PAYMENT_PROCESSING")
    assert frontend.report_scheduled(booking["id"], slot).status_code == 202
    assert history_states(view)[:2] == ["CALENDLY_SCHEDULING", "CALENDLY_WEBHOOK_RECEIVED"]


def test_browser_closed_during_payment(frontend, live_server):
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    frontend.pay(view["checkout_url"])
    # A new browser, no cookies, nothing but the booking id: the status is all there.
    fresh = requests.get(f"{live_server}/v1/bookings/{view['id']}", timeout=10)
    wait_until(lambda: requests.get(f"{live_server}/v1/bookings/{view['id']}", timeout=10).json()["state"]
               == "BOOKING_CONFIRMED", message="confirmation")
    assert fresh.status_code == 200 and fresh.json()["id"] == view["id"]


def test_payment_session_expiry(frontend, sandbox):
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    first = view["checkout_url"].rsplit("/", 1)[1]
    # Stripe expires the session (here through its own API, as its clock would).
    stripe_session = requests.post(f"{sandbox.base}/stripe/v1/checkout/sessions/{first}/expire",
                                   headers={"Authorization": f"Bearer {sandbox.config.stripe_secret_key}"}, timeout=10)
    assert stripe_session.status_code == 200
    failed = frontend.wait_for_state(view["id"], "PAYMENT_FAILED")
    assert failed["checkout_url"] is None
    assert Booking.get_by_id(view["id"]).payment_failure == "the checkout expired"
    # The refresh: a new Checkout Session under a new idempotency key.
    assert frontend.http.post(f"{frontend.base}/v1/bookings/{view['id']}/retry-payment").status_code == 202
    again = frontend.wait_for_state(view["id"], "PAYMENT_PROCESSING")
    assert again["checkout_url"] and first not in again["checkout_url"]
    frontend.pay(again["checkout_url"])
    confirmed = frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    assert [s["status"] for s in sessions_of(sandbox, view["id"])] == ["expired", "complete"]
    keys = {r["idempotency_key"] for r in sandbox.api_requests("stripe") if r["path"] == "/v1/checkout/sessions"
            and r["params"].get("client_reference_id") == view["id"]}
    assert keys == {f"bookingflow-checkout-{view['id']}-1", f"bookingflow-checkout-{view['id']}-2"}
    assert_money(sandbox, confirmed, kept=5000)


def test_cancellation_after_payment(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    response = frontend.http.post(f"{frontend.base}/v1/bookings/{view['id']}/cancel", json={"reason": "plans changed"})
    assert response.status_code == 202
    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    assert history_states(done)[-3:] == ["BOOKING_CANCELLED", "REFUND_PENDING", "REFUND_COMPLETED"]
    assert done["amount_refunded"] == 5000
    assert calendly_event(sandbox, Booking.get_by_id(view["id"]).calendly_event_uri)["status"] == "canceled"
    assert_money(sandbox, done, kept=0)


def test_a_cancellation_sent_again_with_its_idempotency_key_after_it_was_done_is_still_accepted(frontend, sandbox):
    # The client's first answer was lost (a dropped connection, a 503 after the store): it sends the
    # same request again, by which time the booking is refunded. Its request was accepted, not refused.
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    cancel = f"{frontend.base}/v1/bookings/{view['id']}/cancel"
    key = {"Idempotency-Key": "cancel-7f3a"}
    assert frontend.http.post(cancel, json={"reason": "plans changed"}, headers=key).status_code == 202
    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    again = frontend.http.post(cancel, json={"reason": "plans changed"}, headers=key)
    assert again.status_code == 202 and again.json()["state"] == "REFUND_COMPLETED"
    # A new request, though, finds nothing left to cancel.
    fresh = frontend.http.post(cancel, json={}, headers={"Idempotency-Key": "cancel-other"})
    assert fresh.status_code == 409 and fresh.json()["error"]["state"] == "REFUND_COMPLETED"
    assert frontend.http.post(cancel, json={}).status_code == 409
    assert frontend.wait_for_state(view["id"], "REFUND_COMPLETED")["history"] == done["history"]
    assert len([r for r in sandbox.objects("refund") if r["metadata"].get("booking_id") == view["id"]]) == 1


def test_a_payment_retry_sent_again_with_its_idempotency_key_opens_no_second_checkout(frontend, sandbox):
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    frontend.pay(view["checkout_url"], "delayed")
    frontend.settle(view["checkout_url"], "failed")
    frontend.wait_for_state(view["id"], "PAYMENT_FAILED")
    retry = f"{frontend.base}/v1/bookings/{view['id']}/retry-payment"
    key = {"Idempotency-Key": "retry-1"}
    assert frontend.http.post(retry, headers=key).status_code == 202
    frontend.wait_for_state(view["id"], "PAYMENT_PROCESSING")
    assert frontend.http.post(retry, headers=key).status_code == 202
    assert frontend.http.post(retry, headers={"Idempotency-Key": "retry-2"}).status_code == 409
    frontend.wait_for_state(view["id"], "PAYMENT_PROCESSING")
    assert len(sessions_of(sandbox, view["id"])) == 2


def test_partial_refund(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(30))
    frontend.http.post(f"{frontend.base}/v1/bookings/{view['id']}/cancel", json={})
    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    assert done["amount_refunded"] == 2500  # 50% between 24 and 48 hours before the start
    (refund,) = Refund.select().where(Refund.booking == view["id"])
    assert "50% refund" in refund.reason
    assert_money(sandbox, done, kept=2500)


def test_a_late_cancellation_refunds_nothing_and_says_why(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(3))
    frontend.http.post(f"{frontend.base}/v1/bookings/{view['id']}/cancel", json={})
    cancelled = frontend.wait_for_state(view["id"], "BOOKING_CANCELLED")
    wait_until(lambda: Booking.get_by_id(view["id"]).settled_at, message="the refund decision")
    assert "no refund under the policy" in Booking.get_by_id(view["id"]).cancel_reason
    assert Refund.select().where(Refund.booking == view["id"]).count() == 0
    assert_money(sandbox, cancelled, kept=5000)


@pytest.mark.parametrize("direction, new_type, kept", [("dearer", "long-call", 20000), ("cheaper", "coaching-hour", 12000)])
def test_rescheduling_with_a_price_difference(frontend, sandbox, direction, new_type, kept):
    start = "short-call" if direction == "dearer" else "long-call"
    view = confirmed_booking(frontend, start, start_time=hours_from_now(100))
    old_event = Booking.get_by_id(view["id"]).calendly_event_uri
    response = frontend.http.post(f"{frontend.base}/v1/bookings/{view['id']}/reschedule", json={"session_type": new_type})
    assert response.status_code == 202
    link = response.json()["scheduling_url"]
    assert new_type in link and f"utm_content={view['id']}" in link
    frontend.schedule_in_calendly(link, start_time=hours_from_now(120))
    if direction == "dearer":
        owing = frontend.wait_for_state(view["id"], "PAYMENT_PROCESSING")
        assert sessions_of(sandbox, view["id"])[-1]["amount_total"] == 15000  # the difference only
        frontend.pay(owing["checkout_url"])
    done = wait_until(lambda: (lambda v: v if v["state"] == "BOOKING_CONFIRMED" and v["session_type"] == new_type
                               else None)(frontend.status(view["id"])), message="confirmed as the new type")
    wait_until(lambda: calendly_event(sandbox, old_event)["status"] == "canceled", message="old slot released")
    assert "BOOKING_RESCHEDULED" in history_states(done)
    assert done["session_type"] == new_type and done["amount"] == kept
    wait_until(lambda: Booking.get_by_id(view["id"]).amount_paid - Booking.get_by_id(view["id"]).amount_refunded == kept,
               message="the money settled")
    assert_money(sandbox, frontend.status(view["id"]), kept=kept)


@pytest.mark.parametrize("order", ["canceled_first", "created_first"])
def test_calendly_initiated_reschedule(frontend, sandbox, order):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(50))
    invitee = Booking.get_by_id(view["id"]).calendly_invitee_uri
    new_start = hours_from_now(80)
    moved = requests.post(f"{sandbox.base}/calendly/_sandbox/reschedule", timeout=10,
                          json={"invitee_uri": invitee, "start_time": new_start, "order": order}).json()
    wait_until(lambda: Booking.get_by_id(view["id"]).calendly_invitee_uri == moved["invitee_uri"]
               and frontend.status(view["id"])["state"] == "BOOKING_CONFIRMED", message="the new slot confirmed")
    sandbox.wait_deliveries_idle()
    wait_until(lambda: ProviderEvent.select().where(ProviderEvent.processed_at.is_null()).count() == 0, message="events")
    done = frontend.status(view["id"])
    assert history_states(done)[-2:] == ["BOOKING_RESCHEDULED", "BOOKING_CONFIRMED"]
    assert done["scheduled_start"] == new_start
    assert Refund.select().where(Refund.booking == view["id"]).count() == 0  # the cancel half never refunds
    assert_money(sandbox, done, kept=5000)


def test_webhook_replay(frontend, sandbox, live_server):
    view = confirmed_booking(frontend, "short-call")
    (delivery,) = [d for d in sandbox.deliveries("stripe") if d["type"] == "checkout.session.completed"
                   and d["payload"]["data"]["object"]["client_reference_id"] == view["id"]]
    body = encode(delivery["payload"])
    versions = Booking.get_by_id(view["id"]).version
    # Replayed later with a fresh, valid signature: recognised as a duplicate, nothing moves.
    fresh = requests.post(f"{live_server}/webhooks/stripe", data=body, timeout=10, headers={
        "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, STRIPE_WEBHOOK_SECRET)})
    assert fresh.status_code == 200 and fresh.json()["duplicate"] is True
    # Replayed by an attacker with the old signature: the timestamp gives it away.
    stale = requests.post(f"{live_server}/webhooks/stripe", data=body, timeout=10, headers={
        "Content-Type": "application/json",
        "Stripe-Signature": stripe_signature(body, STRIPE_WEBHOOK_SECRET, timestamp=delivery["payload"]["created"] - 3600)})
    assert stale.status_code == 400
    assert Booking.get_by_id(view["id"]).version == versions
    assert Transition.select().where(Transition.booking == view["id"], Transition.trigger == "onPaymentSucceeded").count() == 1


def test_no_card_data_stored(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call")
    frontend.http.post(f"{frontend.base}/v1/bookings/{view['id']}/cancel", json={})
    frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    columns = {column.name for table in database.get_tables() for column in database.get_columns(table)}
    assert not {c for c in columns if re.search(r"card|pan|cvc|cvv|exp_", c)}
    for event in ProviderEvent.select():
        for number in re.findall(r"(?<!\d)\d{13,19}(?!\d)", event.payload):
            assert not luhn_valid(number), f"a card-like number in stored event {event.event_id}"
    assert Payment.select().count() >= 1
