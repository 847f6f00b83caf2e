"""The paths a client takes off the happy path (seeds/001: payment failure and retry, cancellation
before and after payment, the payment hold, refunds, the races), one test each, through our HTTP API,
the sandbox's customer actions, signed deliveries, the workers, and the scheduler's sweeps called with
the clock moved forward."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from bookingflow import settings as settings_module
from support.suite import CALENDLY_KEY, STRIPE_WEBHOOK_SECRET
from support.waiting import wait_until
from support.flows import Client, assert_money, calendly_event, confirmed_booking, history_states, hours_from_now, sessions_of
from models.db import utcnow
from models.tables import Alert, Booking, ProviderEvent, Refund
from support.providers import calendly_signature, encode, stripe_signature





@pytest.fixture
def pending_refunds(sandbox):
    """Stripe leaves new refunds pending; they settle through the sandbox's refund action."""
    sandbox.config.refund_status = "pending"
    yield
    sandbox.config.refund_status = "succeeded"


# --- helpers ------------------------------------------------------------------------------------

def sweeps():
    """The scheduler's sweeps (imported late: importing the jobs needs the suite's settings)."""
    from scheduler import sweeps as module

    return module


def act(frontend: Client, booking_id: str, action: str, body: dict | None = None) -> requests.Response:
    return frontend.http.post(f"{frontend.base}/v1/bookings/{booking_id}/{action}", json=body if body is not None else {})


def session_id_of(checkout_url: str) -> str:
    return checkout_url.rsplit("/", 1)[1]


def expire_at_stripe(sandbox, session_id: str) -> None:
    """Stripe expires the session (here through its own API, as its clock would)."""
    response = requests.post(f"{sandbox.base}/stripe/v1/checkout/sessions/{session_id}/expire", timeout=10,
                             headers={"Authorization": f"Bearer {sandbox.config.stripe_secret_key}"})
    assert response.status_code == 200, response.text


def settle_refund_at_stripe(sandbox, refund_id: str, outcome: str) -> None:
    response = requests.post(f"{sandbox.base}/stripe/refunds/{refund_id}/settle", json={"outcome": outcome}, timeout=10)
    assert response.status_code == 200, response.text


def cancel_in_calendly(sandbox, invitee_uri: str, canceler_type: str) -> None:
    response = requests.post(f"{sandbox.base}/calendly/_sandbox/cancel", timeout=10,
                             json={"invitee_uri": invitee_uri, "canceler_type": canceler_type})
    assert response.status_code == 200, response.text


def issued_refund(booking_id: str) -> Refund:
    (refund,) = wait_until(lambda: list(Refund.select().where(Refund.booking == booking_id,
                                                              Refund.stripe_refund_id.is_null(False))),
                           message="the refund asked of Stripe")
    return refund


def all_events_processed() -> bool:
    return ProviderEvent.select().where(ProviderEvent.processed_at.is_null()).count() == 0


def quiesce(sandbox, broker) -> None:
    """Wait until nothing moves any more: no delivery left to send, no message left for a worker,
    every stored delivery processed."""

    def quiet():
        idle = sandbox.wait_deliveries_idle()
        broker.join("default", timeout=20_000)
        return idle and all_events_processed() and sandbox.wait_deliveries_idle()

    wait_until(quiet, timeout=40, message="the providers and the workers to go quiet")


def resend(live_server: str, delivery: dict) -> None:
    """Send a delivery the sandbox recorded ourselves, freshly signed, and wait until it is processed."""
    body = encode(delivery["payload"])
    if delivery["provider"] == "stripe":
        signature = {"Stripe-Signature": stripe_signature(body, STRIPE_WEBHOOK_SECRET)}
    else:
        signature = {"Calendly-Webhook-Signature": calendly_signature(body, CALENDLY_KEY)}
    response = requests.post(f"{live_server}/webhooks/{delivery['provider']}", data=body, timeout=10,
                             headers={"Content-Type": "application/json", **signature})
    assert response.status_code == 200, response.text
    wait_until(all_events_processed, message=f"{delivery['type']} processed")


def checkout_keys(sandbox, booking_id: str) -> set[str]:
    return {r["idempotency_key"] for r in sandbox.api_requests("stripe") if r["path"] == "/v1/checkout/sessions"
            and r["params"].get("client_reference_id") == booking_id and r["status"] == 200}


# --- payment failure and retry ------------------------------------------------------------------

def test_an_async_payment_that_fails_can_be_retried_with_a_new_checkout_session_and_confirms(frontend, sandbox):
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    booking_id = view["id"]
    frontend.pay(view["checkout_url"], outcome="delayed")
    frontend.settle(view["checkout_url"], "failed")
    failed = frontend.wait_for_state(booking_id, "PAYMENT_FAILED")
    assert failed["checkout_url"] is None
    assert Booking.get_by_id(booking_id).payment_failure == "the payment failed"

    assert act(frontend, booking_id, "retry-payment").status_code == 202
    again = frontend.wait_for_state(booking_id, "PAYMENT_PROCESSING")
    assert again["checkout_url"] and session_id_of(view["checkout_url"]) not in again["checkout_url"]
    frontend.pay(again["checkout_url"])
    confirmed = frontend.wait_for_state(booking_id, "BOOKING_CONFIRMED")

    first, second = sessions_of(sandbox, booking_id)
    assert (first["status"], first["payment_status"]) == ("complete", "unpaid")
    assert (second["status"], second["payment_status"]) == ("complete", "paid")
    assert checkout_keys(sandbox, booking_id) == {f"bookingflow-checkout-{booking_id}-1", f"bookingflow-checkout-{booking_id}-2"}
    assert history_states(confirmed)[-6:] == ["PAYMENT_PROCESSING", "PAYMENT_FAILED", "PAYMENT_PENDING",
                                              "PAYMENT_PROCESSING", "PAYMENT_SUCCEEDED", "BOOKING_CONFIRMED"]
    assert_money(sandbox, confirmed, kept=5000)


def test_retrying_a_payment_that_has_not_failed_is_a_conflict_naming_the_current_state(frontend, sandbox):
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    response = act(frontend, view["id"], "retry-payment")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "wrong_state"
    assert response.json()["error"]["state"] == "PAYMENT_PROCESSING"

    frontend.pay(view["checkout_url"])
    confirmed = frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    response = act(frontend, view["id"], "retry-payment")
    assert response.status_code == 409 and response.json()["error"]["state"] == "BOOKING_CONFIRMED"
    assert len(sessions_of(sandbox, view["id"])) == 1
    assert_money(sandbox, confirmed, kept=5000)


def test_cancelling_a_booking_whose_refund_completed_is_a_conflict_and_refunds_nothing_more(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")

    response = act(frontend, view["id"], "cancel", {"reason": "again"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "wrong_state"
    assert response.json()["error"]["state"] == "REFUND_COMPLETED"
    response = act(frontend, view["id"], "retry-payment")
    assert response.status_code == 409 and response.json()["error"]["state"] == "REFUND_COMPLETED"
    assert Refund.select().where(Refund.booking == view["id"]).count() == 1
    assert_money(sandbox, done, kept=0)


# --- cancellation before confirmation -----------------------------------------------------------

def test_cancelling_before_confirmation_abandons_the_booking_expires_its_checkout_and_frees_the_slot(frontend, sandbox, broker):
    view, slot = frontend.book_and_wait_for_checkout("short-call")
    response = act(frontend, view["id"], "cancel", {"reason": "changed my mind"})
    assert response.status_code == 202
    idle = frontend.wait_for_state(view["id"], "IDLE")
    assert idle["checkout_url"] is None
    assert idle["history"][-1]["trigger"] == "cancelBookingProcess"

    (session,) = wait_until(lambda: [s for s in sessions_of(sandbox, view["id"]) if s["status"] == "expired"],
                            message="the open checkout expired at Stripe")
    assert session["payment_status"] == "unpaid"
    wait_until(lambda: calendly_event(sandbox, slot["event_uri"])["status"] == "canceled", message="the slot freed")
    # The abandoned checkout can no longer take money.
    assert frontend.http.post(view["checkout_url"] + "/pay", json={"outcome": "paid"}).status_code == 400
    quiesce(sandbox, broker)
    done = frontend.status(view["id"])
    assert done["state"] == "IDLE"
    assert Booking.get_by_id(view["id"]).cancelled_by == "client"
    assert_money(sandbox, done, kept=0)


def test_a_payment_that_completes_after_the_cancellation_is_refunded_in_full_automatically(frontend, sandbox):
    view, slot = frontend.book_and_wait_for_checkout("short-call")
    sandbox.hold_deliveries("stripe")
    frontend.pay(view["checkout_url"])  # paid at Stripe; we do not know yet
    assert act(frontend, view["id"], "cancel", {"reason": "too slow"}).status_code == 202
    frontend.wait_for_state(view["id"], "IDLE")
    wait_until(lambda: Booking.get_by_id(view["id"]).settled_at, message="the abandonment's closing work")
    sandbox.hold_deliveries("stripe", False)

    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    triggers = [row["trigger"] for row in done["history"]]
    assert "onLatePayment" in triggers and "completeRefund" in triggers
    assert history_states(done)[-3:] == ["IDLE", "REFUND_PENDING", "REFUND_COMPLETED"]
    assert done["amount_refunded"] == 5000
    (refund,) = Refund.select().where(Refund.booking == view["id"])
    assert (refund.purpose, refund.amount, refund.status) == ("abandoned", 5000, "succeeded")
    assert calendly_event(sandbox, slot["event_uri"])["status"] == "canceled"
    assert_money(sandbox, done, kept=0)


def test_an_invitee_cancelling_in_calendly_before_paying_abandons_the_booking_and_closes_its_checkout(frontend, sandbox, broker):
    view, slot = frontend.book_and_wait_for_checkout("short-call")
    cancel_in_calendly(sandbox, slot["invitee_uri"], "invitee")
    idle = frontend.wait_for_state(view["id"], "IDLE")
    assert idle["checkout_url"] is None
    wait_until(lambda: [s["status"] for s in sessions_of(sandbox, view["id"])] == ["expired"],
               message="the open checkout expired at Stripe")
    assert frontend.http.post(view["checkout_url"] + "/pay", json={"outcome": "paid"}).status_code == 400
    quiesce(sandbox, broker)
    done = frontend.status(view["id"])
    assert done["state"] == "IDLE"
    assert Booking.get_by_id(view["id"]).cancelled_by == "invitee"
    assert_money(sandbox, done, kept=0)


def test_a_slot_booked_in_calendly_after_the_flow_was_abandoned_is_released(frontend, sandbox, broker):
    # The client abandons while the Calendly widget is still open, then books in it anyway.
    booking = frontend.create_booking("short-call")
    assert act(frontend, booking["id"], "cancel", {}).status_code == 202
    frontend.wait_for_state(booking["id"], "IDLE")
    slot = frontend.schedule_in_calendly(booking["scheduling_url"])
    # IDLE means nothing held: the late slot goes back to the host's calendar, nothing is charged.
    wait_until(lambda: calendly_event(sandbox, slot["event_uri"])["status"] == "canceled",
               message="the slot booked after the abandonment to be released")
    quiesce(sandbox, broker)
    assert frontend.status(booking["id"])["state"] == "IDLE"
    assert sessions_of(sandbox, booking["id"]) == []


# --- cancellation after confirmation from Calendly ----------------------------------------------

@pytest.mark.parametrize("hours, refunded, final_state", [
    (72, 5000, "REFUND_COMPLETED"), (30, 2500, "REFUND_COMPLETED"), (3, 0, "BOOKING_CANCELLED"),
])
def test_an_invitee_cancelling_in_calendly_after_confirmation_is_refunded_by_the_policy(
        frontend, sandbox, broker, hours, refunded, final_state):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(hours))
    cancel_in_calendly(sandbox, Booking.get_by_id(view["id"]).calendly_invitee_uri, "invitee")
    done = frontend.wait_for_state(view["id"], final_state)
    wait_until(lambda: Booking.get_by_id(view["id"]).settled_at, message="the refund decision")
    quiesce(sandbox, broker)
    done = frontend.status(view["id"])
    assert done["state"] == final_state
    assert "BOOKING_CANCELLED" in history_states(done)
    assert done["amount_refunded"] == refunded
    assert Booking.get_by_id(view["id"]).cancelled_by == "invitee"
    assert_money(sandbox, done, kept=5000 - refunded)


def test_a_host_cancelling_in_calendly_refunds_in_full_even_an_hour_before_the_start(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(1))
    cancel_in_calendly(sandbox, Booking.get_by_id(view["id"]).calendly_invitee_uri, "host")
    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    assert history_states(done)[-3:] == ["BOOKING_CANCELLED", "REFUND_PENDING", "REFUND_COMPLETED"]
    assert done["amount_refunded"] == 5000
    booking = Booking.get_by_id(view["id"])
    assert booking.cancelled_by == "host" and "host" in booking.cancel_reason
    assert_money(sandbox, done, kept=0)


def test_cancelling_while_paying_for_a_dearer_reschedule_refunds_by_the_policy_not_in_full(frontend, sandbox, broker):
    # Confirmed and paid, ten hours before the start: under the policy a cancellation refunds nothing.
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(10))
    response = act(frontend, view["id"], "reschedule", {"session_type": "long-call"})
    assert response.status_code == 202
    new_slot = frontend.schedule_in_calendly(response.json()["scheduling_url"], start_time=hours_from_now(6))
    owing = frontend.wait_for_state(view["id"], "PAYMENT_PROCESSING")
    # The client gives up while the price difference is open: the booking was confirmed, so this is a
    # cancellation of a booking (refund by policy), not an abandoned flow (refund in full).
    assert act(frontend, view["id"], "cancel", {"reason": "never mind"}).status_code == 202
    wait_until(lambda: Booking.get_by_id(view["id"]).settled_at and Booking.get_by_id(view["id"]).state != "PAYMENT_PROCESSING",
               message="the cancellation settled")
    quiesce(sandbox, broker)
    done = frontend.status(view["id"])
    assert_money(sandbox, done, kept=5000)
    assert session_id_of(owing["checkout_url"]) in {s["id"] for s in sessions_of(sandbox, view["id"]) if s["status"] == "expired"}
    assert calendly_event(sandbox, new_slot["event_uri"])["status"] == "canceled"
    assert done["state"] == "BOOKING_CANCELLED"


# --- the payment hold ---------------------------------------------------------------------------

def test_a_failed_payment_holds_the_slot_until_the_hold_runs_out_then_releases_it(frontend, sandbox):
    view, slot = frontend.book_and_wait_for_checkout("short-call")
    expire_at_stripe(sandbox, session_id_of(view["checkout_url"]))
    frontend.wait_for_state(view["id"], "PAYMENT_FAILED")
    hold = dt.timedelta(minutes=settings_module.get().payment_hold_minutes)
    now = utcnow()

    assert sweeps().claim_due_bookings(now) == 0
    assert sweeps().claim_due_bookings(now + hold - dt.timedelta(minutes=1)) == 0
    assert frontend.status(view["id"])["state"] == "PAYMENT_FAILED"
    assert calendly_event(sandbox, slot["event_uri"])["status"] == "active"

    assert sweeps().claim_due_bookings(now + hold + dt.timedelta(minutes=1)) == 1
    idle = frontend.wait_for_state(view["id"], "IDLE")
    assert idle["history"][-1]["trigger"] == "cancelBookingProcess"
    wait_until(lambda: calendly_event(sandbox, slot["event_uri"])["status"] == "canceled", message="the slot released")
    assert Booking.get_by_id(view["id"]).cancelled_by == "system"
    # Too late to pay now: the slot is gone.
    assert act(frontend, view["id"], "retry-payment").status_code == 409
    assert_money(sandbox, idle, kept=0)


# --- refunds that do not succeed at once --------------------------------------------------------

def test_a_refund_that_stays_pending_completes_when_stripe_settles_it(pending_refunds, frontend, sandbox, broker):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    frontend.wait_for_state(view["id"], "REFUND_PENDING")
    refund = issued_refund(view["id"])
    quiesce(sandbox, broker)  # refund.created and charge.refunded (still pending) are in
    pending = frontend.status(view["id"])
    assert pending["state"] == "REFUND_PENDING" and pending["amount_refunded"] == 0

    settle_refund_at_stripe(sandbox, refund.stripe_refund_id, "succeeded")
    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    assert done["amount_refunded"] == 5000
    assert Refund.get_by_id(refund.id).status == "succeeded"
    assert_money(sandbox, done, kept=0)


def test_a_refund_that_fails_is_a_payment_error_from_which_no_new_charge_can_be_started(pending_refunds, frontend, sandbox, broker):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    assert act(frontend, view["id"], "cancel", {}).status_code == 202
    frontend.wait_for_state(view["id"], "REFUND_PENDING")
    refund = issued_refund(view["id"])
    quiesce(sandbox, broker)

    settle_refund_at_stripe(sandbox, refund.stripe_refund_id, "failed")
    error = frontend.wait_for_state(view["id"], "ERROR_PAYMENT")
    assert history_states(error)[-2:] == ["REFUND_PENDING", "ERROR_PAYMENT"]
    assert Refund.get_by_id(refund.id).status == "failed"
    # The client has not been paid back: an operator is told, once (raised right after the transition).
    wait_until(lambda: Alert.select().where(Alert.booking == view["id"], Alert.kind == "refund_failed").count() == 1,
               message="the refund_failed alert")
    # The money was taken: the client cannot be sent to a new checkout, nor walk away from the refund.
    response = act(frontend, view["id"], "retry-payment")
    assert response.status_code == 409 and response.json()["error"]["state"] == "ERROR_PAYMENT"
    assert act(frontend, view["id"], "cancel", {}).status_code == 409
    quiesce(sandbox, broker)
    assert len(sessions_of(sandbox, view["id"])) == 1
    assert_money(sandbox, frontend.status(view["id"]), kept=5000)


# --- deliveries repeated and out of order -------------------------------------------------------

def test_every_delivery_of_a_booking_sent_twice_and_newest_first_leaves_the_same_outcome(
        pending_refunds, frontend, sandbox, live_server, broker):
    for provider in ("calendly", "stripe"):
        sandbox.hold_deliveries(provider)
    seen = len(sandbox.deliveries())

    def newest_first_twice() -> list[str]:
        """Send what the providers hold back, newest first, each twice; their own copies follow later."""
        nonlocal seen
        held = sandbox.deliveries()[seen:]
        seen += len(held)
        for delivery in reversed(held):
            resend(live_server, delivery)
            resend(live_server, delivery)
        return sorted(d["type"] for d in held)

    booking = frontend.create_booking("short-call")
    frontend.schedule_in_calendly(booking["scheduling_url"], start_time=hours_from_now(72))
    assert newest_first_twice() == ["invitee.created"]
    view = frontend.wait_for_state(booking["id"], "PAYMENT_PROCESSING")

    frontend.pay(view["checkout_url"], outcome="delayed")
    frontend.settle(view["checkout_url"], "succeeded")
    assert newest_first_twice() == ["checkout.session.async_payment_succeeded", "checkout.session.completed"]
    frontend.wait_for_state(booking["id"], "BOOKING_CONFIRMED")

    assert act(frontend, booking["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    frontend.wait_for_state(booking["id"], "REFUND_PENDING")
    settle_refund_at_stripe(sandbox, issued_refund(booking["id"]).stripe_refund_id, "succeeded")
    assert newest_first_twice() == ["charge.refunded", "invitee.canceled", "refund.created", "refund.updated"]

    for provider in ("calendly", "stripe"):
        sandbox.hold_deliveries(provider, False)  # and now the providers' own copies, oldest first
    quiesce(sandbox, broker)
    done = frontend.status(booking["id"])
    assert done["state"] == "REFUND_COMPLETED"
    assert [row["trigger"] for row in done["history"]] == [
        "startCalendlyScheduling", "onCalendlyWebhookReceived", "initiatePayment", "onStripeSessionCreated",
        "onPaymentSucceeded", "confirmBooking", "cancelBooking", "initiateRefund", "completeRefund"]
    assert len(sessions_of(sandbox, booking["id"])) == 1
    assert done["amount_refunded"] == 5000
    assert_money(sandbox, done, kept=0)


# --- the sweeps re-drive what the broker lost ---------------------------------------------------

def test_a_delivery_whose_broker_message_was_lost_is_processed_once_the_sweep_requeues_it(
        customer, sandbox, broker, request):
    frontend = customer
    booking = frontend.create_booking("short-call")
    slot = frontend.schedule_in_calendly(booking["scheduling_url"])
    assert sandbox.wait_deliveries_idle()
    (delivery,) = [d for d in sandbox.deliveries("calendly") if d["payload"]["payload"]["uri"] == slot["invitee_uri"]]
    assert delivery["delivered"]  # accepted: stored, and its message handed to the broker
    event = ProviderEvent.get(ProviderEvent.subject == slot["invitee_uri"])
    broker.flush_all()  # ... which loses it before any worker took it
    request.getfixturevalue("worker")

    now = utcnow()
    assert sweeps().requeue_unprocessed_events(now) == 0  # within the grace the normal path may still act
    assert frontend.status(booking["id"])["state"] == "CALENDLY_SCHEDULING"
    assert sweeps().requeue_unprocessed_events(now + dt.timedelta(minutes=3)) == 1
    view = frontend.wait_for_state(booking["id"], "PAYMENT_PROCESSING")
    wait_until(lambda: ProviderEvent.get_by_id(event.id).outcome == "advanced", message="the outcome written")
    frontend.pay(view["checkout_url"])
    confirmed = frontend.wait_for_state(booking["id"], "BOOKING_CONFIRMED")
    assert_money(sandbox, confirmed, kept=5000)


def test_a_client_cancellation_whose_broker_message_was_lost_is_carried_out_once_the_sweep_requeues_it(
        customer, sandbox, broker, request):
    frontend = customer
    booking = frontend.create_booking("short-call")
    assert act(frontend, booking["id"], "cancel", {"reason": "changed my mind"}).status_code == 202
    broker.flush_all()  # the broker loses the request's message before any worker took it
    request.getfixturevalue("worker")

    now = utcnow()
    assert sweeps().requeue_unprocessed_events(now) == 0
    assert frontend.status(booking["id"])["state"] == "CALENDLY_SCHEDULING"
    assert sweeps().requeue_unprocessed_events(now + dt.timedelta(minutes=3)) == 1
    idle = frontend.wait_for_state(booking["id"], "IDLE")
    assert idle["history"][-1]["trigger"] == "cancelBookingProcess"
    assert Booking.get_by_id(booking["id"]).cancel_reason == "changed my mind"
    assert sessions_of(sandbox, booking["id"]) == []


def test_a_booking_left_half_way_by_a_stripe_outage_is_resumed_by_the_sweep_with_one_checkout_session(
        frontend, sandbox, broker):
    key = sandbox.config.stripe_secret_key
    refused = lambda: [r for r in sandbox.api_requests("stripe") if r["path"] == "/v1/checkout/sessions" and r["status"] == 401]  # noqa: E731
    already_refused = len(refused())
    try:
        sandbox.config.stripe_secret_key = "sk_test_not_ours"  # Stripe refuses every call of ours
        booking = frontend.create_booking("short-call")
        slot = frontend.schedule_in_calendly(booking["scheduling_url"])
        wait_until(lambda: len(refused()) > already_refused, message="the checkout creation refused")
        frontend.wait_for_state(booking["id"], "PAYMENT_PENDING")
    finally:
        sandbox.config.stripe_secret_key = key
    # The delivery's retry finds its invitee taken and is done; nothing else will move the booking.
    event = wait_until(lambda: ProviderEvent.get_or_none(ProviderEvent.subject == slot["invitee_uri"],
                                                         ProviderEvent.processed_at.is_null(False)),
                       message="the delivery's retry")
    assert event.outcome == "duplicate"
    quiesce(sandbox, broker)
    assert frontend.status(booking["id"])["state"] == "PAYMENT_PENDING"
    assert sessions_of(sandbox, booking["id"]) == []

    now = utcnow()
    assert sweeps().claim_due_bookings(now) == 0  # the entry action gets its minute first
    assert sweeps().claim_due_bookings(now + dt.timedelta(minutes=2)) == 1
    view = frontend.wait_for_state(booking["id"], "PAYMENT_PROCESSING")
    quiesce(sandbox, broker)
    assert len(sessions_of(sandbox, booking["id"])) == 1
    assert checkout_keys(sandbox, booking["id"]) == {f"bookingflow-checkout-{booking['id']}-1"}
    frontend.pay(view["checkout_url"])
    confirmed = frontend.wait_for_state(booking["id"], "BOOKING_CONFIRMED")
    assert_money(sandbox, confirmed, kept=5000)
