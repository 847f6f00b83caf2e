"""The business-logic abuse suite: a hostile client who chooses which link to open, what to report and
which buttons to press, and payments on the same Stripe account that bookingflow never asked for.
Every delivery here is genuine and correctly signed; each attack must end with no slot held for less
than its price, no refund beyond the policy, no booking confirmed by a payment bookingflow did not
create, and no other client's booking touched (RELIABILITY.md, "Business-logic abuse")."""

from __future__ import annotations

import copy
import secrets

import pytest
import requests

from support.catalogue import POLICY, make_session_type
from support.suite import STRIPE_WEBHOOK_SECRET
from support.realstack import on_stack
from support.waiting import wait_until
from support.flows import Client, assert_money, calendly_event, confirmed_booking, history_states, hours_from_now, sessions_of
from models.tables import Alert, Booking, Dispute, ProviderEvent, Refund, SessionType
from support.providers import checkout_session, encode, stripe_event, stripe_signature

pytestmark = pytest.mark.abuse


# --- helpers ------------------------------------------------------------------------------------

def act(frontend: Client, booking_id: str, action: str, body: dict | None = None) -> requests.Response:
    return frontend.http.post(f"{frontend.base}/v1/bookings/{booking_id}/{action}", json=body if body is not None else {})


def link_of(frontend: Client, slug: str, booking_id: str) -> str:
    """Another session type's Calendly link, carrying the booking's utm_content: what a client can
    type into the address bar."""
    return f"{frontend.sandbox.base}/calendly/book/{slug}?utm_content={booking_id}"


def processed(event_filter) -> ProviderEvent:
    return wait_until(lambda: ProviderEvent.get_or_none(event_filter & ProviderEvent.processed_at.is_null(False)),
                      message="the delivery processed")


def deliver_stripe(frontend: Client, event_type: str, session: dict) -> str:
    event = stripe_event(event_type, session)
    body = encode(event)
    response = requests.post(f"{frontend.base}/webhooks/stripe", data=body, timeout=10, headers={
        "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, STRIPE_WEBHOOK_SECRET)})
    assert response.status_code == 200, response.text
    return event["id"]


def outcome_of(event_id: str) -> ProviderEvent:
    return processed(ProviderEvent.event_id == event_id)


def refunds_at_stripe(sandbox, booking_id: str) -> list[dict]:
    intents = {s["payment_intent"] for s in sessions_of(sandbox, booking_id) if s.get("payment_intent")}
    return [r for r in sandbox.objects("refund") if r["payment_intent"] in intents]


def idle(frontend: Client) -> None:
    frontend.sandbox.wait_deliveries_idle()
    wait_until(lambda: ProviderEvent.select().where(ProviderEvent.processed_at.is_null()).count() == 0,
               message="every delivery processed")


# --- 1. a dearer slot for a cheaper price -------------------------------------------------------

def test_a_dearer_event_types_slot_booked_with_a_cheap_bookings_link_is_refused_and_released(frontend, sandbox):
    booking = frontend.create_booking("short-call")
    slot = frontend.schedule_in_calendly(link_of(frontend, "long-call", booking["id"]))
    event = processed((ProviderEvent.subject == slot["invitee_uri"]) & (ProviderEvent.type == "invitee.created"))
    assert event.outcome == "wrong_event_type"
    view = frontend.status(booking["id"])
    assert view["state"] == "CALENDLY_SCHEDULING" and view["error"]["class"] == "validation"
    assert "another session type" in view["error"]["message"]
    wait_until(lambda: calendly_event(sandbox, slot["event_uri"])["status"] == "canceled", message="stray slot released")
    assert Alert.get_or_none(Alert.kind == "wrong_event_type", Alert.booking == booking["id"]) is not None
    assert sessions_of(sandbox, booking["id"]) == []


def test_reporting_a_dearer_event_types_slot_is_refused_and_nothing_moves(frontend, sandbox):
    booking = frontend.create_booking("short-call")
    sandbox.hold_deliveries("calendly")
    slot = frontend.schedule_in_calendly(link_of(frontend, "long-call", booking["id"]))
    response = frontend.report_scheduled(booking["id"], slot)
    assert response.status_code == 422 and response.json()["error"]["code"] == "wrong_event_type"
    assert frontend.status(booking["id"])["state"] == "CALENDLY_SCHEDULING"
    assert Booking.get_by_id(booking["id"]).calendly_event_uri is None


def test_a_free_bookings_link_on_a_paid_event_type_confirms_nothing(frontend, sandbox):
    make_session_type(sandbox.base, "free-intro", price=0)
    booking = frontend.create_booking("free-intro")
    slot = frontend.schedule_in_calendly(link_of(frontend, "long-call", booking["id"]))
    assert processed((ProviderEvent.subject == slot["invitee_uri"]) & (ProviderEvent.type == "invitee.created")).outcome == "wrong_event_type"
    assert frontend.status(booking["id"])["state"] == "CALENDLY_SCHEDULING"
    # The right link still works afterwards: the booking was not spoiled by the attempt.
    good = frontend.schedule_in_calendly(booking["scheduling_url"])
    confirmed = frontend.wait_for_state(booking["id"], "BOOKING_CONFIRMED")
    assert confirmed["amount"] == 0 and Booking.get_by_id(booking["id"]).calendly_event_uri == good["event_uri"]


# --- 2. a refund kept with the slot -------------------------------------------------------------

def test_a_downgrade_request_followed_by_a_dear_slot_again_refunds_nothing_and_keeps_the_old_slot(frontend, sandbox):
    view = confirmed_booking(frontend, "long-call", start_time=hours_from_now(100))
    old_event = Booking.get_by_id(view["id"]).calendly_event_uri
    assert act(frontend, view["id"], "reschedule", {"session_type": "short-call"}).status_code == 202
    slot = frontend.schedule_in_calendly(link_of(frontend, "long-call", view["id"]), start_time=hours_from_now(120))
    assert processed((ProviderEvent.subject == slot["invitee_uri"]) & (ProviderEvent.type == "invitee.created")).outcome == "wrong_event_type"
    idle(frontend)
    after = frontend.status(view["id"])
    assert (after["state"], after["session_type"]) == ("BOOKING_CONFIRMED", "long-call")
    assert calendly_event(sandbox, old_event)["status"] == "active"
    assert calendly_event(sandbox, slot["event_uri"])["status"] == "canceled"
    assert refunds_at_stripe(sandbox, view["id"]) == []
    assert_money(sandbox, after, kept=20000)


def test_calendlys_own_reschedule_link_after_a_downgrade_request_keeps_the_type_and_refunds_nothing(frontend, sandbox):
    view = confirmed_booking(frontend, "long-call", start_time=hours_from_now(100))
    invitee = Booking.get_by_id(view["id"]).calendly_invitee_uri
    assert act(frontend, view["id"], "reschedule", {"session_type": "short-call"}).status_code == 202
    moved = requests.post(f"{sandbox.base}/calendly/_sandbox/reschedule", timeout=10,
                          json={"invitee_uri": invitee, "start_time": hours_from_now(130)}).json()
    wait_until(lambda: Booking.get_by_id(view["id"]).calendly_invitee_uri == moved["invitee_uri"]
               and frontend.status(view["id"])["state"] == "BOOKING_CONFIRMED", message="the new slot confirmed")
    idle(frontend)
    after = frontend.status(view["id"])
    assert (after["session_type"], after["amount"]) == ("long-call", 20000)
    assert refunds_at_stripe(sandbox, view["id"]) == []
    assert_money(sandbox, after, kept=20000)


def test_a_reschedule_request_expires_and_a_slot_booked_after_it_is_refused(frontend, sandbox):
    view = confirmed_booking(frontend, "long-call", start_time=hours_from_now(100))
    assert act(frontend, view["id"], "reschedule", {"session_type": "short-call"}).status_code == 202
    from models.db import utcnow
    import datetime as dt

    # The request was made long ago (past RESCHEDULE_REQUEST_MINUTES).
    Booking.update(reschedule_requested_at=utcnow() - dt.timedelta(hours=3)).where(Booking.id == view["id"]).execute()
    slot = frontend.schedule_in_calendly(link_of(frontend, "short-call", view["id"]), start_time=hours_from_now(120))
    assert processed((ProviderEvent.subject == slot["invitee_uri"]) & (ProviderEvent.type == "invitee.created")).outcome == "unrequested_slot"
    wait_until(lambda: calendly_event(sandbox, slot["event_uri"])["status"] == "canceled", message="stray slot released")
    after = frontend.status(view["id"])
    assert (after["state"], after["session_type"]) == ("BOOKING_CONFIRMED", "long-call")
    assert refunds_at_stripe(sandbox, view["id"]) == []


def test_a_second_slot_booked_with_the_link_without_any_request_is_released(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(100))
    slot = frontend.schedule_in_calendly(link_of(frontend, "short-call", view["id"]), start_time=hours_from_now(101))
    assert processed((ProviderEvent.subject == slot["invitee_uri"]) & (ProviderEvent.type == "invitee.created")).outcome == "unrequested_slot"
    wait_until(lambda: calendly_event(sandbox, slot["event_uri"])["status"] == "canceled", message="stray slot released")
    assert frontend.status(view["id"])["state"] == "BOOKING_CONFIRMED"


# --- 3. the refund policy cannot be bypassed ----------------------------------------------------

@pytest.mark.parametrize("hours, refunded", [(10, 0), (30, 7500), (100, 15000)])
def test_a_downgrade_refunds_the_difference_only_as_far_as_the_policy_allows(frontend, sandbox, hours, refunded):
    # long-call 200.00 -> short-call 50.00 under POLICY: full >= 48 h, half >= 24 h, none later.
    view = confirmed_booking(frontend, "long-call", start_time=hours_from_now(hours))
    assert act(frontend, view["id"], "reschedule", {"session_type": "short-call"}).status_code == 202
    frontend.schedule_in_calendly(link_of(frontend, "short-call", view["id"]), start_time=hours_from_now(200))
    done = wait_until(lambda: (lambda v: v if v["state"] == "BOOKING_CONFIRMED" and v["session_type"] == "short-call"
                               else None)(frontend.status(view["id"])), message="confirmed as the cheaper type")
    wait_until(lambda: Booking.get_by_id(view["id"]).amount_refunded == refunded, message="the refund settled")
    assert_money(sandbox, frontend.status(done["id"]), kept=20000 - refunded)


def test_moving_a_slot_out_of_the_no_refund_window_then_cancelling_refunds_nothing(frontend, sandbox):
    view = confirmed_booking(frontend, "long-call", start_time=hours_from_now(10))
    assert act(frontend, view["id"], "reschedule", {}).status_code == 202  # Calendly's own reschedule page
    invitee = Booking.get_by_id(view["id"]).calendly_invitee_uri
    moved = requests.post(f"{sandbox.base}/calendly/_sandbox/reschedule", timeout=10,
                          json={"invitee_uri": invitee, "start_time": hours_from_now(300)}).json()
    wait_until(lambda: Booking.get_by_id(view["id"]).calendly_invitee_uri == moved["invitee_uri"]
               and frontend.status(view["id"])["state"] == "BOOKING_CONFIRMED", message="moved to a later slot")
    idle(frontend)
    assert act(frontend, view["id"], "cancel", {"reason": "changed my mind"}).status_code == 202
    wait_until(lambda: Booking.get_by_id(view["id"]).settled_at, message="the cancellation settled")
    assert refunds_at_stripe(sandbox, view["id"]) == []
    assert_money(sandbox, frontend.status(view["id"]), kept=20000)


def test_the_refund_policy_in_force_when_the_client_paid_is_the_one_applied(frontend, sandbox):
    view = confirmed_booking(frontend, "long-call", start_time=hours_from_now(100))
    # The seller later tightens the policy: no refund at all. The booking paid under POLICY keeps it.
    make_session_type(sandbox.base, "long-call", price=20000, refund_policy={"partial_before_hours": 1000,
                                                                               "partial_percent": 0})
    assert Booking.get_by_id(view["id"]).refund_policy == POLICY
    assert act(frontend, view["id"], "cancel", {}).status_code == 202
    wait_until(lambda: Booking.get_by_id(view["id"]).amount_refunded == 20000, message="refunded in full (>= 48 h)")


# --- 4. payments bookingflow never asked for ----------------------------------------------------

def foreign_session(booking_id: str, amount: int, currency: str = "usd") -> dict:
    """A paid Checkout Session of another integration (a Payment Link with ?client_reference_id=)."""
    return checkout_session(booking_id, amount, currency=currency, session_id=f"cs_live_{secrets.token_hex(16)}")


@pytest.mark.parametrize("amount, currency", [(100, "usd"), (12000, "idr"), (20000, "usd")])
def test_a_payment_on_a_session_bookingflow_did_not_create_confirms_nothing(frontend, sandbox, amount, currency):
    view, _ = frontend.book_and_wait_for_checkout("long-call")
    event_id = deliver_stripe(frontend, "checkout.session.completed", foreign_session(view["id"], amount, currency))
    assert outcome_of(event_id).outcome == "foreign_payment"
    booking = Booking.get_by_id(view["id"])
    assert (booking.state, booking.amount_paid) == ("PAYMENT_PROCESSING", 0)
    assert Alert.get_or_none(Alert.kind == "foreign_payment", Alert.booking == view["id"]) is not None
    # The honest payment still confirms it.
    frontend.pay(view["checkout_url"])
    frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    assert Booking.get_by_id(view["id"]).amount_paid == 20000


def test_a_foreign_payment_on_a_confirmed_booking_is_never_refunded_by_bookingflow(frontend, sandbox):
    view = confirmed_booking(frontend, "long-call")
    event_id = deliver_stripe(frontend, "checkout.session.completed", foreign_session(view["id"], 20000))
    assert outcome_of(event_id).outcome == "foreign_payment"
    assert Refund.select().where(Refund.booking == view["id"]).count() == 0
    assert refunds_at_stripe(sandbox, view["id"]) == []
    assert Booking.get_by_id(view["id"]).amount_paid == 20000


@pytest.mark.parametrize("change", [{"currency": "idr"}, {"amount_subtotal": 100, "amount_total": 100}])
def test_our_own_session_reported_with_another_currency_or_amount_is_not_counted(frontend, sandbox, change):
    view, _ = frontend.book_and_wait_for_checkout("long-call")
    sandbox.hold_deliveries("stripe")
    frontend.pay(view["checkout_url"])
    (paid,) = [s for s in sessions_of(sandbox, view["id"]) if s["payment_status"] == "paid"]
    sandbox.drop_pending_deliveries("stripe")
    event_id = deliver_stripe(frontend, "checkout.session.completed", {**copy.deepcopy(paid), **change})
    assert outcome_of(event_id).outcome == "foreign_payment"
    assert Booking.get_by_id(view["id"]).state == "PAYMENT_PROCESSING"
    assert Booking.get_by_id(view["id"]).amount_paid == 0


def test_a_superseded_attempts_session_paid_while_the_booking_awaits_payment_confirms_it(frontend, sandbox):
    view, _ = frontend.book_and_wait_for_checkout("long-call")
    first = sessions_of(sandbox, view["id"])[0]
    requests.post(f"{sandbox.base}/stripe/v1/checkout/sessions/{first['id']}/expire", timeout=10,
                  headers={"Authorization": f"Bearer {sandbox.config.stripe_secret_key}"})
    frontend.wait_for_state(view["id"], "PAYMENT_FAILED")
    assert act(frontend, view["id"], "retry-payment").status_code == 202
    frontend.wait_for_state(view["id"], "PAYMENT_PROCESSING")
    # Stripe reports the first attempt's session paid after all (a delayed method settling late).
    paid_first = {**first, "status": "complete", "payment_status": "paid", "payment_intent": f"pi_{secrets.token_hex(12)}"}
    event_id = deliver_stripe(frontend, "checkout.session.async_payment_succeeded", paid_first)
    assert outcome_of(event_id).outcome == "advanced"
    assert frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")["amount"] == 20000


# --- 5. other clients' bookings -----------------------------------------------------------------

def test_reporting_another_clients_slot_is_refused_and_cancelling_ones_own_leaves_the_victim_alone(frontend, sandbox):
    victim = confirmed_booking(frontend, "long-call", start_time=hours_from_now(100))
    victim_booking = Booking.get_by_id(victim["id"])
    stolen = {"event_uri": victim_booking.calendly_event_uri, "invitee_uri": victim_booking.calendly_invitee_uri}
    attacker = frontend.create_booking("long-call", email="mallory@example.com", name="Mallory")
    response = frontend.report_scheduled(attacker["id"], stolen)
    assert response.status_code == 422 and response.json()["error"]["code"] == "slot_taken"
    assert act(frontend, attacker["id"], "cancel", {}).status_code == 202
    frontend.wait_for_state(attacker["id"], "IDLE")
    idle(frontend)
    assert calendly_event(sandbox, stolen["event_uri"])["status"] == "active"
    assert frontend.status(victim["id"])["state"] == "BOOKING_CONFIRMED"
    assert refunds_at_stripe(sandbox, victim["id"]) == []


def test_reporting_an_invitee_of_another_booking_still_scheduling_is_refused(frontend, sandbox):
    sandbox.hold_deliveries("calendly")
    victim = frontend.create_booking("long-call")
    slot = frontend.schedule_in_calendly(victim["scheduling_url"])
    attacker = frontend.create_booking("long-call", email="mallory@example.com", name="Mallory")
    response = frontend.report_scheduled(attacker["id"], slot)
    assert response.status_code == 422 and response.json()["error"]["code"] == "not_this_booking"
    assert frontend.report_scheduled(victim["id"], slot).status_code == 202
    frontend.wait_for_state(victim["id"], "CALENDLY_SCHEDULED")
    assert frontend.status(attacker["id"])["state"] == "CALENDLY_SCHEDULING"


def test_two_clients_racing_to_report_one_invitee_leave_it_with_its_own_booking(frontend, sandbox):
    import threading

    sandbox.hold_deliveries("calendly")
    owner = frontend.create_booking("short-call")
    slot = frontend.schedule_in_calendly(owner["scheduling_url"])
    racers = [owner["id"]] + [frontend.create_booking("short-call", email=f"r{i}@example.com")["id"] for i in range(3)]
    statuses: dict[str, int] = {}
    barrier = threading.Barrier(len(racers))

    def report(booking_id):
        barrier.wait()
        statuses[booking_id] = requests.post(f"{frontend.base}/v1/bookings/{booking_id}/scheduled", json=slot,
                                             timeout=10).status_code

    threads = [threading.Thread(target=report, args=(booking_id,)) for booking_id in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses[owner["id"]] == 202 and all(statuses[r] == 422 for r in racers[1:])
    frontend.wait_for_state(owner["id"], "CALENDLY_SCHEDULED")
    assert Booking.select().where(Booking.calendly_invitee_uri == slot["invitee_uri"]).count() == 1


def test_the_uris_of_a_cancelled_event_are_refused(frontend, sandbox):
    sandbox.hold_deliveries("calendly")
    booking = frontend.create_booking("short-call")
    slot = frontend.schedule_in_calendly(booking["scheduling_url"])
    requests.post(f"{sandbox.base}/calendly/_sandbox/cancel", timeout=10,
                  json={"invitee_uri": slot["invitee_uri"], "canceler_type": "invitee"})
    response = frontend.report_scheduled(booking["id"], slot)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invitee_canceled"


# --- a session type in another currency is no reschedule target --------------------------------

def test_a_reschedule_to_a_type_priced_in_another_currency_is_refused(frontend, sandbox):
    make_session_type(sandbox.base, "yen-call", price=5000, currency="jpy")
    view = confirmed_booking(frontend, "long-call", start_time=hours_from_now(100))
    response = act(frontend, view["id"], "reschedule", {"session_type": "yen-call"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "currency_mismatch"
    assert Booking.get_by_id(view["id"]).reschedule_session_type_id is None
    assert SessionType.get(SessionType.slug == "yen-call").currency == "jpy"
    assert history_states(frontend.status(view["id"]))[-1] == "BOOKING_CONFIRMED"


# --- 6. money moved at Stripe by another integration, naming a booking -------------------------

def test_a_dispute_or_refund_of_another_payment_naming_a_booking_in_metadata_moves_nothing(frontend, sandbox):
    victim = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    (intent,) = {s["payment_intent"] for s in sessions_of(sandbox, victim["id"])}
    dispute = {"id": "du_test_forged", "object": "dispute", "amount": 5000, "currency": "usd",
               "charge": "ch_test_someone_elses", "payment_intent": "pi_test_someone_elses", "status": "lost",
               "reason": "fraudulent", "metadata": {"booking_id": victim["id"]}}
    assert outcome_of(deliver_stripe(frontend, "charge.dispute.closed", dispute)).outcome == "unmatched"
    refund = {"id": "pyr_test_forged", "object": "refund", "amount": 5000, "currency": "usd", "status": "succeeded",
              "payment_intent": "pi_test_someone_elses",
              "metadata": {"booking_id": victim["id"], "refund_key": f"cancellation:{victim['id']}:cancel:{intent}"}}
    assert outcome_of(deliver_stripe(frontend, "refund.created", refund)).outcome == "unmatched"

    booking = Booking.get_by_id(victim["id"])
    assert (booking.state, booking.amount_refunded, booking.flagged_at) == ("BOOKING_CONFIRMED", 0, None)
    assert Dispute.get(Dispute.stripe_dispute_id == "du_test_forged").booking_id is None
    assert not Refund.select().where(Refund.booking == victim["id"]).exists()
    assert not Alert.select().where(Alert.booking == victim["id"]).exists()
    assert frontend.status(victim["id"])["disputes"] == []


# --- the same attacks on the Procfile's processes (gunicorn, dramatiq, the scheduler) ------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from support.realstack import running_service

    with running_service(tmp_path_factory.mktemp("abuse"), session_types=[
            {"slug": "short-call", "price": 5000, "refund_policy": POLICY},
            {"slug": "long-call", "price": 20000, "refund_policy": POLICY}]) as running:
        yield running


@pytest.mark.e2e
def test_on_real_processes_a_dearer_slot_for_a_cheap_booking_is_refused_and_released(stack):
    shopper = Client(stack.base, stack.sandbox)

    def attack():
        booking = shopper.create_booking("short-call")
        slot = shopper.schedule_in_calendly(link_of(shopper, "long-call", booking["id"]))
        wait_until(lambda: calendly_event(stack.sandbox, slot["event_uri"])["status"] == "canceled",
                   message="the stray slot released")
        # The slot is released before the job records why: wait for the record too.
        view = wait_until(lambda: (lambda seen: seen if seen["error"] else None)(shopper.status(booking["id"])),
                          message="the refusal shown to the client")
        assert view["state"] == "CALENDLY_SCHEDULING" and view["error"]["class"] == "validation"
        assert sessions_of(stack.sandbox, booking["id"]) == []

    on_stack(stack, attack)


@pytest.mark.e2e
def test_on_real_processes_a_foreign_payment_confirms_nothing_and_is_not_refunded(stack):
    shopper = Client(stack.base, stack.sandbox)

    def attack():
        view, _ = shopper.book_and_wait_for_checkout("long-call")
        body = encode(stripe_event("checkout.session.completed", foreign_session(view["id"], 100)))
        response = requests.post(f"{stack.base}/webhooks/stripe", data=body, timeout=10, headers={
            "Content-Type": "application/json",
            "Stripe-Signature": stripe_signature(body, stack.sandbox.config.stripe_webhook_secret)})
        assert response.status_code == 200
        shown = wait_until(lambda: (lambda out: out if "foreign_payment" in out else None)(
            run_cli_on(stack, "bookings", "show", view["id"]).stdout), message="the foreign payment recorded")
        assert "PAYMENT_PROCESSING" in shown.splitlines()[0]
        assert not [r for r in stack.sandbox.objects("refund")]
        shopper.pay(view["checkout_url"])
        assert shopper.wait_for_state(view["id"], "BOOKING_CONFIRMED")["amount"] == 20000

    on_stack(stack, attack)


@pytest.mark.e2e
def test_on_real_processes_another_clients_slot_cannot_be_reported_then_cancelled(stack):
    shopper = Client(stack.base, stack.sandbox)

    def attack():
        victim, slot = shopper.book_and_wait_for_checkout("long-call")
        shopper.pay(victim["checkout_url"])
        shopper.wait_for_state(victim["id"], "BOOKING_CONFIRMED")
        attacker = shopper.create_booking("long-call", email="mallory@example.com", name="Mallory")
        response = shopper.report_scheduled(attacker["id"], slot)
        assert response.status_code == 422, response.text
        assert shopper.http.post(f"{stack.base}/v1/bookings/{attacker['id']}/cancel", json={}).status_code == 202
        shopper.wait_for_state(attacker["id"], "IDLE")
        assert calendly_event(stack.sandbox, slot["event_uri"])["status"] == "active"
        assert shopper.status(victim["id"])["state"] == "BOOKING_CONFIRMED"
        assert not [r for r in stack.sandbox.objects("refund")]

    on_stack(stack, attack)


def run_cli_on(stack, *args):
    from support.realstack import run_cli

    return run_cli(stack.env, *args)
