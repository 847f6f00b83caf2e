"""What a handler reports back: an outcome name (stored on the delivery, counted in the metrics), the
booking it concerns, a detail for operators, and deliveries it found waiting for it."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Result(str, enum.Enum):
    # the booking moved, or its money or slot was recorded
    ADVANCED = "advanced"
    RECORDED = "recorded"
    CANCELLED = "cancelled"
    RESCHEDULED = "rescheduled"
    SLOT_MOVED = "slot_moved"
    SLOT_MOVING = "slot_moving"
    RELEASED = "released"
    AWAITING_PAYMENT = "awaiting_payment"
    REFUNDING_LATE_PAYMENT = "refunding_late_payment"
    REFUNDED_DUPLICATE = "refunded_duplicate"
    REFUND_UPDATED = "refund_updated"
    OUTSIDE_REFUND = "outside_refund"
    DISPUTE_RECORDED = "dispute_recorded"
    # nothing to do
    DUPLICATE = "duplicate"
    STALE = "stale"
    UNMATCHED = "unmatched"
    IGNORED = "ignored"
    INVALID = "invalid"
    CONFLICT = "conflict"
    # a claim refused (RELIABILITY.md, business-logic abuse)
    FOREIGN_PAYMENT = "foreign_payment"
    FOREIGN_SESSION = "foreign_session"
    WRONG_EVENT_TYPE = "wrong_event_type"
    UNREQUESTED_SLOT = "unrequested_slot"
    UNKNOWN_INVITEE = "unknown_invitee"
    NOT_THIS_BOOKING = "not_this_booking"
    SLOT_TAKEN = "slot_taken"
    INVITEE_CANCELED = "invitee_canceled"


@dataclass(frozen=True)
class Outcome:
    result: Result
    booking_id: str | None = None
    detail: str | None = None
    # Stored deliveries this one unblocked (an early invitee.created the client's report now matches):
    # the event processor processes them next.
    reopened: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return Result(self.result).value


# Outcomes after which the booking may have an entry action to run: the processor advances it.
MOVED = frozenset({Result.ADVANCED, Result.CANCELLED, Result.RESCHEDULED, Result.REFUNDING_LATE_PAYMENT})
