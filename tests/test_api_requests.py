"""How the client API reads a request to create a booking: its body whatever Content-Type it came with,
each field's type named when it is wrong, and an Idempotency-Key that makes a repeat the same request."""

from __future__ import annotations

import json
import threading

import pytest
import requests

from models.tables import Booking, Transition

BODY = {"session_type": "coaching-hour", "email": "ada@example.com", "name": "Ada Lovelace"}


def create(client, body=None, key: str | None = None, **kwargs):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/v1/bookings", json=BODY if body is None else body, headers=headers, **kwargs)


# --- the body ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", [None, "text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded", "application/vnd.api+json"])
def test_a_json_object_is_read_whatever_content_type_it_was_sent_with(client, session_type, content_type):
    headers = {"Content-Type": content_type} if content_type else {}

    response = client.post("/v1/bookings", data=json.dumps(BODY), headers=headers)

    assert response.status_code == 201, response.get_data(as_text=True)
    assert Booking.select().count() == 1


def test_a_form_is_refused_by_its_type_saying_to_send_json(client, session_type):
    response = client.post("/v1/bookings", data=BODY)  # application/x-www-form-urlencoded, as a form posts it

    assert response.status_code == 415
    error = response.get_json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "application/json" in error["message"] and "application/x-www-form-urlencoded" in error["message"]
    assert Booking.select().count() == 0


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json"])
def test_a_body_that_is_not_json_and_not_declared_otherwise_is_invalid_json(client, session_type, content_type):
    headers = {"Content-Type": content_type} if content_type else {}

    response = client.post("/v1/bookings", data=b"session_type=coaching-hour", headers=headers)

    assert (response.status_code, response.get_json()["error"]["code"]) == (400, "invalid_json")


def test_an_action_reads_its_json_body_without_a_content_type(client, session_type):
    booking_id = create(client).get_json()["id"]

    response = client.post(f"/v1/bookings/{booking_id}/cancel", data=json.dumps({"reason": 7}))

    assert response.status_code == 422 and response.get_json()["error"]["field"] == "reason"


@pytest.mark.parametrize("value, says", [(123, "session_type must be a string, not a number"),
                                         (True, "session_type must be a string, not a boolean"),
                                         (["coaching-hour"], "session_type must be a string, not an array"),
                                         (None, "session_type is required"), ("  ", "session_type is required")])
def test_a_field_of_the_wrong_type_is_named_with_the_type_it_must_be(client, session_type, value, says):
    response = create(client, {**BODY, "session_type": value})

    assert response.status_code == 422
    assert response.get_json()["error"] == {"code": "invalid_field", "message": says, "field": "session_type"}


# --- Idempotency-Key --------------------------------------------------------------------------------

def test_a_creation_sent_again_with_its_idempotency_key_answers_the_same_booking(client, session_type):
    first = create(client, key="checkout-7f3a")
    again = create(client, key="checkout-7f3a")

    assert first.status_code == 201 and again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert Booking.select().count() == 1 and Transition.select().count() == 1


def test_a_repeat_answers_the_booking_as_it_is_now_even_once_bookings_are_paused(client, session_type):
    from models import flags

    first = create(client, key="k-1").get_json()
    flags.set_enabled(flags.BOOKINGS_OPEN, False)

    again = create(client, key="k-1")

    assert again.status_code == 201 and again.get_json()["id"] == first["id"]
    assert create(client, key="k-2").status_code == 503


def test_another_key_or_no_key_makes_another_booking(client, session_type):
    ids = {create(client, key="k-1").get_json()["id"], create(client, key="k-2").get_json()["id"],
           create(client).get_json()["id"], create(client).get_json()["id"]}

    assert len(ids) == 4


@pytest.mark.parametrize("change", [{"email": "grace@example.org"}, {"name": "Grace Hopper"},
                                    {"session_type": "long-call"}, {"currency": "eur"}])
def test_a_key_sent_with_another_request_is_refused_and_makes_nothing(client, sandbox, session_type, change):
    from support.catalogue import make_session_type

    make_session_type(sandbox.base, "long-call", price=20000)
    first = create(client, key="k-1").get_json()

    response = create(client, {**BODY, **change}, key="k-1")

    assert response.status_code == 409
    assert response.get_json()["error"]["code"] == "idempotency_key_reused"
    assert first["id"] not in response.get_data(as_text=True)
    assert [b.id for b in Booking.select()] == [first["id"]]


def test_the_same_key_sent_twice_at_once_makes_one_booking(live_server, session_type):
    answers, start = [], threading.Barrier(4)

    def send():
        start.wait()
        answers.append(requests.post(f"{live_server}/v1/bookings", json=BODY,
                                     headers={"Idempotency-Key": "double-click"}, timeout=10))

    senders = [threading.Thread(target=send) for _ in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()

    assert [answer.status_code for answer in answers] == [201] * 4
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert Booking.select().count() == 1
