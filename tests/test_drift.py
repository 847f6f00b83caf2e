"""The drift report (`bookingflow reconcile report`, jobs/drift.py, the scheduler's daily run): each
kind of drift made at the sandbox the way a lost webhook or an outside hand makes it, found through
the CLI, repaired when safe, and found no more by a second run."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
import requests
import stripe

from models.states import State
from models.tables import Alert, Booking, Dispute, Payment, ProviderEvent, Refund
from support import suite
from support.flows import confirmed_booking, hours_from_now
from support.realstack import base_environment, run_cli
from support.waiting import wait_until

PAGE = 100  # the providers' largest page: one more object than this makes a second page


def report(*args: str, calendly_token: str | None = None):
    """`bookingflow reconcile report ...` as an operator runs it: a process of its own, on the suite's
    database, broker and sandbox (with another Calendly token if told)."""
    env = {**base_environment(), **suite.service_environment(suite.SANDBOX_BASE, suite.SUITE_SETTINGS.database_url,
                                                               suite.SUITE_BROKER_URL)}
    if calendly_token:
        env["CALENDLY_API_TOKEN"] = calendly_token
    return run_cli(env, "reconcile", "report", *args, check=False)


def drifts_of(*args: str, calendly_token: str | None = None) -> tuple[int, list[dict], list[dict]]:
    result = report("--json", *args, calendly_token=calendly_token)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    answer = json.loads(result.stdout)
    return result.returncode, answer["drifts"], answer["repaired"]


def quiet(sandbox, broker) -> None:
    """Every delivery sent and every message processed: what is left is drift, not work in flight."""
    def settled():
        idle = sandbox.wait_deliveries_idle()
        broker.join("default", timeout=20_000)
        return idle and not ProviderEvent.select().where(ProviderEvent.processed_at.is_null()).exists()

    wait_until(settled, timeout=40, message="deliveries and workers to go quiet")


def without_deliveries(sandbox, provider: str, action):
    """Do `action` at the provider and lose its webhooks: held, then dropped, never sent."""
    sandbox.hold_deliveries(provider)
    try:
        return action()
    finally:
        sandbox.drop_pending_deliveries(provider)
        sandbox.hold_deliveries(provider, False)


def stripe_api():
    return stripe.StripeClient(suite.STRIPE_KEY, base_addresses={"api": suite.SANDBOX_BASE + "/stripe"})


def stripe_list_pages(sandbox, path: str) -> list[dict]:
    return [r for r in sandbox.api_requests("stripe") if r["method"] == "GET" and r["path"] == path]


def noise_sessions(count: int) -> None:
    """Checkout Sessions of nobody's, created after the test's own: theirs are on a later page."""
    api = stripe_api()
    for n in range(count):
        api.v1.checkout.sessions.create(params={
            "mode": "payment", "success_url": "https://elsewhere.example/ok",
            "line_items": [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 100 + n,
                                                          "product_data": {"name": "noise"}}}]})


def calendly_action(sandbox, action: str, **body) -> dict:
    response = requests.post(f"{sandbox.base}/calendly/_sandbox/{action}", json=body, timeout=10)
    assert response.status_code in (200, 201), response.text
    return response.json()


def pay_without_webhook(sandbox, checkout_url: str) -> None:
    def pay():
        response = requests.post(checkout_url + "/pay", json={"outcome": "paid"}, timeout=10)
        assert response.status_code == 200, response.text
    without_deliveries(sandbox, "stripe", pay)


def moved_in_calendly(frontend, sandbox, broker, by: dt.timedelta) -> tuple[dict, Booking]:
    """A confirmed booking whose event then starts `by` later at Calendly, with no webhook; the
    booking as it was before."""
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    booking = Booking.get_by_id(view["id"])
    moved_to = (booking.scheduled_start + by).isoformat().replace("+00:00", "Z")
    calendly_action(sandbox, "move", event_uri=booking.calendly_event_uri, start_time=moved_to)
    quiet(sandbox, broker)
    return view, booking


def kinds(drifts: list[dict], booking_id: str) -> dict[str, dict]:
    return {d["kind"]: d for d in drifts if d["booking_id"] == booking_id}


# --- nothing drifted -----------------------------------------------------------------------------

def test_a_confirmed_booking_that_agrees_with_both_providers_is_no_drift_and_exits_0(frontend, sandbox, broker):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    quiet(sandbox, broker)

    result = report()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 drift(s)" in result.stdout
    code, drifts, _ = drifts_of("--since", "1d")
    assert code == 0 and kinds(drifts, view["id"]) == {}


def test_a_rate_limited_page_is_waited_out_and_a_long_wait_says_when_to_run_again(frontend, sandbox, broker):
    confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    quiet(sandbox, broker)
    try:
        sandbox.limits.throttle("stripe", 1, retry_after=0)  # a short wait: waited inline, the same page again
        assert report().returncode == 0
        sandbox.limits.throttle("calendly", 1, retry_after=120)  # too long to hold the command
        result = report()
        assert result.returncode == 2
        assert "Calendly asks us to slow down: run the report again in 120s" in result.stdout
    finally:
        sandbox.limits.throttle("stripe", 0)
        sandbox.limits.throttle("calendly", 0)


def test_a_since_that_is_neither_a_date_nor_days_is_refused_and_changes_nothing(app):
    result = report("--since", "last tuesday")
    assert result.returncode == 2
    assert "--since" in result.stderr
    assert ProviderEvent.select().count() == 0


# --- Stripe --------------------------------------------------------------------------------------

def test_a_session_paid_at_stripe_whose_webhook_was_lost_is_found_on_a_later_page_and_confirmed_once(
        frontend, sandbox, broker):
    view, _ = frontend.book_and_wait_for_checkout("short-call", start_time=hours_from_now(72))
    pay_without_webhook(sandbox, view["checkout_url"])
    noise_sessions(PAGE + 1)
    quiet(sandbox, broker)
    assert frontend.status(view["id"])["state"] == "PAYMENT_PROCESSING"

    before = len(stripe_list_pages(sandbox, "/v1/checkout/sessions"))
    code, drifts, repaired = drifts_of()
    pages = stripe_list_pages(sandbox, "/v1/checkout/sessions")[before:]
    assert len(pages) >= 2 and "starting_after" in pages[1]["params"]  # the session was on page two
    found = kinds(drifts, view["id"])
    assert code == 1 and repaired == []
    assert found["session_paid"]["repair"] == "replay checkout.session.completed"
    assert found["session_paid"]["ours"].startswith("session open")
    assert frontend.status(view["id"])["state"] == "PAYMENT_PROCESSING"  # a report alone changes nothing

    code, _, repaired = drifts_of("--repair")
    assert [r["kind"] for r in repaired if r["booking_id"] == view["id"]] == ["session_paid"]
    assert "advanced" in repaired[0]["result"]
    confirmed = frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    assert confirmed["amount"] == 5000 and Booking.get_by_id(view["id"]).amount_paid == 5000
    (replay,) = ProviderEvent.select().where(ProviderEvent.event_id.startswith("drift:stripe:checkout.session.completed:"))
    assert replay.outcome == "advanced" and replay.booking_id == view["id"]

    quiet(sandbox, broker)
    again = report("--repair")
    assert again.returncode == 0, again.stdout
    assert "repairs: nothing to do" in again.stdout
    assert Payment.select().where(Payment.booking == view["id"], Payment.status == "paid").count() == 1


def test_a_refund_settled_at_stripe_whose_webhook_was_lost_is_read_again_and_completes_the_booking(
        frontend, sandbox, broker):
    sandbox.config.refund_status = "pending"
    try:
        view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
        response = frontend.http.post(f"{frontend.base}/v1/bookings/{view['id']}/cancel", json={"reason": "plans"})
        assert response.status_code == 202
        frontend.wait_for_state(view["id"], "REFUND_PENDING")
        quiet(sandbox, broker)
    finally:
        sandbox.config.refund_status = "succeeded"
    (refund,) = Refund.select().where(Refund.booking == view["id"])

    def settle():
        response = requests.post(f"{sandbox.base}/stripe/refunds/{refund.stripe_refund_id}/settle",
                                 json={"outcome": "succeeded"}, timeout=10)
        assert response.status_code == 200, response.text
    without_deliveries(sandbox, "stripe", settle)

    code, drifts, _ = drifts_of()
    found = kinds(drifts, view["id"])["refund_status"]
    assert code == 1 and found["repair"] == "ledger.refresh"
    assert found["ours"].startswith("refund pending") and found["theirs"].startswith("refund succeeded")

    result = report("--repair")
    assert result.returncode == 1 and "refund read again: succeeded" in result.stdout
    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    assert done["amount_refunded"] == 5000

    quiet(sandbox, broker)
    assert report("--repair").returncode == 0


def test_a_refund_made_outside_bookingflow_is_replayed_as_a_stored_delivery_once_and_recorded_on_our_ledger(
        frontend, sandbox, broker):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    quiet(sandbox, broker)
    intent = Booking.get_by_id(view["id"]).payment_intent_id
    outside = without_deliveries(sandbox, "stripe", lambda: stripe_api().v1.refunds.create(
        params={"payment_intent": intent, "amount": 1000}))

    code, drifts, _ = drifts_of()
    found = kinds(drifts, view["id"])["outside_refund"]
    assert code == 1 and found["subject"] == outside.id and found["repair"] == "replay refund.created"
    assert found["ours"] == "no refund on our ledger" and "$10.00" in found["theirs"]

    code, _, repaired = drifts_of("--repair")
    (done,) = [r for r in repaired if r["booking_id"] == view["id"]]
    assert done["result"] == f"replayed refund.created as drift:stripe:refund.created:{outside.id}: outside_refund"
    (stored,) = ProviderEvent.select().where(ProviderEvent.event_id == f"drift:stripe:refund.created:{outside.id}")
    assert stored.provider == "stripe" and stored.type == "refund.created" and stored.processed_at is not None
    recorded = Refund.get(Refund.stripe_refund_id == outside.id)
    assert (recorded.booking_id, recorded.purpose, recorded.amount, recorded.currency, recorded.status) == (
        view["id"], "outside", 1000, "usd", "succeeded")
    assert Booking.get_by_id(view["id"]).state == State.BOOKING_CONFIRMED.value  # a part refunded: still on

    # On our ledger now: nothing left to find, and a second repair does nothing.
    code, drifts, repaired = drifts_of("--repair")
    assert code == 0 and kinds(drifts, view["id"]) == {} and repaired == []
    assert ProviderEvent.select().where(ProviderEvent.event_id.startswith("drift:")).count() == 1


def test_an_amount_that_differs_from_stripe_is_for_an_operator_and_never_repaired(frontend, sandbox, broker):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    quiet(sandbox, broker)
    # Our ledger, written wrong (a bug, a hand edit): Stripe charged 5000.
    Payment.update(amount=4000).where(Payment.booking == view["id"]).execute()

    code, drifts, repaired = drifts_of("--repair")
    found = kinds(drifts, view["id"])
    assert code == 1 and repaired == []
    assert found["amount_differs"]["repair"] == "operator"
    assert "$40.00" in found["amount_differs"]["ours"] and "$50.00" in found["amount_differs"]["theirs"]
    assert Payment.get(Payment.booking == view["id"]).amount == 4000
    assert Booking.get_by_id(view["id"]).state == State.BOOKING_CONFIRMED.value


@pytest.mark.abuse
def test_a_session_paid_outside_bookingflow_naming_a_booking_is_never_replayed_as_its_payment(
        frontend, sandbox, broker):
    view, _ = frontend.book_and_wait_for_checkout("short-call", start_time=hours_from_now(72))
    quiet(sandbox, broker)
    stranger = stripe_api().v1.checkout.sessions.create(params={
        "mode": "payment", "success_url": "https://elsewhere.example/ok", "client_reference_id": view["id"],
        "metadata": {"booking_id": view["id"]},
        "line_items": [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 5000,
                                                      "product_data": {"name": "not ours"}}}]})
    pay_without_webhook(sandbox, stranger.url)

    code, drifts, repaired = drifts_of("--repair")
    assert all(d["subject"] != stranger.id for d in drifts)
    assert repaired == []
    assert Booking.get_by_id(view["id"]).state == State.PAYMENT_PROCESSING.value
    assert not ProviderEvent.select().where(ProviderEvent.event_id.startswith("drift:")).exists()


def open_dispute_at_stripe(sandbox, charge_id: str) -> dict:
    """The cardholder disputes the charge (a chargeback, status needs_response)."""
    response = requests.post(f"{sandbox.base}/stripe/charges/{charge_id}/dispute", json={}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def close_dispute_at_stripe(sandbox, dispute_id: str, outcome: str) -> dict:
    response = requests.post(f"{sandbox.base}/stripe/disputes/{dispute_id}/close", json={"outcome": outcome},
                             timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_dispute_at_stripe_missing_from_our_ledger_then_closed_there_is_replayed_through_its_handler_once(
        frontend, sandbox, broker):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    quiet(sandbox, broker)
    intent = Booking.get_by_id(view["id"]).payment_intent_id
    (charge,) = [i["latest_charge"] for i in sandbox.objects("payment_intent") if i["id"] == intent]
    dispute = without_deliveries(sandbox, "stripe", lambda: open_dispute_at_stripe(sandbox, charge))

    # Opened at Stripe, its webhooks lost: not on our ledger.
    code, drifts, _ = drifts_of()
    found = kinds(drifts, view["id"])["dispute"]
    assert code == 1 and found["subject"] == dispute["id"] and found["repair"] == "replay charge.dispute.created"
    assert found["ours"] == "no dispute on our ledger" and found["theirs"] == "dispute needs_response, $50.00"
    assert stripe_list_pages(sandbox, "/v1/disputes")

    code, _, repaired = drifts_of("--repair")
    event_id = f"drift:stripe:charge.dispute.created:{dispute['id']}:needs_response"
    (done,) = [r for r in repaired if r["booking_id"] == view["id"]]
    assert done["result"] == f"replayed charge.dispute.created as {event_id}: dispute_recorded"
    row = Dispute.get(Dispute.stripe_dispute_id == dispute["id"])
    assert (row.booking_id, row.status, row.amount, row.currency, row.closed_at) == (
        view["id"], "needs_response", 5000, "usd", None)
    booking = Booking.get_by_id(view["id"])
    assert booking.flagged_at is not None and dispute["id"] in booking.flag_reason
    assert Alert.get(Alert.key == f"dispute:{dispute['id']}:opened").booking_id == view["id"]
    code, drifts, repaired = drifts_of("--repair")
    assert code == 0 and kinds(drifts, view["id"]) == {} and repaired == []

    # Lost at Stripe, its webhook lost too: another status than ours.
    without_deliveries(sandbox, "stripe", lambda: close_dispute_at_stripe(sandbox, dispute["id"], "lost"))
    code, drifts, repaired = drifts_of("--repair")
    found = kinds(drifts, view["id"])["dispute"]
    assert code == 1 and found["repair"] == "replay charge.dispute.closed"
    assert found["ours"] == "dispute needs_response, $50.00" and found["theirs"] == "dispute lost, $50.00"
    (done,) = [r for r in repaired if r["booking_id"] == view["id"]]
    assert done["result"].endswith(": dispute_recorded")
    row = Dispute.get(Dispute.stripe_dispute_id == dispute["id"])
    assert row.status == "lost" and row.closed_at is not None
    assert Alert.get(Alert.key == f"dispute:{dispute['id']}:closed").kind == "dispute_closed"

    code, drifts, repaired = drifts_of("--repair")
    assert code == 0 and kinds(drifts, view["id"]) == {} and repaired == []
    assert ProviderEvent.select().where(ProviderEvent.event_id.startswith("drift:")).count() == 2


# --- Calendly ------------------------------------------------------------------------------------

def test_an_event_cancelled_in_calendly_whose_webhook_was_lost_is_found_on_a_later_page_and_cancels_the_booking(
        frontend, sandbox, broker):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(96))
    booking = Booking.get_by_id(view["id"])
    # Events of nobody's starting earlier: the booking's is on the second page (start_time ascending).
    without_deliveries(sandbox, "calendly", lambda: [
        calendly_action(sandbox, "schedule", scheduling_url="https://calendly.com/acme/noise",
                        start_time=hours_from_now(2)) for _ in range(PAGE + 1)])
    without_deliveries(sandbox, "calendly", lambda: calendly_action(
        sandbox, "cancel", invitee_uri=booking.calendly_invitee_uri, canceler_type="invitee"))
    quiet(sandbox, broker)

    before = len(sandbox.api_requests("calendly"))
    code, drifts, _ = drifts_of()
    made = sandbox.api_requests("calendly")[before:]
    pages = [r for r in made if r["path"] == "/scheduled_events"]
    assert len(pages) >= 2 and pages[1]["params"].get("page_token")
    found = kinds(drifts, view["id"])["event_cancelled"]
    assert code == 1 and found["repair"] == "replay invitee.canceled"
    assert found["ours"].startswith("BOOKING_CONFIRMED") and found["theirs"].startswith("event canceled")
    event_path = booking.calendly_event_uri.removeprefix("https://api.calendly.com")
    assert not [r for r in made if r["path"] == event_path]  # found in the list, not fetched on its own

    code, _, repaired = drifts_of("--repair")
    (done,) = [r for r in repaired if r["booking_id"] == view["id"]]
    assert "replayed invitee.canceled" in done["result"] and "cancelled" in done["result"]
    frontend.wait_for_state(view["id"], "REFUND_COMPLETED")

    quiet(sandbox, broker)
    code, drifts, repaired = drifts_of("--repair")
    assert kinds(drifts, view["id"]) == {} and repaired == []


def test_a_start_time_moved_in_calendly_is_written_on_the_booking_once(frontend, sandbox, broker):
    view, booking = moved_in_calendly(frontend, sandbox, broker, dt.timedelta(hours=3))

    code, drifts, _ = drifts_of()
    found = kinds(drifts, view["id"])["start_moved"]
    assert code == 1 and found["repair"] == "update slot"

    code, _, repaired = drifts_of("--repair")
    assert [r["kind"] for r in repaired if r["booking_id"] == view["id"]] == ["start_moved"]
    after = Booking.get_by_id(view["id"])
    assert after.scheduled_start == booking.scheduled_start + dt.timedelta(hours=3)
    assert after.scheduled_end == booking.scheduled_end + dt.timedelta(hours=3)
    assert after.state == State.BOOKING_CONFIRMED.value

    assert report("--repair").returncode == 0


def test_an_event_calendly_no_longer_has_is_for_an_operator(frontend, sandbox, broker):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    quiet(sandbox, broker)
    gone = Booking.get_by_id(view["id"]).calendly_event_uri
    sandbox.calendly.delete_event(gone)  # a data-deletion request: 404 for good

    code, drifts, repaired = drifts_of("--repair")
    found = kinds(drifts, view["id"])["event_missing"]
    assert code == 1 and found["repair"] == "operator" and found["subject"] == gone
    assert found["theirs"] == "Calendly answers 404"
    assert repaired == []
    assert Booking.get_by_id(view["id"]).state == State.BOOKING_CONFIRMED.value


def test_a_member_token_lists_its_own_users_events_and_still_finds_the_drift(frontend, sandbox, broker):
    view, booking = moved_in_calendly(frontend, sandbox, broker, dt.timedelta(hours=1))
    member = "calendly_test_" + uuid.uuid4().hex
    sandbox.calendly.grant(member, role="user")  # organization-wide lists are for admins and owners
    try:
        before = len(sandbox.api_requests("calendly"))
        code, drifts, _ = drifts_of(calendly_token=member)
        lists = [r for r in sandbox.api_requests("calendly")[before:] if r["path"] == "/scheduled_events"]
    finally:
        sandbox.calendly.revoke_grants()
    assert code == 1 and kinds(drifts, view["id"])["start_moved"]["repair"] == "update slot"
    assert lists and all(r["status"] == 200 and "user" in r["params"] and "organization" not in r["params"]
                         for r in lists)


# --- the daily run -------------------------------------------------------------------------------

def test_the_scheduler_runs_the_report_once_a_day_from_its_hour_and_alerts_on_drift(frontend, sandbox, broker):
    from scheduler import sweeps

    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    quiet(sandbox, broker)
    Payment.update(amount=4000).where(Payment.booking == view["id"]).execute()
    day = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=30, second=0, microsecond=0)
    hour = suite.SUITE_SETTINGS.drift_report_hour

    assert sweeps.report_drift_daily(day.replace(hour=hour) - dt.timedelta(minutes=31)) == 0  # before its hour
    assert sweeps.report_drift_daily(day.replace(hour=hour)) == 1
    assert sweeps.report_drift_daily(day.replace(hour=hour, minute=59)) == 0  # claimed: once a day
    broker.join("default", timeout=30_000)

    alert = wait_until(lambda: Alert.get_or_none(Alert.key == f"drift:{day.date().isoformat()}"))
    assert alert.kind == "drift"
    assert alert.text.startswith("1 drift(s)") and "amount_differs" in alert.text and view["id"] in alert.text
    assert Payment.get(Payment.booking == view["id"]).amount == 4000  # the daily run repairs nothing


def test_the_daily_report_raises_no_alert_when_nothing_drifted(frontend, sandbox, broker):
    from scheduler import sweeps

    confirmed_booking(frontend, "short-call", start_time=hours_from_now(72))
    quiet(sandbox, broker)
    now = dt.datetime.now(dt.timezone.utc).replace(hour=23)
    assert sweeps.report_drift_daily(now) == 1
    broker.join("default", timeout=30_000)
    assert not Alert.select().where(Alert.kind == "drift").exists()


def test_the_schedulers_daily_job_runs_the_report_apart_from_the_sweeps(app, broker):
    from scheduler import run_daily, run_sweeps

    assert "report_drift_daily" not in run_sweeps()  # the sweeps every minute do not report drift

    def past_the_hour():
        return dt.datetime.now(dt.timezone.utc).hour >= suite.SUITE_SETTINGS.drift_report_hour

    before = past_the_hour()
    ran = run_daily()
    assert ran in ({"report_drift_daily": int(before)}, {"report_drift_daily": int(past_the_hour())})  # the hour may turn
    assert run_daily() == {"report_drift_daily": 0}
