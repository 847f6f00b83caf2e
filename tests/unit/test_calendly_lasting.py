"""jobs/calendly_lasting.py: a slot let go when Calendly refuses (a token without
`scheduled_events:write`, another user's event), when the event is already cancelled, and when it was
deleted. Each through the sweep's reconciliation of a booking whose payment hold ran out (abandoned,
so its IDLE closing work releases the slot), against the Calendly sandbox."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from bookingflow import settings as settings_module
from jobs.reconcile import reconcile
from models.states import State, unflag
from models.tables import Alert, Booking
from support.flows import calendly_event
from support.records import booking_in, fresh, scheduled_slot

ALL_BUT_WRITE = {"users:read", "organizations:read", "event_types:read", "scheduled_events:read"}


@pytest.fixture
def held_after_failed_payment(app, quiet_sandbox, session_type):
    """A booking whose payment failed long ago, its slot held in Calendly: the next check abandons it
    and lets the slot go."""
    booking = booking_in(session_type, State.PAYMENT_FAILED)
    slot = scheduled_slot(quiet_sandbox, booking)
    Booking.update(calendly_event_uri=slot["event_uri"], calendly_invitee_uri=slot["invitee_uri"]).where(
        Booking.id == booking.id).execute()
    return fresh(booking)


def abandon(booking: Booking) -> Booking:
    reconcile(booking.id, now=booking.state_changed_at + dt.timedelta(days=1))
    return fresh(booking)


def test_a_token_without_the_write_scope_leaves_the_slot_held_and_the_booking_flagged(
        held_after_failed_payment, calendly_token, quiet_sandbox):
    calendly_token(scopes=ALL_BUT_WRITE)
    booking = abandon(held_after_failed_payment)
    assert booking.state == State.IDLE.value
    assert booking.released_at is None and booking.settled_at is None  # not reported as released
    assert booking.flagged_at is not None and "scheduled_events:write" in booking.flag_reason
    assert calendly_event(quiet_sandbox, booking.calendly_event_uri)["status"] == "active"
    assert [a.kind for a in Alert.select()] == ["calendly_refused"]


def test_another_users_event_is_refused_by_name_and_left_held(held_after_failed_payment, calendly_token, quiet_sandbox):
    calendly_token(user_uri=quiet_sandbox.calendly.add_user(), role="user")
    booking = abandon(held_after_failed_payment)
    assert booking.released_at is None and "belongs to another user" in booking.flag_reason
    assert calendly_event(quiet_sandbox, booking.calendly_event_uri)["status"] == "active"


def test_a_refused_release_runs_again_once_the_token_is_fixed(held_after_failed_payment, calendly_token, quiet_sandbox,
                                                             service_settings):
    calendly_token(scopes=ALL_BUT_WRITE)
    booking = abandon(held_after_failed_payment)
    assert reconcile(booking.id) is None  # flagged: the sweep leaves it to a person
    settings_module.configure(service_settings)  # the token fixed; then what `bookings retry` does:
    unflag(booking.id)
    reconcile(booking.id)
    booking = fresh(booking)
    assert booking.released_at is not None and booking.settled_at is not None and booking.flagged_at is None
    assert calendly_event(quiet_sandbox, booking.calendly_event_uri)["status"] == "canceled"


def test_a_403_for_an_event_already_cancelled_is_a_release(held_after_failed_payment, quiet_sandbox):
    response = requests.post(f"{quiet_sandbox.base}/calendly/_sandbox/cancel", timeout=10,
                             json={"invitee_uri": held_after_failed_payment.calendly_invitee_uri})
    assert response.status_code == 200, response.text
    booking = abandon(held_after_failed_payment)
    assert booking.released_at is not None and booking.flagged_at is None
    assert not Alert.select().exists()


def test_a_released_slot_whose_event_was_deleted_is_released(held_after_failed_payment, quiet_sandbox):
    quiet_sandbox.calendly.delete_event(held_after_failed_payment.calendly_event_uri)
    booking = abandon(held_after_failed_payment)
    assert booking.released_at is not None and booking.settled_at is not None and booking.flagged_at is None
