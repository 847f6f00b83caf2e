"""jobs/calendly_events.py: each handler called with a stored delivery and a body built from
tests/fixtures/calendly (the 2023 shape, so the event itself is read from the Calendly sandbox), one
outcome per test. Slots are real ones at the sandbox, booked through the booking's link."""

from __future__ import annotations

import pytest
import requests

from bookingflow import deliveries as d
from jobs import calendly_events, stripe_events
from jobs.outcomes import Result
from models.states import State, update_fields
from models.tables import Alert, Refund
from support.catalogue import make_session_type
from support.providers import calendly_invitee_delivery, stripe_event
from support.records import booking_in, fresh, handled, paid_at_stripe, scheduled_slot, stored


def deliver(kind: str, slot: dict, utm_content: str | None, handler=None, **payload):
    """The Calendly delivery of `kind` about `slot`'s invitee, stored, then handled."""
    body = calendly_invitee_delivery(kind, event_uri=slot["event_uri"], invitee_uri=slot["invitee_uri"],
                                     utm_content=utm_content)
    body["payload"].update(payload)
    handler = handler or (calendly_events.invitee_created if kind == d.INVITEE_CREATED else calendly_events.invitee_canceled)
    event = stored(d.CALENDLY, kind, body, subject=slot["invitee_uri"], event_id=f"{kind}:{slot['invitee_uri']}")
    return handled(event, handler)


def event_at_calendly(sandbox, event_uri: str) -> dict:
    (event,) = [e for e in sandbox.objects("scheduled_event") if e["uri"] == event_uri]
    return event


@pytest.fixture
def confirmed(scheduling, slot, quiet_sandbox):
    """The booking with its slot, paid and confirmed."""
    assert deliver(d.INVITEE_CREATED, slot, scheduling.id).result == Result.ADVANCED
    session = paid_at_stripe(quiet_sandbox, scheduling)
    body = stripe_event(d.CHECKOUT_COMPLETED, session)
    handled(stored(d.STRIPE, d.CHECKOUT_COMPLETED, body, event_id=body["id"]), stripe_events.checkout_paid)
    assert fresh(scheduling).state == State.BOOKING_CONFIRMED.value
    return fresh(scheduling)


def rescheduled_in_calendly(sandbox, booking) -> dict:
    response = requests.post(f"{sandbox.base}/calendly/_sandbox/reschedule", timeout=10,
                             json={"invitee_uri": booking.calendly_invitee_uri})
    assert response.status_code == 201, response.text
    return response.json()


# --- invitee.created ----------------------------------------------------------------------------

def test_the_first_invitee_of_a_booking_takes_the_slot_and_opens_its_checkout(scheduling, slot, quiet_sandbox):
    outcome = deliver(d.INVITEE_CREATED, slot, scheduling.id)
    assert (outcome.result, outcome.booking_id) == (Result.ADVANCED, scheduling.id)
    booking = fresh(scheduling)
    assert (booking.calendly_event_uri, booking.calendly_invitee_uri) == (slot["event_uri"], slot["invitee_uri"])
    assert booking.scheduled_start is not None
    assert booking.state == State.PAYMENT_PROCESSING.value and booking.checkout_url


def test_an_invitee_is_matched_by_the_uris_the_client_reported_when_it_carries_no_booking_id(scheduling, slot):
    update_fields(scheduling.id, calendly_invitee_uri=slot["invitee_uri"])
    assert deliver(d.INVITEE_CREATED, slot, None).result == Result.ADVANCED


def test_an_invitee_no_booking_carries_yet_is_unmatched(scheduling, slot):
    outcome = deliver(d.INVITEE_CREATED, slot, None)
    assert outcome.result == Result.UNMATCHED
    assert fresh(scheduling).state == State.CALENDLY_SCHEDULING.value


def test_the_same_invitee_delivered_again_is_a_duplicate(scheduling, slot):
    deliver(d.INVITEE_CREATED, slot, scheduling.id)
    assert deliver(d.INVITEE_CREATED, slot, scheduling.id).result == Result.DUPLICATE


def test_an_invitee_other_than_the_one_the_client_reported_is_a_conflict(scheduling, slot, quiet_sandbox):
    update_fields(scheduling.id, calendly_invitee_uri=slot["invitee_uri"])
    other = scheduled_slot(quiet_sandbox, scheduling)
    assert deliver(d.INVITEE_CREATED, other, scheduling.id).result == Result.CONFLICT
    assert fresh(scheduling).calendly_invitee_uri == slot["invitee_uri"]


def test_a_slot_of_another_session_type_is_refused_and_let_go(scheduling, quiet_sandbox):
    other_type = make_session_type(quiet_sandbox.base, "short-call", price=5000)
    stray = scheduled_slot(quiet_sandbox, scheduling, of_type=other_type)
    outcome = deliver(d.INVITEE_CREATED, stray, scheduling.id)
    assert outcome.result == Result.WRONG_EVENT_TYPE
    booking = fresh(scheduling)
    assert (booking.state, booking.calendly_invitee_uri) == (State.CALENDLY_SCHEDULING.value, None)
    assert event_at_calendly(quiet_sandbox, stray["event_uri"])["status"] == "canceled"


def test_a_slot_booked_after_the_booking_was_abandoned_is_released(app, quiet_sandbox, session_type):
    abandoned = booking_in(session_type, State.IDLE)
    late = scheduled_slot(quiet_sandbox, abandoned)
    assert deliver(d.INVITEE_CREATED, late, abandoned.id).result == Result.RELEASED
    assert event_at_calendly(quiet_sandbox, late["event_uri"])["status"] == "canceled"


def test_a_second_slot_for_a_confirmed_booking_without_a_reschedule_request_is_refused(confirmed, quiet_sandbox):
    second = scheduled_slot(quiet_sandbox, confirmed)
    assert deliver(d.INVITEE_CREATED, second, confirmed.id).result == Result.UNREQUESTED_SLOT
    assert fresh(confirmed).calendly_invitee_uri == confirmed.calendly_invitee_uri
    assert event_at_calendly(quiet_sandbox, second["event_uri"])["status"] == "canceled"


def test_calendlys_reschedule_of_a_confirmed_booking_moves_it_to_the_new_slot(confirmed, quiet_sandbox):
    new = rescheduled_in_calendly(quiet_sandbox, confirmed)
    outcome = deliver(d.INVITEE_CREATED, new, confirmed.id, old_invitee=confirmed.calendly_invitee_uri)
    assert outcome.result == Result.RESCHEDULED
    booking = fresh(confirmed)
    assert (booking.state, booking.calendly_invitee_uri) == (State.BOOKING_CONFIRMED.value, new["invitee_uri"])


def test_the_first_invitee_delivered_late_after_a_reschedule_is_stale_not_a_stray(confirmed, slot, quiet_sandbox):
    # Chaos in delivery: the booking's own first invitee.created comes after Calendly rescheduled it.
    # That invitee is cancelled at Calendly and holds nothing: no refusal, no alert, nothing released.
    new = rescheduled_in_calendly(quiet_sandbox, confirmed)
    deliver(d.INVITEE_CREATED, new, confirmed.id, old_invitee=confirmed.calendly_invitee_uri)
    assert deliver(d.INVITEE_CREATED, slot, confirmed.id).result == Result.STALE
    assert fresh(confirmed).calendly_invitee_uri == new["invitee_uri"]
    assert Alert.select().where(Alert.booking == confirmed.id).count() == 0


def test_a_slot_moved_in_calendly_before_paying_is_followed_without_a_transition(scheduling, slot, quiet_sandbox):
    deliver(d.INVITEE_CREATED, slot, scheduling.id)
    new = rescheduled_in_calendly(quiet_sandbox, fresh(scheduling))
    outcome = deliver(d.INVITEE_CREATED, new, scheduling.id, old_invitee=slot["invitee_uri"])
    assert outcome.result == Result.SLOT_MOVED
    booking = fresh(scheduling)
    assert (booking.state, booking.calendly_invitee_uri) == (State.PAYMENT_PROCESSING.value, new["invitee_uri"])


# --- invitee.canceled ---------------------------------------------------------------------------

def test_the_host_cancelling_a_confirmed_booking_refunds_it_in_full(confirmed, quiet_sandbox):
    slot = {"event_uri": confirmed.calendly_event_uri, "invitee_uri": confirmed.calendly_invitee_uri}
    outcome = deliver(d.INVITEE_CANCELED, slot, confirmed.id,
                      status="canceled", cancellation={"canceler_type": "host", "reason": "host ill"})
    assert outcome.result == Result.CANCELLED
    booking = fresh(confirmed)
    assert booking.cancelled_by == "host" and booking.cancel_reason.startswith("host ill")
    assert [refund.amount for refund in Refund.select().where(Refund.booking == confirmed.id)] == [12000]


def test_the_invitee_cancelling_before_paying_abandons_the_booking(scheduling, slot):
    deliver(d.INVITEE_CREATED, slot, scheduling.id)
    outcome = deliver(d.INVITEE_CANCELED, slot, scheduling.id, status="canceled")
    assert outcome.result == Result.CANCELLED
    booking = fresh(scheduling)
    assert (booking.state, booking.cancelled_by) == (State.IDLE.value, "invitee")
    assert Refund.select().count() == 0


def test_a_cancellation_delivered_again_is_a_duplicate(scheduling, slot):
    deliver(d.INVITEE_CREATED, slot, scheduling.id)
    deliver(d.INVITEE_CANCELED, slot, scheduling.id, status="canceled")
    assert deliver(d.INVITEE_CANCELED, slot, scheduling.id, status="canceled").result == Result.DUPLICATE


def test_the_cancellation_of_an_invitee_the_booking_moved_away_from_is_stale(scheduling, slot, quiet_sandbox):
    deliver(d.INVITEE_CREATED, slot, scheduling.id)
    other = scheduled_slot(quiet_sandbox, scheduling)
    outcome = deliver(d.INVITEE_CANCELED, other, scheduling.id, status="canceled")
    assert outcome.result == Result.STALE
    assert fresh(scheduling).state == State.PAYMENT_PROCESSING.value


def test_the_cancellation_of_an_invitee_of_no_booking_is_unmatched(app, quiet_sandbox, session_type):
    stranger = scheduled_slot(quiet_sandbox, booking_in(session_type))
    assert deliver(d.INVITEE_CANCELED, stranger, None).result == Result.UNMATCHED


def test_the_cancel_half_of_calendlys_reschedule_moves_a_confirmed_booking(confirmed, quiet_sandbox):
    new = rescheduled_in_calendly(quiet_sandbox, confirmed)
    old = {"event_uri": confirmed.calendly_event_uri, "invitee_uri": confirmed.calendly_invitee_uri}
    outcome = deliver(d.INVITEE_CANCELED, old, confirmed.id, status="canceled", rescheduled=True,
                      new_invitee=new["invitee_uri"])
    assert outcome.result == Result.RESCHEDULED
    assert fresh(confirmed).reschedule_invitee_uri == new["invitee_uri"]
    assert Refund.select().count() == 0


def test_the_cancel_half_of_a_reschedule_before_paying_waits_for_the_created_half(scheduling, slot, quiet_sandbox):
    deliver(d.INVITEE_CREATED, slot, scheduling.id)
    new = rescheduled_in_calendly(quiet_sandbox, fresh(scheduling))
    outcome = deliver(d.INVITEE_CANCELED, slot, scheduling.id, status="canceled", rescheduled=True,
                      new_invitee=new["invitee_uri"])
    assert outcome.result == Result.SLOT_MOVING
    assert fresh(scheduling).state == State.PAYMENT_PROCESSING.value


def test_a_cancellation_by_a_canceler_type_calendly_added_later_cancels_and_records_it(scheduling, slot, quiet_sandbox):
    assert deliver(d.INVITEE_CREATED, slot, scheduling.id, status="awaiting_host").result == Result.ADVANCED
    outcome = deliver(d.INVITEE_CANCELED, slot, scheduling.id, status="canceled",
                      cancellation={"canceler_type": "admin", "reason": "moved by an admin"})
    assert outcome.result == Result.CANCELLED and "cancellation.canceler_type=admin" in outcome.detail
    booking = fresh(scheduling)
    assert booking.state == State.IDLE.value and booking.cancel_reason == "moved by an admin"
