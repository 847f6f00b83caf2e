"""How bookingflow calls Stripe: the API version it names, a new idempotency key once Stripe refused a
request for good (Stripe replays a refusal for its key), expires_at inside Stripe's window on Stripe's
own clock, and Stripe's minimum amounts. Through the worker's actor, the CLI and our HTTP API, against
the sandbox, whose controls make Stripe refuse, or its clock disagree with ours."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from bookingflow import broker as sending
from bookingflow.providers import stripe_client
from jobs import checkout, ledger
from models.db import utcnow
from models.states import State
from models.tables import Alert, Booking, Refund, SessionType
from support.catalogue import make_session_type
from support.cli import catalog_env, import_session_types
from support.flows import assert_money, confirmed_booking, hours_from_now, sessions_of
from support.records import booking_in, checkout as recorded, fresh, paid_at_stripe
from support.waiting import wait_until


@pytest.fixture(autouse=True)
def stripe_controls(sandbox):
    yield sandbox.stripe
    sandbox.stripe.reset_controls()


def stripe_posts(sandbox, path: str, booking_id: str) -> list[tuple[str, int]]:
    """(idempotency key, status) of the booking's POSTs to `path` (the sandbox serves the whole suite)."""
    return [(r["idempotency_key"], r["status"]) for r in sandbox.api_requests("stripe")
            if r["method"] == "POST" and r["path"] == path and booking_id in (r["idempotency_key"] or "")]


def advanced(broker, booking_id: str) -> Booking:
    """The booking after the worker's actor ran its entry actions (with the actor's own retries)."""
    sending.send(sending.ADVANCE_BOOKING, booking_id)
    broker.join("default", timeout=30_000)
    return Booking.get_by_id(booking_id)


def run_due_check(booking_id: str) -> None:
    """The scheduler's sweep at the booking's next check: what carries a failed step on."""
    from scheduler import sweeps

    assert sweeps.claim_due_bookings(Booking.get_by_id(booking_id).next_check_at) >= 1


def act(frontend, booking_id: str, action: str, body: dict) -> int:
    return frontend.http.post(f"{frontend.base}/v1/bookings/{booking_id}/{action}", json=body).status_code


# --- the API version ----------------------------------------------------------------------------

def test_every_request_to_stripe_names_the_one_pinned_api_version(frontend, sandbox):
    before = len(sandbox.api_requests("stripe"))  # the sandbox serves the whole suite
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}) == 202
    frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    made = sandbox.api_requests("stripe")[before:]
    assert {r["path"] for r in made if r["method"] == "POST"} >= {"/v1/checkout/sessions", "/v1/refunds"}
    assert {r["stripe_version"] for r in made} == {stripe_client.API_VERSION}


# --- refunds: a new key after a definitive refusal ---------------------------------------------

@pytest.mark.parametrize("status, code", [(400, "charge_expired_for_refund"), (402, "card_declined")])
def test_a_refund_stripe_refused_for_good_is_asked_again_under_a_new_key_and_completes(
        frontend, sandbox, status, code):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    sandbox.stripe.refuse_next("/v1/refunds", status=status, code=code)
    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}) == 202

    wait_until(lambda: Refund.select().where(Refund.booking == view["id"], Refund.attempt == 1).exists()
               and code in (Booking.get_by_id(view["id"]).last_error or ""), message="the refusal recorded")
    run_due_check(view["id"])

    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    (row,) = Refund.select().where(Refund.booking == view["id"])
    first = f"bookingflow-refund-{row.key}"
    posts = stripe_posts(sandbox, "/v1/refunds", row.booking_id)
    assert posts[0] == (first, status) and posts[-1] == (f"{first}-1", 200)
    assert {key for key, _ in posts} == {first, f"{first}-1"}
    assert (row.attempt, row.status, row.amount) == (1, "succeeded", 5000)
    assert [r["id"] for r in sandbox.objects("refund") if r["metadata"].get("refund_key") == row.key] == [
        row.stripe_refund_id]
    assert_money(sandbox, done, kept=0)


def test_a_refund_made_at_stripe_under_an_earlier_key_is_taken_and_never_made_twice(app, sandbox):
    """The row's attempt moved on, yet an earlier request did refund (its answer lost): before asking
    under the new key, bookingflow finds that refund by its metadata and records it."""
    booking = booking_in(make_session_type(sandbox.base, "stripe-calls-hour", price=12000), State.PAYMENT_PENDING,
                         payment_attempt=1, checkout_expires_at=checkout.attempt_expiry(utcnow()))
    created = checkout.create_session(booking)
    ledger.record_session(booking, created)
    Booking.update(checkout_session_id=created.id, checkout_url=created.url).where(Booking.id == booking.id).execute()
    session = paid_at_stripe(sandbox, booking)
    assert ledger.mark_paid(ledger.payment_of_session(session["id"]), session)
    (row,) = ledger.plan_refund(fresh(booking), "cancellation", 6000, "cancel", "half back")
    Refund.update(attempt=1).where(Refund.id == row.id).execute()
    earlier = requests.post(f"{sandbox.base}/stripe/v1/refunds", timeout=10, data={
        "payment_intent": row.payment_intent_id, "amount": "6000", "metadata[refund_key]": row.key},
        headers={"Authorization": f"Bearer {sandbox.config.stripe_secret_key}",
                 "Idempotency-Key": f"bookingflow-refund-{row.key}"}).json()

    issued = ledger.issue(row)

    assert (issued.stripe_refund_id, issued.status) == (earlier["id"], "succeeded")
    assert [r["id"] for r in sandbox.objects("refund") if r["payment_intent"] == row.payment_intent_id] == [
        earlier["id"]]
    assert stripe_posts(sandbox, "/v1/refunds", row.booking_id) == [(f"bookingflow-refund-{row.key}", 200)]


# --- checkout sessions --------------------------------------------------------------------------

def test_a_checkout_stripe_refused_for_good_is_created_under_the_next_attempts_key(frontend, sandbox):
    sandbox.stripe.refuse_next("/v1/checkout/sessions", status=400, code="parameter_invalid_empty")
    created = frontend.create_booking("short-call")
    booking_id = created["id"]
    slot = frontend.schedule_in_calendly(created["scheduling_url"])
    assert frontend.report_scheduled(booking_id, slot).status_code == 202
    wait_until(lambda: Booking.get_by_id(booking_id).payment_attempt == 2, message="the refusal recorded")
    run_due_check(booking_id)
    view = frontend.wait_for_state(booking_id, "PAYMENT_PROCESSING")

    booking = Booking.get_by_id(view["id"])
    assert booking.payment_attempt == 2
    assert stripe_posts(sandbox, "/v1/checkout/sessions", view["id"])[:1] == [(f"bookingflow-checkout-{view['id']}-1", 400)]
    assert stripe_posts(sandbox, "/v1/checkout/sessions", view["id"])[-1] == (f"bookingflow-checkout-{view['id']}-2", 200)
    assert [s["id"] for s in sessions_of(sandbox, view["id"])] == [booking.checkout_session_id]
    frontend.pay(view["checkout_url"])
    frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")


def test_expires_at_keeps_its_margin_when_stripes_clock_runs_ahead_of_ours(frontend, sandbox):
    sandbox.stripe.set_clock_offset(4 * 60)
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    (session,) = sessions_of(sandbox, view["id"])
    assert session["expires_at"] - sandbox.stripe.now() >= 30 * 60


def test_a_create_sent_late_starts_a_new_attempt_instead_of_an_expiry_stripe_would_refuse(
        app, sandbox, broker, worker):
    """The attempt began minutes ago (a retried job, a slow queue): its expires_at, still 33 minutes
    ahead on our clock, is not sent to a Stripe whose clock runs 4.5 minutes ahead."""
    sandbox.stripe.set_clock_offset(270)
    booking = booking_in(SessionType.get(SessionType.slug == "coaching-hour") if SessionType.get_or_none(
        SessionType.slug == "coaching-hour") else make_session_type(sandbox.base, "coaching-hour", price=12000),
        State.PAYMENT_PENDING, payment_attempt=1, checkout_expires_at=utcnow() + dt.timedelta(minutes=33))

    after = advanced(broker, booking.id)

    assert (after.state, after.payment_attempt) == (State.PAYMENT_PROCESSING.value, 2)
    (session,) = sessions_of(sandbox, booking.id)
    assert session["expires_at"] - sandbox.stripe.now() >= 30 * 60
    assert stripe_posts(sandbox, "/v1/checkout/sessions", booking.id) == [(f"bookingflow-checkout-{booking.id}-2", 200)]


def test_a_checkout_session_lives_at_least_as_long_as_stripe_asks_and_the_sweep_closes_it_at_ours(app):
    now = utcnow()
    expiry = checkout.attempt_expiry(now)
    assert checkout.STRIPE_MIN_LIFETIME + checkout.CLOCK_MARGIN < expiry - now <= checkout.STRIPE_MAX_LIFETIME
    created = int(now.timestamp())
    ours = checkout.payable_until({"created": created, "expires_at": int(expiry.timestamp())})
    assert ours == dt.datetime.fromtimestamp(created, dt.timezone.utc) + dt.timedelta(minutes=30)


def test_an_expiry_stripe_answered_with_a_saved_error_is_asked_again_and_the_checkout_closes(frontend, sandbox):
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    session_id = Booking.get_by_id(view["id"]).checkout_session_id
    sandbox.stripe.refuse_next(f"/v1/checkout/sessions/{session_id}/expire", status=500, code="api_error")
    assert act(frontend, view["id"], "cancel", {"reason": "changed my mind"}) == 202

    frontend.wait_for_state(view["id"], "IDLE")
    (session,) = sessions_of(sandbox, view["id"])
    from support.waiting import wait_until
    wait_until(lambda: [s for s in sessions_of(sandbox, view["id"]) if s["status"] == "expired"],
               message="the checkout expired at Stripe")
    assert frontend.http.post(view["checkout_url"] + "/pay", json={"outcome": "paid"}).status_code == 400
    assert stripe_posts(sandbox, f"/v1/checkout/sessions/{session['id']}/expire", session['id'])[0][1] == 500


# --- minimum amounts ----------------------------------------------------------------------------

def test_a_checkout_below_stripes_minimum_is_not_sent_and_the_client_reads_why(app, client, sandbox, broker, worker):
    session_type = make_session_type(sandbox.base, "tiny-call", price=5000)
    SessionType.update(price=30).where(SessionType.id == session_type.id).execute()  # e.g. edited in the database
    booking = booking_in(SessionType.get_by_id(session_type.id), State.PAYMENT_PENDING, payment_attempt=1,
                         checkout_expires_at=checkout.attempt_expiry(utcnow()))

    after = advanced(broker, booking.id)

    assert after.state == State.ERROR_PAYMENT.value
    status = client.get(f"/v1/bookings/{booking.id}")
    assert status.status_code == 200
    assert status.get_json()["error"] == {"class": "validation", "message": checkout.AMOUNT_TOO_SMALL}
    assert stripe_posts(sandbox, "/v1/checkout/sessions", booking.id) == []
    assert Alert.select().where(Alert.kind == "amount_below_minimum", Alert.booking == booking.id).count() == 1
    assert "$0.30 is below Stripe's minimum of $0.50" in after.last_error


@pytest.fixture
def cli_env(tmp_path):
    return catalog_env(tmp_path)


def import_types(env, tmp_path, *items):
    return import_session_types(env, tmp_path, *items)


@pytest.mark.parametrize("price, currency, shown", [(30, "usd", "$0.30 is below Stripe's minimum charge of $0.50"),
                                                     (40, "JPY", "¥40 is below Stripe's minimum charge of ¥50"),
                                                     (17000, "huf", "170.00 HUF is below Stripe's minimum charge of 175.00 HUF")])
def test_importing_a_paid_session_type_below_stripes_minimum_is_refused_and_imports_nothing(
        cli_env, tmp_path, price, currency, shown):
    result = import_types(cli_env, tmp_path, {"slug": "fine", "price": 5000, "currency": "usd"},
                          {"slug": "too-cheap", "price": price, "currency": currency})
    assert result.returncode != 0
    assert "'too-cheap'" in result.stderr and shown in result.stderr and "nothing imported" in result.stderr
    listed = import_types(cli_env, tmp_path, {"slug": "fine", "price": 5000, "currency": "usd"})
    assert "1 created" in listed.stdout  # the first import wrote nothing


def test_free_session_types_and_amounts_at_the_minimum_import(cli_env, tmp_path):
    result = import_types(cli_env, tmp_path, {"slug": "free-chat", "price": 30, "currency": "usd", "collect_payment": False},
                          {"slug": "zero", "price": 0, "currency": "usd"},
                          {"slug": "yen", "price": 50, "currency": "jpy"},
                          {"slug": "pounds", "price": 30, "currency": "gbp"},
                          {"slug": "unlisted", "price": 100, "currency": "isk"})  # 1 ISK: sent as 100
    assert result.returncode == 0, result.stderr
    assert "5 created" in result.stdout
    fraction = import_types(cli_env, tmp_path, {"slug": "unlisted", "price": 150, "currency": "isk"})
    assert fraction.returncode != 0 and "1.50 ISK: Stripe charges ISK in whole units only" in fraction.stderr
    paid_again = import_types(cli_env, tmp_path, {"slug": "free-chat", "price": 30, "currency": "usd"})
    assert paid_again.returncode == 0, "an existing free type stays free when the file does not say"
    charged = import_types(cli_env, tmp_path, {"slug": "free-chat", "price": 30, "currency": "usd", "collect_payment": True})
    assert charged.returncode != 0 and "'free-chat'" in charged.stderr
