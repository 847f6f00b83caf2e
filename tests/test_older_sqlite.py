"""On an SQLite older than 3.35 there is no RETURNING (models/db.py turns it off there): the inbox, the
transitions and the reads by id take their other path, and a booking still goes the whole way."""

from __future__ import annotations

import pytest

from models.db import database, is_sqlite
from models.tables import ProviderEvent, Transition
from support.flows import confirmed_booking, hours_from_now


@pytest.fixture
def without_returning(app, monkeypatch):
    if not is_sqlite():
        pytest.skip("PostgreSQL always returns written rows")
    monkeypatch.setattr(database.obj, "returning_clause", False)


def test_a_booking_is_confirmed_without_returning(without_returning, frontend):
    view = confirmed_booking(frontend, "coaching-hour", start_time=hours_from_now(100))
    assert view["state"] == "BOOKING_CONFIRMED"
    assert Transition.select().where(Transition.booking == view["id"]).count() >= 5
    events = ProviderEvent.select().where(ProviderEvent.booking == view["id"])
    assert events.count() >= 2 and all(e.processed_at is not None and e.attempts == 1 for e in events)
