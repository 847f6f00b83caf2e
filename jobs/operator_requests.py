"""What an operator asks of a booking from the console and the workers carry out: a cancellation, by
the refund policy or in full.

The console stores the request in the inbox (provider "operator") like the client's, so it outlives a
lost message, and this handler decides against the booking as it is when the job runs.
"""

from __future__ import annotations

from bookingflow import refund_policy
from jobs import flow
from jobs.outcomes import Outcome, Result
from models.tables import Booking, ProviderEvent

# What the client's e-mail says: the operator's own reason is for the audit, not for the client.
CANCEL_REASON = "cancelled by our team"


def cancel(event: ProviderEvent, body: dict) -> Outcome:
    booking = Booking.by_id(event.subject)
    if booking is None:
        return Outcome(Result.UNMATCHED)
    by = refund_policy.OPERATOR_IN_FULL if body.get("refund") == "full" else refund_policy.OPERATOR
    # After confirmation the booking is cancelled and refunded (by the policy, or all of what was paid);
    # before it, the flow is abandoned and nothing was paid.
    applied = flow.cancel(booking.id, f"operator-{event.event_id}"[:255], cancelled_by=by, cancel_reason=CANCEL_REASON)
    if applied is None:
        return Outcome(Result.STALE, booking.id, f"nothing to cancel in {Booking.get_by_id(booking.id).state}")
    return Outcome(Result.CANCELLED, booking.id)
