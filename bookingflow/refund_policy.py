"""How much of a cancelled booking goes back, by the session type's refund_policy.

A policy looks like {"full_before_hours": 48, "partial_before_hours": 24, "partial_percent": 50}:
cancelled at least 48 hours before the start, everything back; at least 24 hours, half; later, nothing.
A tier the policy does not name does not exist. No policy at all refunds in full, and so does a
cancellation by the host: the client did nothing wrong. An operator cancels either way: by the policy,
as if the client had asked (OPERATOR), or refunding everything (OPERATOR_IN_FULL).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# Booking.cancelled_by for an operator's cancellation (the console), by the policy or in full.
OPERATOR, OPERATOR_IN_FULL = "operator", "operator_in_full"
# Cancellations that are not the client's doing: refunded in full, whatever an earlier reschedule capped.
NOT_THE_CLIENTS = ("host", "system", OPERATOR_IN_FULL)


@dataclass(frozen=True)
class RefundDecision:
    amount: int
    percent: int
    reason: str


def refund_percent(policy: dict | None, hours_before_start: float | None, cancelled_by: str | None) -> tuple[int, str]:
    if cancelled_by == "host":
        return 100, "cancelled by the host: full refund"
    if cancelled_by == "system":
        return 100, "cancelled by bookingflow (a payment never completed): full refund"
    if cancelled_by == OPERATOR_IN_FULL:
        return 100, "cancelled by an operator, refunded in full"
    if policy is None:
        return 100, "no refund policy: full refund"
    if hours_before_start is None:
        return 100, "no scheduled start known: full refund"
    full = policy.get("full_before_hours")
    partial = policy.get("partial_before_hours")
    if full is not None and hours_before_start >= full:
        return 100, f"cancelled {hours_before_start:.1f}h before the start (>= {full}h): full refund"
    if partial is not None and hours_before_start >= partial:
        percent = int(policy.get("partial_percent", 0))
        return percent, f"cancelled {hours_before_start:.1f}h before the start (>= {partial}h): {percent}% refund"
    return 0, f"cancelled {hours_before_start:.1f}h before the start: no refund under the policy"


def decide(refundable: int, policy: dict | None, scheduled_start: dt.datetime | None,
           cancelled_at: dt.datetime, cancelled_by: str | None, cap_percent: int | None = None) -> RefundDecision:
    """The refund for a cancellation at `cancelled_at` (fixed, so a retried job decides the same).
    `cap_percent`: the most an earlier reschedule left refundable (a host's, bookingflow's own or an
    operator's cancellation in full is not the client's doing and ignores it)."""
    hours = None if scheduled_start is None else (scheduled_start - cancelled_at).total_seconds() / 3600
    percent, reason = refund_percent(policy, hours, cancelled_by)
    if cap_percent is not None and cap_percent < percent and cancelled_by not in NOT_THE_CLIENTS:
        percent, reason = cap_percent, f"{cap_percent}% refund: the most left when an earlier slot was given up"
    # Integer minor units, rounded down: never more than the policy grants.
    return RefundDecision(max(0, refundable) * percent // 100, percent, reason)


def terms_of(booking) -> dict | None:
    """The policy the booking's refunds follow: frozen on the booking when its client paid; before
    that, its session type's current one."""
    if booking.refund_policy_frozen_at is not None:
        return booking.refund_policy
    return booking.session_type.refund_policy
