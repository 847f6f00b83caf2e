"""jobs/client_requests.py: the client's requests (stored by the intake under the provider "client",
the booking id as subject), each handler called with the stored request, one outcome per test. Slots
are real ones at the Calendly sandbox, which the report is checked against."""

from __future__ import annotations

import pytest

from bookingflow import deliveries as d
from jobs import calendly_events, client_requests
from jobs.outcomes import Result
from models import inbox
from models.states import State, update_fields
from models.tables import ProviderEvent
from support.providers import calendly_invitee_delivery
from support.records import booking_in, fresh, handled, scheduled_slot, stored


def request(kind: str, booking_id: str, body: dict, handler):
    return handled(stored(d.CLIENT, kind, body, subject=booking_id), handler)


def report(booking_id: str, slot: dict):
    body = {"event_uri": slot["event_uri"], "invitee_uri": slot["invitee_uri"]}
    return request(d.SCHEDULED, booking_id, body, client_requests.scheduled)


# --- booking.scheduled --------------------------------------------------------------------------

def test_a_true_report_of_the_slot_moves_the_booking_to_scheduled(scheduling, slot):
    outcome = report(scheduling.id, slot)
    assert (outcome.result, outcome.booking_id) == (Result.ADVANCED, scheduling.id)
    booking = fresh(scheduling)
    assert (booking.state, booking.calendly_event_uri, booking.calendly_invitee_uri) == (
        State.CALENDLY_SCHEDULED.value, slot["event_uri"], slot["invitee_uri"])


def test_a_report_of_a_slot_booked_without_the_bookings_link_is_refused(scheduling, quiet_sandbox, session_type):
    elsewhere = scheduled_slot(quiet_sandbox, booking_in(session_type))
    outcome = report(scheduling.id, elsewhere)
    assert outcome.result == Result.NOT_THIS_BOOKING
    booking = fresh(scheduling)
    assert (booking.state, booking.error_class) == (State.CALENDLY_SCHEDULING.value, "validation")


def test_a_report_of_an_invitee_calendly_does_not_know_is_refused(scheduling, slot):
    made_up = {**slot, "invitee_uri": slot["event_uri"] + "/invitees/MADEUP"}
    assert report(scheduling.id, made_up).result == Result.UNKNOWN_INVITEE


def test_a_report_of_a_slot_another_booking_holds_is_refused(scheduling, slot, session_type):
    booking_in(session_type, State.BOOKING_CONFIRMED, calendly_event_uri=slot["event_uri"])
    assert report(scheduling.id, slot).result == Result.SLOT_TAKEN


def test_a_report_after_calendlys_webhook_moved_the_booking_is_only_recorded(app, quiet_sandbox, session_type):
    paying = booking_in(session_type, State.PAYMENT_PROCESSING)
    slot = scheduled_slot(quiet_sandbox, paying)
    update_fields(paying.id, calendly_event_uri=slot["event_uri"], calendly_invitee_uri=slot["invitee_uri"])
    assert report(paying.id, slot).result == Result.RECORDED
    assert fresh(paying).state == State.PAYMENT_PROCESSING.value


def test_a_report_reopens_the_invitee_created_that_came_before_it_unmatched(scheduling, slot):
    body = calendly_invitee_delivery(d.INVITEE_CREATED, event_uri=slot["event_uri"], invitee_uri=slot["invitee_uri"],
                                     utm_content=None)
    early = stored(d.CALENDLY, d.INVITEE_CREATED, body, subject=slot["invitee_uri"])
    inbox.finish(early, calendly_events.invitee_created(early, body).name, None, None)
    assert ProviderEvent.get_by_id(early.id).outcome == Result.UNMATCHED.value
    outcome = report(scheduling.id, slot)
    assert outcome.reopened == (early.id,)
    # The processor handles the reopened delivery next: the reported URIs now match it.
    assert ProviderEvent.get_by_id(early.id).outcome == Result.ADVANCED.value


def test_a_report_for_no_booking_is_unmatched(app, quiet_sandbox):
    assert report("no-such-booking", {"event_uri": "x", "invitee_uri": "y"}).result == Result.UNMATCHED


# --- booking.cancel -----------------------------------------------------------------------------

def test_cancelling_before_paying_abandons_the_booking(scheduling):
    outcome = request(d.CANCEL, scheduling.id, {"reason": "plans changed"}, client_requests.cancel)
    assert outcome.result == Result.CANCELLED
    booking = fresh(scheduling)
    assert (booking.state, booking.cancelled_by) == (State.IDLE.value, "client")
    assert booking.cancel_reason.startswith("plans changed")


def test_cancelling_without_a_reason_says_the_client_cancelled(scheduling):
    request(d.CANCEL, scheduling.id, {}, client_requests.cancel)
    assert fresh(scheduling).cancel_reason.startswith("cancelled by the client")


def test_cancelling_a_booking_with_nothing_left_to_cancel_is_stale(app, quiet_sandbox, session_type):
    abandoned = booking_in(session_type, State.IDLE)
    outcome = request(d.CANCEL, abandoned.id, {}, client_requests.cancel)
    assert (outcome.result, outcome.detail) == (Result.STALE, "nothing to cancel in IDLE")


def test_cancelling_no_booking_is_unmatched(app):
    assert request(d.CANCEL, "no-such-booking", {}, client_requests.cancel).result == Result.UNMATCHED


# --- booking.retry_payment ----------------------------------------------------------------------

def test_retrying_a_failed_payment_opens_a_new_checkout_attempt(app, quiet_sandbox, session_type):
    failed = booking_in(session_type, State.PAYMENT_FAILED, payment_attempt=1,
                        calendly_event_uri="https://api.calendly.com/scheduled_events/EVTRETRY")
    outcome = request(d.RETRY_PAYMENT, failed.id, {}, client_requests.retry_payment)
    assert outcome.result == Result.ADVANCED
    booking = fresh(failed)
    assert (booking.state, booking.payment_attempt) == (State.PAYMENT_PROCESSING.value, 2)
    assert booking.checkout_session_id in {s["id"] for s in quiet_sandbox.objects("checkout.session")}


def test_retrying_when_there_is_no_failed_payment_is_stale(scheduling):
    outcome = request(d.RETRY_PAYMENT, scheduling.id, {}, client_requests.retry_payment)
    assert (outcome.result, outcome.detail) == (Result.STALE, "no payment to retry in CALENDLY_SCHEDULING")
    assert fresh(scheduling).payment_attempt == 0


def test_retrying_for_no_booking_is_unmatched(app):
    assert request(d.RETRY_PAYMENT, "no-such-booking", {}, client_requests.retry_payment).result == Result.UNMATCHED
