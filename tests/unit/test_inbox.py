"""models/inbox.py: every accepted delivery stored once, finished once, reopened only on purpose."""

from __future__ import annotations

import pytest

from models import inbox
from models.tables import ProviderEvent

pytestmark = pytest.mark.usefixtures("app")


def store(event_id: str = "evt_1", event_type: str = "checkout.session.completed", payload: str = "{}"):
    return inbox.store("stripe", event_id, event_type, "cs_1", payload)


def test_a_new_delivery_is_stored_unprocessed():
    event, new = store()
    assert new
    assert (event.processed_at, event.outcome, event.subject, event.payload) == (None, None, "cs_1", "{}")
    assert inbox.is_stored("stripe", "evt_1")


def test_a_delivery_stored_again_finds_the_first_row_and_keeps_its_payload():
    first, _ = store(payload='{"first": true}')
    again, new = store(payload='{"second": true}')
    assert not new
    assert again.id == first.id
    assert ProviderEvent.select().count() == 1
    assert ProviderEvent.get_by_id(first.id).payload == '{"first": true}'


def test_the_same_event_id_of_another_provider_is_another_delivery():
    store()
    _, new = inbox.store("calendly", "evt_1", "invitee.created", None, "{}")
    assert new
    assert not inbox.is_stored("client", "evt_1")


def test_a_delivery_bookingflow_does_not_act_on_is_kept_and_marked_ignored_at_once():
    event, new = store(event_type="customer.created")
    assert new
    assert event.outcome == "ignored" and event.processed_at is not None


def test_a_long_event_id_is_stored_and_found_by_its_first_255_characters():
    event, _ = store(event_id="e" * 300)
    assert len(event.event_id) == 255
    assert inbox.is_stored("stripe", "e" * 300)
    assert store(event_id="e" * 300)[1] is False


def test_finishing_marks_the_event_processed_with_its_outcome():
    event, _ = store()
    assert inbox.finish(event, "advanced", None, "moved on")
    row = ProviderEvent.get_by_id(event.id)
    assert row.processed_at is not None and (row.outcome, row.detail) == ("advanced", "moved on")


def test_only_the_first_finisher_wins():
    event, _ = store()
    assert inbox.finish(event, "advanced", None, None)
    assert not inbox.finish(event, "stale", None, "a second worker")
    assert ProviderEvent.get_by_id(event.id).outcome == "advanced"


def test_taking_an_unprocessed_event_counts_the_attempt_and_a_processed_one_is_not_taken():
    event, _ = store()
    assert inbox.take_unprocessed(event.id).attempts == 1
    taken = inbox.take_unprocessed(event.id)
    assert (taken.id, taken.attempts, taken.payload, taken.received_at) == (event.id, 2, event.payload, event.received_at)
    assert ProviderEvent.get_by_id(event.id).attempts == 2
    inbox.finish(taken, "advanced", None, None)
    assert inbox.take_unprocessed(event.id) is None
    assert inbox.take_unprocessed(event.id + 1000) is None
    assert ProviderEvent.get_by_id(event.id).attempts == 2


def test_a_reopened_event_is_unprocessed_again_and_can_be_finished_again():
    event, _ = store()
    inbox.finish(event, "unmatched", None, "no booking yet")
    assert inbox.reopen_event(event.id)
    row = ProviderEvent.get_by_id(event.id)
    assert (row.processed_at, row.outcome, row.detail) == (None, None, None)
    assert inbox.finish(row, "advanced", None, None)


def test_reopening_only_if_outcome_leaves_an_event_with_another_outcome_alone():
    event, _ = store()
    inbox.finish(event, "advanced", None, None)
    assert not inbox.reopen_event(event.id, only_if_outcome="unmatched")
    assert ProviderEvent.get_by_id(event.id).outcome == "advanced"


def test_of_two_reopeners_on_the_same_outcome_only_one_wins():
    event, _ = store()
    inbox.finish(event, "unmatched", None, None)
    assert inbox.reopen_event(event.id, only_if_outcome="unmatched")
    assert not inbox.reopen_event(event.id, only_if_outcome="unmatched")


def test_rows_read_by_id_are_whole_and_a_null_or_unknown_id_finds_nothing_whatever_came_first():
    # The SQL is rendered on first use: a null id first must not break it, nor change what it finds.
    assert ProviderEvent.by_id(None) is None
    event, _ = store(payload='{"kept": true}')
    found = ProviderEvent.by_id(event.id)
    assert (found.event_id, found.payload, found.received_at) == (event.event_id, '{"kept": true}', event.received_at)
    assert found.received_at.tzinfo is not None
    assert ProviderEvent.by_id(None) is None and ProviderEvent.by_id(event.id + 1000) is None
    with pytest.raises(ProviderEvent.DoesNotExist):
        ProviderEvent.get_by_id(event.id + 1000)
