"""Calendly as it really answers the sweep's reconciliation (jobs/reconcile.reconcile, as the
reconcile_booking actor runs it): a member's token and organization-wide lists, a revoked token, a
confirmed booking's event deleted for good. The Calendly sandbox's tokens carry roles and scopes as
Calendly's do (fixture `calendly_token`); releases are in tests/unit/test_calendly_lasting.py."""

from __future__ import annotations

import datetime as dt

import pytest

from bookingflow import settings as settings_module
from jobs.reconcile import reconcile
from models.states import State
from models.tables import Alert, Booking
from scheduler.sweeps import claim_due_bookings
from support.flows import confirmed_booking, hours_from_now


# --- a confirmed booking's event deleted -------------------------------------------------------

def claim_and_reconcile(booking_id: str) -> Booking:
    """One sweep step when the booking's check is due: claimed (counted), then reconciled."""
    due = Booking.get_by_id(booking_id).next_check_at
    assert claim_due_bookings(due) == 1
    reconcile(booking_id, now=due)  # never raises: nothing for the job to retry
    return Booking.get_by_id(booking_id)


def test_a_confirmed_bookings_deleted_event_is_flagged_after_three_checks_with_one_alert(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(30))
    sandbox.calendly.delete_event(Booking.get_by_id(view["id"]).calendly_event_uri)
    for _ in range(2):
        assert claim_and_reconcile(view["id"]).flagged_at is None
    assert not Alert.select().exists()
    booking = claim_and_reconcile(view["id"])
    assert booking.flagged_at is not None and booking.next_check_at is None
    assert booking.state == State.BOOKING_CONFIRMED.value and "no longer has" in booking.flag_reason
    assert [a.kind for a in Alert.select()] == ["calendly_gone"]


def test_a_check_calendly_refuses_names_the_token_alerts_once_and_flags_nothing(frontend, sandbox, calendly_token):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(30))
    settings_module.configure(settings_module.get().replace(calendly_api_token="calendly_revoked"))
    for _ in range(2):
        assert claim_and_reconcile(view["id"]).flagged_at is None
    (alert,) = Alert.select()
    assert alert.kind == "calendly_refused" and "CALENDLY_API_TOKEN" in alert.text


# --- organization-scoped lists ------------------------------------------------------------------

@pytest.mark.parametrize("grant, scope", [
    (dict(role="user"), "user"),  # a member may list its own events only
    (dict(role="admin"), "organization"),
    (dict(role="owner", scopes={"users:read", "scheduled_events:write"}), "user"),  # its role unreadable
])
def test_a_lost_webhook_is_found_with_the_list_the_tokens_role_allows(frontend, sandbox, calendly_token, grant, scope):
    calendly_token(**grant)
    seen = len(sandbox.api_requests("calendly"))
    sandbox.hold_deliveries("calendly")
    booking = frontend.create_booking("short-call")
    frontend.schedule_in_calendly(booking["scheduling_url"])
    now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2, minutes=1)
    assert claim_due_bookings(now) == 1
    reconcile(booking["id"], now=now)
    # Found: its checkout is then made by a queued job (the workers run), so the state is waited for.
    frontend.wait_for_state(booking["id"], State.PAYMENT_PROCESSING.value)
    lists = [r for r in sandbox.api_requests("calendly")[seen:] if r["path"] == "/scheduled_events"]
    assert lists and all(r["status"] == 200 and scope in r["params"] for r in lists)


def test_an_organization_list_refused_later_narrows_to_the_user_for_the_process(frontend, sandbox, calendly_token):
    token = calendly_token(role="admin")
    seen = len(sandbox.api_requests("calendly"))
    sandbox.hold_deliveries("calendly")
    first = frontend.create_booking("short-call")
    frontend.schedule_in_calendly(first["scheduling_url"])
    now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2, minutes=1)
    claim_due_bookings(now)
    reconcile(first["id"], now=now)
    sandbox.calendly.grant(token, role="user")  # demoted since its role was read
    second = frontend.create_booking("short-call")
    frontend.schedule_in_calendly(second["scheduling_url"])
    claim_due_bookings(now)
    reconcile(second["id"], now=now)
    frontend.wait_for_state(second["id"], State.PAYMENT_PROCESSING.value)
    statuses = [(r["status"], "user" in r["params"]) for r in sandbox.api_requests("calendly")[seen:]
                if r["path"] == "/scheduled_events"]
    # (The sweep's job reconciles too, on the suite's worker: each list may show twice.)
    refused = statuses.index((403, False))
    assert set(statuses[:refused]) == {(200, False)}  # organization-wide while an admin
    assert set(statuses[refused:]) <= {(403, False), (200, True)} and statuses[-1] == (200, True)
