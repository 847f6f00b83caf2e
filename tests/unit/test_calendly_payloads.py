"""bookingflow/providers/calendly_payloads.py: every shape of Calendly webhook body read into one
record, from the real bodies in tests/fixtures/calendly."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from bookingflow.providers.calendly_payloads import (
    PayloadInvalid,
    delivery_identity,
    event_uri_of_invitee,
    is_event_uri,
    is_invitee_uri,
    parse_invitee_notice,
    parse_time,
)
from support.providers import calendly_invitee_delivery, fixture

EVENT = "https://api.calendly.com/scheduled_events/EVT123"
INVITEE = f"{EVENT}/invitees/INV456"
UTC = dt.timezone.utc


def v2_2023(kind: str = "invitee.created") -> dict:
    return copy.deepcopy(fixture(f"calendly/openapi_webhook_{kind.replace('.', '_')}.json"))


def v2_embedded(kind: str = "invitee.created") -> dict:
    return copy.deepcopy(fixture(f"calendly/calendly_{kind.replace('.', '_')}__docs_transcription_with_scheduled_event.json"))


def v1(kind: str = "invitee.created", **invitee) -> dict:
    """A legacy (API v1) webhook body: invitee, event and event_type objects with uuids, times in
    v1's "YYYY-MM-DD HH:MM:SS +hhmm"."""
    return {
        "event": kind,
        "time": "2018-03-14 09:00:00 +0000",
        "payload": {
            "event_type": {"uuid": "TYPE789", "kind": "One-on-One", "slug": "coaching-hour"},
            "event": {"uuid": "EVT123", "start_time": "2018-03-14 12:00:00 +0530",
                      "end_time": "2018-03-14 13:00:00 +0530", "canceled": kind == "invitee.canceled",
                      "canceler_type": None, "cancel_reason": None},
            "invitee": {"uuid": "INV456", "email": "ada@example.com", "name": "Ada Lovelace",
                        "canceled": kind == "invitee.canceled", "is_reschedule": False, **invitee},
            "tracking": {"utm_content": "booking-1"},
        },
    }


# --- API v2, 2023 shape -------------------------------------------------------------------------

def test_a_2023_body_names_the_invitee_and_its_event_by_uri():
    notice = parse_invitee_notice(v2_2023())
    assert notice.kind == "invitee.created"
    assert notice.invitee_uri == "https://api.calendly.com/scheduled_events/AAAAAAAAAAAAAAAA/invitees/AAAAAAAAAAAAAAAA"
    assert notice.event_uri == "https://api.calendly.com/scheduled_events/AAAAAAAAAAAAAAAA"
    assert (notice.email, notice.name, notice.status) == ("test@example.com", "John Doe", "active")


def test_a_2023_body_embeds_no_event_so_the_event_is_fetched_later():
    assert parse_invitee_notice(v2_2023()).event is None


def test_a_2023_body_carries_our_booking_id_in_utm_content():
    body = calendly_invitee_delivery("invitee.created", event_uri=EVENT, invitee_uri=INVITEE, utm_content="booking-1")
    assert parse_invitee_notice(body).utm_content == "booking-1"


def test_a_2023_cancellation_says_who_cancelled_and_why():
    body = v2_2023("invitee.canceled")
    body["payload"]["cancellation"]["canceler_type"] = "host"
    notice = parse_invitee_notice(body)
    assert (notice.kind, notice.status) == ("invitee.canceled", "canceled")
    assert (notice.canceler_type, notice.cancel_reason) == ("host", "Meeting Conflict")


def test_a_reschedule_names_the_old_and_the_new_invitee():
    body = v2_2023("invitee.canceled")
    body["payload"].update(rescheduled=True, new_invitee=f"{EVENT}/invitees/NEW")
    notice = parse_invitee_notice(body)
    assert notice.rescheduled and notice.new_invitee == f"{EVENT}/invitees/NEW"


def test_a_body_whose_event_is_not_an_event_uri_takes_the_event_of_its_invitee():
    body = calendly_invitee_delivery("invitee.created", event_uri="not a uri", invitee_uri=INVITEE, utm_content=None)
    assert parse_invitee_notice(body).event_uri == EVENT


def test_a_body_without_an_invitee_uri_is_invalid():
    body = v2_2023()
    body["payload"]["uri"] = "https://api.calendly.com/users/ME"
    with pytest.raises(PayloadInvalid, match="payload.uri is not an invitee URI"):
        parse_invitee_notice(body)


@pytest.mark.parametrize("body", [None, [], {}, {"event": "invitee.created"}, {"payload": {}},
                                  {"event": 3, "payload": {}}, {"event": "invitee.created", "payload": []}])
def test_a_body_without_event_and_payload_is_invalid(body):
    with pytest.raises(PayloadInvalid):
        parse_invitee_notice(body)


# --- API v2, the event embedded -----------------------------------------------------------------

def test_an_embedded_event_gives_its_times_type_and_status():
    event = parse_invitee_notice(v2_embedded()).event
    assert event.start == dt.datetime(2019, 8, 24, 14, 15, 22, 123456, tzinfo=UTC)
    assert event.end == dt.datetime(2019, 8, 24, 14, 15, 22, 123456, tzinfo=UTC)
    assert event.event_type == "https://api.calendly.com/event_types/GBGBDCAADAEDCRZ2"
    assert event.status == "active"


def test_the_invitees_own_event_uri_is_trusted_over_the_embedded_objects():
    notice = parse_invitee_notice(v2_embedded())
    assert notice.event_uri == "https://api.calendly.com/scheduled_events/AAAAAAAAAAAAAAAA"
    assert notice.event.uri == notice.event_uri


def test_an_embedded_event_without_a_uri_is_invalid():
    body = v2_embedded()
    del body["payload"]["scheduled_event"]["uri"]
    with pytest.raises(PayloadInvalid, match="scheduled event without uri"):
        parse_invitee_notice(body)


def test_an_unreadable_time_is_invalid():
    body = v2_embedded()
    body["payload"]["scheduled_event"]["start_time"] = "next tuesday"
    with pytest.raises(PayloadInvalid, match="unreadable time"):
        parse_invitee_notice(body)


# --- API v1 -------------------------------------------------------------------------------------

def test_a_v1_body_is_read_with_uris_rebuilt_from_its_uuids():
    notice = parse_invitee_notice(v1())
    assert (notice.event_uri, notice.invitee_uri) == (EVENT, INVITEE)
    assert notice.event.event_type == "https://api.calendly.com/event_types/TYPE789"
    assert (notice.email, notice.name, notice.utm_content, notice.status) == (
        "ada@example.com", "Ada Lovelace", "booking-1", "active")


def test_a_v1_body_gives_its_times_in_utc():
    event = parse_invitee_notice(v1()).event
    assert (event.start, event.end) == (dt.datetime(2018, 3, 14, 6, 30, tzinfo=UTC),
                                        dt.datetime(2018, 3, 14, 7, 30, tzinfo=UTC))


def test_a_v1_cancellation_is_canceled_with_its_reason():
    notice = parse_invitee_notice(v1("invitee.canceled", canceler_type="invitee", cancel_reason="ill"))
    assert (notice.status, notice.event.status, notice.canceler_type, notice.cancel_reason) == (
        "canceled", "canceled", "invitee", "ill")


def test_a_v1_reschedule_is_flagged():
    assert parse_invitee_notice(v1(is_reschedule=True)).rescheduled


@pytest.mark.parametrize("uuid", [None, 7, "has/slash", "x" * 101])
def test_a_v1_body_with_a_missing_or_malformed_uuid_is_invalid(uuid):
    with pytest.raises(PayloadInvalid):
        parse_invitee_notice(v1(uuid=uuid))


# --- URIs and times -----------------------------------------------------------------------------

@pytest.mark.parametrize(("uri", "event", "invitee"), [
    (EVENT, True, False), (EVENT + "/", True, False), (INVITEE, False, True),
    ("https://api.calendly.com/users/ME", False, False), ("ftp://api.calendly.com/scheduled_events/E", False, False),
    ("https://[/scheduled_events/E", False, False), (None, False, False), (42, False, False),
    ("https://api.calendly.com/scheduled_events/" + "E" * 101, False, False),
    ("https://api.calendly.com/scheduled_events/E" + "/x" * 300, False, False),
])
def test_event_and_invitee_uris_are_told_apart(uri, event, invitee):
    assert (is_event_uri(uri), is_invitee_uri(uri)) == (event, invitee)


def test_the_event_of_an_invitee_uri_is_its_parent():
    assert event_uri_of_invitee(INVITEE) == EVENT


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-12-10T15:00:00Z", dt.datetime(2026, 12, 10, 15, 0, tzinfo=UTC)),
    ("2026-12-10T16:00:00+01:00", dt.datetime(2026, 12, 10, 15, 0, tzinfo=UTC)),
    ("2026-12-10T15:00:00", dt.datetime(2026, 12, 10, 15, 0, tzinfo=UTC)),
    ("2026-12-10 20:30:00 +0530", dt.datetime(2026, 12, 10, 15, 0, tzinfo=UTC)),
    ("", None), (None, None), (1700000000, None),
])
def test_times_are_read_in_every_format_calendly_sends_and_given_in_utc(text, expected):
    assert parse_time(text) == expected


# --- the delivery's identity --------------------------------------------------------------------

def test_a_deliverys_identity_is_its_kind_and_invitee():
    body = calendly_invitee_delivery("invitee.canceled", event_uri=EVENT, invitee_uri=INVITEE, utm_content=None)
    assert delivery_identity(body) == (f"invitee.canceled:{INVITEE}", INVITEE)


def test_a_v1_deliverys_identity_uses_the_rebuilt_invitee_uri():
    assert delivery_identity(v1()) == (f"invitee.created:{INVITEE}", INVITEE)


@pytest.mark.parametrize("body", [None, {}, {"event": "invitee.created", "payload": {}}, {"payload": {"uri": 3}}])
def test_a_delivery_naming_no_invitee_has_no_identity(body):
    assert delivery_identity(body) == (None, None)


# --- forward compatibility: values and shapes Calendly adds later --------------------------------

def test_unknown_enum_values_are_recorded_and_read_as_far_as_the_known_fields_allow():
    body = v2_embedded("invitee.canceled")
    body["payload"]["status"] = "archived"
    body["payload"]["scheduled_event"]["status"] = "tentative"
    body["payload"]["cancellation"] = {"canceler_type": "admin", "reason": "team change"}
    notice = parse_invitee_notice(body)
    assert notice.status == "canceled" and notice.canceler_type is None and notice.event.status is None
    assert notice.cancel_reason == "team change"
    assert set(notice.unknown_values) == {"invitee.status=archived", "event.status=tentative",
                                          "cancellation.canceler_type=admin"}


def test_reschedule_links_and_the_event_are_taken_only_in_the_shape_of_calendly_uris():
    body = v2_2023()
    invitee = body["payload"]["uri"]
    body["payload"].update(old_invitee="javascript:alert(1)", new_invitee=invitee,
                           event={"uri": "https://api.calendly.com/scheduled_events/OTHER"})
    notice = parse_invitee_notice(body)
    assert notice.old_invitee is None and notice.new_invitee == invitee
    assert notice.event_uri == event_uri_of_invitee(invitee)  # the invitee's own event, whatever else is said
