"""The scheduler's sweeps, one step at a time with a frozen clock: webhooks that never come are
replaced by asking the providers, and what is stuck is recovered or flagged."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from support.brokers import join_work
from support.waiting import wait_until
from support.flows import calendly_event, confirmed_booking, history_states, hours_from_now, sessions_of
from jobs.reconcile import MAX_RECOVERY_ATTEMPTS, reconcile
from models.db import utcnow
from models.tables import Alert, Booking, ProviderEvent
from scheduler import run_sweeps
from scheduler.sweeps import claim_due_bookings, prune_old_payloads, requeue_unprocessed_events





def later(**delta) -> dt.datetime:
    return utcnow() + dt.timedelta(**delta)


def sweep_until(booking_id: str, now: dt.datetime, state: str) -> Booking:
    """One sweep step at `now` for the booking: claim it, reconcile it. The claim also queues the
    booking's reconcile for the suite's workers, which races the one here as a second scheduler's
    would (the one that finds the other at work stops): the booking is read once both are done."""
    import jobs

    assert claim_due_bookings(now) >= 1
    reconcile(booking_id, now=now)
    join_work(jobs.broker)
    booking = Booking.get_by_id(booking_id)
    assert booking.state == state, f"{booking.state} != {state}"
    return booking


def test_a_booking_is_not_claimed_before_its_check_is_due(frontend):
    booking = frontend.create_booking("short-call")
    assert claim_due_bookings(later(minutes=5)) == 0
    assert claim_due_bookings(later(hours=2, minutes=1)) == 1
    # Claimed: its next check moved forward, so a second scheduler finds nothing to take.
    assert claim_due_bookings(later(hours=2, minutes=1)) == 0
    assert Booking.get_by_id(booking["id"]).check_attempts == 1


def test_a_booking_never_scheduled_is_abandoned_after_its_timeout(frontend):
    booking = frontend.create_booking("short-call")
    sweep_until(booking["id"], later(hours=2, minutes=1), "IDLE")
    assert frontend.status(booking["id"])["history"][-1]["trigger"] == "cancelBookingProcess"


def test_a_booking_whose_webhook_and_report_never_came_is_found_by_its_utm_content(frontend, sandbox):
    sandbox.hold_deliveries("calendly")
    booking = frontend.create_booking("short-call")
    frontend.schedule_in_calendly(booking["scheduling_url"])
    sweep_until(booking["id"], later(hours=2, minutes=1), "PAYMENT_PROCESSING")
    assert history_states(frontend.status(booking["id"]))[1:3] == ["CALENDLY_SCHEDULED", "PAYMENT_PENDING"]


def test_a_reported_booking_whose_webhook_never_came_is_confirmed_by_asking_calendly(frontend, sandbox):
    sandbox.hold_deliveries("calendly")
    booking = frontend.create_booking("short-call")
    slot = frontend.schedule_in_calendly(booking["scheduling_url"])
    frontend.report_scheduled(booking["id"], slot)
    frontend.wait_for_state(booking["id"], "CALENDLY_SCHEDULED")
    assert claim_due_bookings(later(minutes=5)) == 0
    done = sweep_until(booking["id"], later(minutes=11), "PAYMENT_PROCESSING")
    assert done.scheduled_start is not None and done.calendly_event_uri == slot["event_uri"]


def test_a_reported_invitee_calendly_does_not_know_is_refused_and_nothing_moves(frontend):
    booking = frontend.create_booking("short-call")
    event = "https://api.calendly.com/scheduled_events/NOPE"
    response = frontend.report_scheduled(booking["id"], {"event_uri": event, "invitee_uri": event + "/invitees/NOPE"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "unknown_invitee"
    assert frontend.status(booking["id"])["state"] == "CALENDLY_SCHEDULING"


def test_a_payment_whose_webhook_never_came_is_confirmed_by_asking_stripe(frontend, sandbox):
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    sandbox.hold_deliveries("stripe")
    frontend.pay(view["checkout_url"])
    sweep_until(view["id"], later(minutes=11), "BOOKING_CONFIRMED")


def test_an_unpaid_checkout_is_polled_then_expired_and_the_payment_failed(frontend, sandbox):
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    sandbox.hold_deliveries("stripe")
    sweep_until(view["id"], later(minutes=11), "PAYMENT_PROCESSING")  # still open: looked at again later
    booking = sweep_until(view["id"], later(hours=1), "PAYMENT_FAILED")
    assert booking.payment_failure == "the checkout expired"
    assert [s["status"] for s in sessions_of(sandbox, view["id"])] == ["expired"]


def test_checks_that_work_do_not_count_towards_the_sweeps_backoff(frontend, sandbox):
    # Each claim counts one check against the booking and pushes its next claim back by 30 s × 2^count,
    # in case the check's job is lost. A check that works clears the count: otherwise a checkout polled
    # a few times would, if its next job were lost (a broker restart), wait minutes to be seen again.
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    sandbox.hold_deliveries("stripe")
    now = later(minutes=11)
    for _ in range(2):  # polled twice, still open each time
        booking = sweep_until(view["id"], now, "PAYMENT_PROCESSING")
        assert booking.check_attempts == 0
        now = booking.next_check_at


def test_the_slot_is_released_once_the_payment_hold_runs_out(frontend, sandbox):
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    sandbox.hold_deliveries("stripe")
    sweep_until(view["id"], later(hours=1), "PAYMENT_FAILED")  # failed now: held from now on
    assert claim_due_bookings(later(minutes=50)) == 0  # held for PAYMENT_HOLD_MINUTES (60)
    sweep_until(view["id"], later(minutes=61), "IDLE")
    # Released by the IDLE booking's closing work, which runs just after the state is written.
    event_uri = Booking.get_by_id(view["id"]).calendly_event_uri
    wait_until(lambda: calendly_event(sandbox, event_uri)["status"] == "canceled", message="the slot released")


def test_a_lost_cancellation_is_caught_before_the_session_starts(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(30))
    booking = Booking.get_by_id(view["id"])
    assert booking.next_check_at <= booking.scheduled_start - dt.timedelta(hours=24) + dt.timedelta(minutes=10)
    sandbox.hold_deliveries("calendly")
    requests.post(f"{sandbox.base}/calendly/_sandbox/cancel", timeout=10,
                  json={"invitee_uri": booking.calendly_invitee_uri, "canceler_type": "invitee"})
    assert claim_due_bookings(booking.next_check_at) == 1
    reconcile(view["id"], now=booking.next_check_at)
    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    assert done["amount_refunded"] == 2500


def test_a_booking_stuck_in_an_entry_action_is_recovered_then_flagged_with_one_alert(frontend, sandbox):
    sandbox.hold_deliveries("calendly")
    booking = frontend.create_booking("short-call")
    slot = frontend.schedule_in_calendly(booking["scheduling_url"])
    good_key = sandbox.config.stripe_secret_key
    sandbox.config.stripe_secret_key = "sk_test_rotated_away"  # every Stripe call now fails
    try:
        frontend.report_scheduled(booking["id"], slot)
        frontend.wait_for_state(booking["id"], "CALENDLY_SCHEDULED")
        now = later(minutes=11)
        with pytest.raises(Exception):
            reconcile(booking["id"], now=now)  # the checkout cannot be created
        for attempt in range(1, MAX_RECOVERY_ATTEMPTS + 1):
            now += dt.timedelta(hours=3)
            with pytest.raises(Exception):
                reconcile(booking["id"], now=now)
            assert Booking.get_by_id(booking["id"]).state == "ERROR_RECOVERY"
            assert Booking.get_by_id(booking["id"]).recovery_attempts == attempt
            with pytest.raises(Exception):
                reconcile(booking["id"], now=now)  # back to PAYMENT_PENDING, and failing again
        now += dt.timedelta(hours=3)
        with pytest.raises(Exception):
            reconcile(booking["id"], now=now)
        reconcile(booking["id"], now=now)
        flagged = Booking.get_by_id(booking["id"])
        assert flagged.state == "ERROR_PAYMENT" and flagged.flagged_at is not None and flagged.next_check_at is None
        assert reconcile(booking["id"], now=now + dt.timedelta(days=1)) is None  # an operator's now
        assert [a.kind for a in Alert.select()] == ["flagged_booking"]
    finally:
        sandbox.config.stripe_secret_key = good_key


def test_a_stored_event_whose_message_was_lost_is_processed_again(frontend, sandbox, broker):
    booking = frontend.create_booking("short-call")
    frontend.schedule_in_calendly(booking["scheduling_url"])
    event = wait_until(lambda: ProviderEvent.get_or_none(ProviderEvent.type == "invitee.created"), message="stored")
    frontend.wait_for_state(booking["id"], "PAYMENT_PROCESSING")
    # The booking moves inside the handler, before the event is marked processed: wait for that mark,
    # or it would land after the reset below and the replay would find the event already done.
    wait_until(lambda: ProviderEvent.get_by_id(event.id).processed_at, message="processed the first time")
    # As if the broker lost the message before any worker took it.
    ProviderEvent.update(processed_at=None, outcome=None).where(ProviderEvent.id == event.id).execute()
    assert requeue_unprocessed_events(later(minutes=1)) == 0
    assert requeue_unprocessed_events(later(minutes=3)) == 1
    wait_until(lambda: ProviderEvent.get_by_id(event.id).processed_at, message="processed again")
    assert ProviderEvent.get_by_id(event.id).outcome == "duplicate"


def test_old_payloads_are_pruned_and_the_history_is_kept(frontend):
    view = confirmed_booking(frontend, "short-call")
    wait_until(lambda: ProviderEvent.select().where(ProviderEvent.processed_at.is_null()).count() == 0, message="events")
    history = frontend.status(view["id"])["history"]
    assert prune_old_payloads(later(days=89)) == 0
    pruned = prune_old_payloads(later(days=91))
    assert pruned == ProviderEvent.select().count() >= 2
    assert ProviderEvent.select().where(ProviderEvent.payload.is_null(False)).count() == 0
    assert frontend.status(view["id"])["history"] == history


def test_one_run_of_the_sweeps_reports_what_each_handled(frontend):
    frontend.create_booking("short-call")
    handled = run_sweeps()
    assert set(handled) == {"claim_due_bookings", "requeue_unprocessed_events", "resend_unsent_emails",
                            "resend_unsent_alerts", "prune_old_payloads", "collect_missing_receipts"}
