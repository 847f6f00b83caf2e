"""Fixtures of the unit tests: the sandbox kept quiet (a handler test calls the handler itself; the
sandbox's own webhooks must not reach the suite's live server, which a scenario may have started)."""

from __future__ import annotations

import pytest


@pytest.fixture
def quiet_sandbox(sandbox):
    for provider in ("calendly", "stripe"):
        sandbox.hold_deliveries(provider, True)
    yield sandbox
    sandbox.drop_pending_deliveries()
    for provider in ("calendly", "stripe"):
        sandbox.hold_deliveries(provider, False)
    sandbox.wait_deliveries_idle()
