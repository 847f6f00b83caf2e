"""The client API: session types, creating a booking, its status, and the client's scheduling report."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from support.catalogue import make_session_type
from models.tables import Booking

EVENT = "https://api.calendly.com/scheduled_events/EVT1"
INVITEE = EVENT + "/invitees/INV1"


def create_booking(client, slug="coaching-hour", email="ada@example.com", name="Ada Lovelace"):
    return client.post("/v1/bookings", json={"session_type": slug, "email": email, "name": name})


def scheduled_in_calendly(sandbox, scheduling_url: str) -> dict:
    """A slot scheduled in the sandbox's Calendly with the booking's link; its webhook is held back
    and dropped, so that only the client's report tells bookingflow of it."""
    import requests

    sandbox.hold_deliveries("calendly", True)
    try:
        response = requests.post(f"{sandbox.base}/calendly/_sandbox/schedule", json={"scheduling_url": scheduling_url},
                                 timeout=10)
        assert response.status_code == 201, response.text
        return response.json()
    finally:
        sandbox.drop_pending_deliveries("calendly")
        sandbox.hold_deliveries("calendly", False)


def test_session_types_on_offer_are_listed_with_their_price_in_minor_units(client, sandbox, session_type):
    make_session_type(sandbox.base, "retired", price=100)
    from models.tables import SessionType

    SessionType.update(active=False).where(SessionType.slug == "retired").execute()
    response = client.get("/v1/session-types")
    assert response.status_code == 200
    assert response.get_json() == [
        {"slug": "coaching-hour", "name": "Coaching Hour", "duration_minutes": 60, "price": 12000, "currency": "usd",
         "prices": {"usd": 12000}, "promotion_codes": False, "automatic_tax": False, "invoice": False}
    ]


def test_a_new_booking_starts_scheduling_with_a_prefilled_calendly_link(client, session_type):
    response = create_booking(client)
    assert response.status_code == 201
    body = response.get_json()
    assert body["state"] == "CALENDLY_SCHEDULING"
    assert len(body["id"]) >= 32  # at least 128 random bits, url-safe
    link = urlsplit(body["scheduling_url"])
    assert link.path.endswith("/calendly/book/coaching-hour")
    assert parse_qs(link.query) == {"utm_content": [body["id"]], "name": ["Ada Lovelace"], "email": ["ada@example.com"]}
    assert body["status_url"].endswith(f"/v1/bookings/{body['id']}")
    booking = Booking.get_by_id(body["id"])
    assert (booking.amount, booking.currency) == (12000, "usd")


def test_booking_ids_are_unguessable(client, session_type):
    ids = {create_booking(client).get_json()["id"] for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize("payload, field", [
    ({"email": "a@example.com", "name": "A"}, "session_type"),
    ({"session_type": "coaching-hour", "name": "A"}, "email"),
    ({"session_type": "coaching-hour", "email": "not-an-email", "name": "A"}, "email"),
    ({"session_type": "coaching-hour", "email": "a@example.com", "name": ""}, "name"),
    ({"session_type": "coaching-hour", "email": "a@example.com", "name": "x" * 201}, "name"),
    ({"session_type": "no-such-type", "email": "a@example.com", "name": "A"}, "session_type"),
    ({"session_type": 42, "email": "a@example.com", "name": "A"}, "session_type"),
])
def test_a_booking_with_bad_fields_is_refused_and_nothing_is_created(client, session_type, payload, field):
    response = client.post("/v1/bookings", json=payload)
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == field
    assert Booking.select().count() == 0


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b""])
def test_a_booking_body_that_is_not_a_json_object_is_refused(client, session_type, data):
    response = client.post("/v1/bookings", data=data, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"


def test_the_status_shows_the_booking_with_a_masked_email_and_its_history(client, session_type):
    booking_id = create_booking(client).get_json()["id"]
    response = client.get(f"/v1/bookings/{booking_id}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["email"] == "a***@example.com"
    assert "ada@example.com" not in response.get_data(as_text=True)
    assert body["state"] == "CALENDLY_SCHEDULING"
    assert (body["amount"], body["currency"], body["amount_refunded"]) == (12000, "usd", 0)
    assert body["checkout_url"] is None and body["scheduled_start"] is None
    assert [(h["state"], h["trigger"]) for h in body["history"]] == [("CALENDLY_SCHEDULING", "startCalendlyScheduling")]
    assert body["updated_at"].endswith("Z")


def test_an_unchanged_status_answers_304_to_its_etag(client, session_type):
    booking_id = create_booking(client).get_json()["id"]
    first = client.get(f"/v1/bookings/{booking_id}")
    etag = first.headers["ETag"]
    again = client.get(f"/v1/bookings/{booking_id}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["ETag"] == etag and again.get_data() == b""


def test_a_changed_booking_gets_a_new_etag(client, session_type):
    from models.states import Trigger, apply

    booking_id = create_booking(client).get_json()["id"]
    etag = client.get(f"/v1/bookings/{booking_id}").headers["ETag"]
    apply(booking_id, Trigger.onCalendlyEventCreated, cause="test", calendly_event_uri=EVENT, calendly_invitee_uri=INVITEE)
    response = client.get(f"/v1/bookings/{booking_id}", headers={"If-None-Match": etag})
    assert response.status_code == 200 and response.headers["ETag"] != etag
    assert response.get_json()["state"] == "CALENDLY_SCHEDULED"


def test_a_status_body_agrees_with_its_etag_while_transitions_land(client, session_type):
    # Every write bumps the version and adds one history row in one transaction, so the version less
    # the history's length never changes. A body read across a commit (the booking row before it,
    # the history after) would break that, or would be refused as "changing too fast".
    import threading

    from models.db import database, write_transaction
    from models.tables import Transition

    booking_id = create_booking(client).get_json()["id"]
    writes, done = 300, threading.Event()

    def write_transitions():
        with database.connection_context():
            for n in range(writes):
                state = ("CALENDLY_SCHEDULED", "CALENDLY_SCHEDULING")[n % 2]
                with write_transaction():
                    Transition.insert(booking=booking_id, state=state, trigger="operator", cause=f"write {n}").execute()
                    Booking.update(state=state, version=Booking.version + 1).where(Booking.id == booking_id).execute()
        done.set()

    writer = threading.Thread(target=write_transitions)
    writer.start()
    offsets, polls = set(), 0
    try:
        while not done.is_set() or polls == 0:
            response = client.get(f"/v1/bookings/{booking_id}")
            assert response.status_code == 200, response.get_json()
            body, polls = response.get_json(), polls + 1
            assert body["history"][-1]["state"] == body["state"]
            offsets.add(int(response.headers["ETag"].strip('"v')) - len(body["history"]))
    finally:
        writer.join()
    assert len(offsets) == 1, offsets
    assert polls > 10


@pytest.mark.parametrize("booking_id", ["unknown", "x" * 40, "../../etc/passwd"])
def test_an_unknown_booking_is_not_found(client, app, booking_id):
    response = client.get(f"/v1/bookings/{booking_id}")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_the_clients_scheduling_report_is_accepted_and_moves_the_booking(client, sandbox, session_type, broker, worker):
    created = create_booking(client).get_json()
    slot = scheduled_in_calendly(sandbox, created["scheduling_url"])
    response = client.post(f"/v1/bookings/{created['id']}/scheduled", json=slot)
    assert response.status_code == 202
    broker.join("default")
    worker.join()
    booking = Booking.get_by_id(created["id"])
    assert (booking.state, booking.calendly_event_uri, booking.calendly_invitee_uri) == (
        "CALENDLY_SCHEDULED", slot["event_uri"], slot["invitee_uri"])


@pytest.mark.parametrize("payload", [
    {},
    {"event_uri": "https://evil.example/whatever", "invitee_uri": INVITEE},
    {"event_uri": EVENT, "invitee_uri": "https://api.calendly.com/scheduled_events/OTHER/invitees/INV1"},
    {"event_uri": EVENT, "invitee_uri": 7},
])
def test_a_scheduling_report_with_bad_uris_is_refused(client, session_type, payload):
    booking_id = create_booking(client).get_json()["id"]
    response = client.post(f"/v1/bookings/{booking_id}/scheduled", json=payload)
    assert response.status_code == 422
    assert Booking.get_by_id(booking_id).state == "CALENDLY_SCHEDULING"


def test_a_scheduling_report_for_an_abandoned_booking_is_a_conflict(client, session_type):
    from models.states import Trigger, apply

    booking_id = create_booking(client).get_json()["id"]
    apply(booking_id, Trigger.cancelBookingProcess, cause="test")
    response = client.post(f"/v1/bookings/{booking_id}/scheduled", json={"event_uri": EVENT, "invitee_uri": INVITEE})
    assert response.status_code == 409
    assert response.get_json()["error"]["state"] == "IDLE"


def test_a_scheduling_report_sent_again_with_its_key_after_the_booking_was_abandoned_is_still_accepted(
        client, sandbox, session_type):
    from models.states import Trigger, apply

    created = create_booking(client).get_json()
    booking_id = created["id"]
    report = scheduled_in_calendly(sandbox, created["scheduling_url"])
    key = {"Idempotency-Key": "report-1"}
    assert client.post(f"/v1/bookings/{booking_id}/scheduled", json=report, headers=key).status_code == 202
    apply(booking_id, Trigger.cancelBookingProcess, cause="test")  # abandoned before the client heard back
    again = client.post(f"/v1/bookings/{booking_id}/scheduled", json=report, headers=key)
    assert again.status_code == 202 and again.get_json()["state"] == "IDLE"
    fresh = client.post(f"/v1/bookings/{booking_id}/scheduled", json=report, headers={"Idempotency-Key": "report-2"})
    assert fresh.status_code == 409


def test_health_and_readiness(client, app):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "broker": "ok"}


def test_an_unknown_route_answers_a_json_error_not_a_page(client, app):
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_booking_ids_never_start_with_a_dash_so_command_lines_can_take_them():
    from models.tables import new_booking_id

    assert not any(new_booking_id().startswith("-") for _ in range(2000))
