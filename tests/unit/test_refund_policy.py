"""bookingflow/refund_policy.py: how much of a cancelled booking goes back."""

from __future__ import annotations

import datetime as dt

import pytest

from bookingflow.refund_policy import decide, refund_percent, terms_of
from models.db import utcnow
from models.states import update_fields
from support.catalogue import POLICY, make_session_type
from support.records import booking_in, fresh

START = dt.datetime(2026, 12, 10, 15, 0, tzinfo=dt.timezone.utc)


def hours_before(hours: float) -> dt.datetime:
    return START - dt.timedelta(hours=hours)


@pytest.mark.parametrize(("hours", "percent"), [
    (200, 100), (48, 100), (47.9, 50), (24, 50), (23.9, 0), (0, 0), (-3, 0),
])
def test_a_clients_cancellation_refunds_by_the_tier_it_falls_in(hours, percent):
    decision = decide(10_000, POLICY, START, hours_before(hours), "client")
    assert (decision.percent, decision.amount) == (percent, 10_000 * percent // 100)


def test_a_tier_the_policy_does_not_name_does_not_exist():
    only_full = {"full_before_hours": 48}
    assert decide(10_000, only_full, START, hours_before(30), "client").amount == 0
    only_partial = {"partial_before_hours": 24, "partial_percent": 25}
    assert decide(10_000, only_partial, START, hours_before(100), "client").percent == 25


@pytest.mark.parametrize("cancelled_by", ["host", "system", "operator_in_full"])
def test_a_cancellation_by_the_host_by_bookingflow_or_by_an_operator_in_full_refunds_in_full_whatever_the_policy(cancelled_by):
    decision = decide(10_000, POLICY, START, hours_before(1), cancelled_by)
    assert (decision.percent, decision.amount) == (100, 10_000)


def test_an_operators_cancellation_by_the_policy_refunds_as_the_clients_would_with_its_cap():
    assert decide(10_000, POLICY, START, hours_before(30), "operator").percent == 50
    assert decide(10_000, POLICY, START, hours_before(1), "operator").amount == 0
    assert decide(10_000, POLICY, START, hours_before(100), "operator", cap_percent=50).percent == 50


def test_no_policy_refunds_in_full():
    assert decide(10_000, None, START, hours_before(1), "client").amount == 10_000


def test_no_known_start_refunds_in_full():
    assert decide(10_000, POLICY, None, hours_before(1), "client").amount == 10_000


def test_the_amount_is_rounded_down_and_never_negative():
    assert decide(999, POLICY, START, hours_before(30), "client").amount == 499
    assert decide(-500, None, START, hours_before(100), "client").amount == 0


def test_cap_percent_limits_a_clients_refund_after_an_earlier_reschedule():
    decision = decide(10_000, POLICY, START, hours_before(100), "client", cap_percent=50)
    assert (decision.percent, decision.amount) == (50, 5_000)
    assert "earlier slot" in decision.reason


def test_cap_percent_never_raises_a_refund():
    assert decide(10_000, POLICY, START, hours_before(30), "client", cap_percent=80).percent == 50


@pytest.mark.parametrize("cancelled_by", ["host", "system", "operator_in_full"])
def test_cap_percent_does_not_apply_to_a_cancellation_that_is_not_the_clients_doing(cancelled_by):
    assert decide(10_000, POLICY, START, hours_before(1), cancelled_by, cap_percent=0).amount == 10_000


def test_the_reason_says_why():
    assert refund_percent(POLICY, 30, "client") == (50, "cancelled 30.0h before the start (>= 24h): 50% refund")
    assert refund_percent(POLICY, 1, "client")[1] == "cancelled 1.0h before the start: no refund under the policy"


def test_terms_of_a_booking_not_yet_paid_are_its_session_types_current_policy(app, sandbox):
    session_type = make_session_type(sandbox.base, "short-call", refund_policy=POLICY)
    booking = booking_in(session_type)
    session_type.refund_policy = {"full_before_hours": 1}
    session_type.save()
    assert terms_of(fresh(booking)) == {"full_before_hours": 1}


def test_terms_of_a_paid_booking_are_the_policy_frozen_when_its_client_paid(app, sandbox):
    session_type = make_session_type(sandbox.base, "short-call", refund_policy=POLICY)
    booking = booking_in(session_type)
    update_fields(booking.id, refund_policy=POLICY, refund_policy_frozen_at=utcnow())
    session_type.refund_policy = {"full_before_hours": 1}
    session_type.save()
    assert terms_of(fresh(booking)) == POLICY


def test_terms_frozen_as_no_policy_stay_no_policy(app, sandbox):
    session_type = make_session_type(sandbox.base, "coaching-hour")
    booking = booking_in(session_type)
    update_fields(booking.id, refund_policy=None, refund_policy_frozen_at=utcnow())
    session_type.refund_policy = POLICY
    session_type.save()
    assert terms_of(fresh(booking)) is None
