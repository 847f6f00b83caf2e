"""Fixtures of the unit tests: the sandbox kept quiet (a handler test calls the handler itself; the
sandbox's own webhooks must not reach the suite's live server, which a scenario may have started)."""

from __future__ import annotations

import pytest

from models.states import State
from support.records import booking_in, scheduled_slot


@pytest.fixture
def quiet_sandbox(sandbox):
    for provider in ("calendly", "stripe"):
        sandbox.hold_deliveries(provider, True)
    yield sandbox
    sandbox.drop_pending_deliveries()
    for provider in ("calendly", "stripe"):
        sandbox.hold_deliveries(provider, False)
    sandbox.wait_deliveries_idle()


@pytest.fixture
def scheduling(app, quiet_sandbox, session_type):
    """A booking waiting for its client to pick a slot."""
    return booking_in(session_type, State.CALENDLY_SCHEDULING, amount_due=0)


@pytest.fixture
def slot(scheduling, quiet_sandbox):
    """A slot scheduled at the sandbox's Calendly with the booking's link."""
    return scheduled_slot(quiet_sandbox, scheduling)
