"""jobs/operator_requests.py: an operator's cancellation (stored by the console under the provider
"operator", the booking id as subject), run as a worker runs it, one outcome per test."""

from __future__ import annotations

from bookingflow import deliveries as d
from jobs import operator_requests
from jobs.outcomes import Result
from models import operations
from models.states import State
from models.tables import ProviderEvent
from support.records import booking_in, fresh, handled, stored


def cancel(booking_id: str, refund: str):
    body = {"refund": refund, "operator": "console ada"}
    return handled(stored(d.OPERATOR, d.CANCEL, body, subject=booking_id), operator_requests.cancel)


def test_an_operators_cancellation_before_payment_abandons_the_flow(scheduling):
    assert cancel(scheduling.id, "policy").result == Result.CANCELLED
    booking = fresh(scheduling)
    assert (booking.state, booking.cancelled_by, booking.cancel_reason) == (
        State.IDLE.value, "operator", "cancelled by our team")


def test_an_operators_cancellation_in_full_of_a_confirmed_booking_says_so_on_the_booking(app, quiet_sandbox, session_type):
    confirmed = booking_in(session_type, State.BOOKING_CONFIRMED, amount_paid=session_type.price)
    assert cancel(confirmed.id, "full").result == Result.CANCELLED
    assert fresh(confirmed).cancelled_by == "operator_in_full"
    assert fresh(confirmed).state != State.BOOKING_CONFIRMED.value


def test_cancelling_a_booking_with_nothing_left_to_cancel_is_stale(app, quiet_sandbox, session_type):
    abandoned = booking_in(session_type, State.IDLE)
    assert cancel(abandoned.id, "full").result == Result.STALE


def test_the_request_is_stored_before_it_is_queued_and_names_no_reason(app, quiet_sandbox, session_type):
    confirmed = booking_in(session_type, State.BOOKING_CONFIRMED)
    event = operations.cancel(confirmed.id, in_full=True, operator="console ada")
    row = ProviderEvent.get_by_id(event.id)
    assert (row.provider, row.type, row.subject, row.processed_at) == ("operator", "booking.cancel", confirmed.id, None)
    assert "reason" not in row.payload
