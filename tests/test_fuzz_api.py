"""Hostile requests to the client API: random bodies, content types, path ids, headers and methods.
Never a 5xx; a refusal changes nothing; no answer carries a traceback or a secret; the status of a
booking never shows its e-mail address unmasked.

The in-process app takes many examples (FUZZ_EXAMPLES, per property); the real processes take a few.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
import requests
from hypothesis import assume, example, given
from hypothesis import strategies as st

from support.fuzzing import (
    E2E_EXAMPLES, EARLY_DAILY_RUN, content_types, deeply_nested, fuzz_settings, header_text, hostile_bodies, json_values,
    raw_header_values, send_and_check, send_over_http, sized, wait_quiet,
)

pytestmark = pytest.mark.fuzz

ACTIONS = ("", "/scheduled", "/cancel", "/retry-payment", "/reschedule")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "PROPFIND")
EVENT = "https://api.calendly.com/scheduled_events/EVT1"

hostile_ids = st.one_of(
    st.text(max_size=80),
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=100),
    st.sampled_from(["..", "../..", "../../etc/passwd", "\x00", "a" * 32 + "\x00", "a" * 32 + "\n", "a" * 10_000,
                     "%2e%2e", "\u202e" * 20, "\ud800", "' OR 1=1 --", "a" * 16, "a" * 64, "a" * 65]),
)
# Fields the routes read, with values of every type.
field_bodies = st.dictionaries(
    st.sampled_from(["session_type", "email", "name", "event_uri", "invitee_uri", "reason"]) | st.text(max_size=10),
    json_values | st.sampled_from(["coaching-hour", "a@example.com", EVENT, EVENT + "/invitees/INV1", "x" * 600,
                                   "\x00", "\ud800", " ", "a\x00@example.com"]),
    max_size=6,
).map(lambda value: json.dumps(value).encode())
api_bodies = st.one_of(hostile_bodies, field_bodies, st.just(b""))
api_headers = st.dictionaries(
    st.sampled_from(["Idempotency-Key", "If-None-Match", "X-Request-ID", "Accept", "Content-Encoding", "Origin",
                     "X-Forwarded-For", "Range", "If-Match"]),
    st.one_of(header_text, st.sampled_from(["*", '"v1"', 'W/"v1", "v2"', "\x00", "a" * 5000, '"'])),
    max_size=4,
)


def booking_path(booking_id: str, action: str) -> str:
    # Quoted as a browser would, except the dots and slashes that walk the path.
    return f"/v1/bookings/{quote(booking_id, safe='/.', errors='surrogatepass')}{action}"


@pytest.fixture
def booking_id(client, session_type):
    response = client.post("/v1/bookings", json={"session_type": "coaching-hour", "email": "ada@example.com",
                                                  "name": "Ada Lovelace"})
    assert response.status_code == 201
    return response.get_json()["id"]


def assert_masked(response, email: str) -> None:
    """A booking's status never shows its e-mail address as given."""
    if response.status_code == 200 and isinstance(response.get_json(silent=True), dict):  # HEAD has no body
        text = response.get_data(as_text=True)
        assert email not in text and json.dumps(email) not in text
        assert email not in json.dumps(response.get_json(), ensure_ascii=False)


# --- the in-process app: many examples -------------------------------------------------------------

@fuzz_settings()
@given(method=st.sampled_from(METHODS), path_id=st.one_of(st.none(), hostile_ids), action=st.sampled_from(ACTIONS),
       body=api_bodies, content_type=content_types, headers=api_headers)
# Python's json gives up on deep nesting with RecursionError: that was a 500.
@example(method="POST", path_id=None, action="/cancel", body=deeply_nested(20_000, "array"),
         content_type="application/json", headers={})
@example(method="POST", path_id=None, action="/scheduled", body=deeply_nested(20_000, "object"),
         content_type="application/json", headers={})
# A NUL in the Idempotency-Key went into the stored event id: PostgreSQL refuses it, a 500.
@example(method="POST", path_id=None, action="/cancel", body=b"{}", content_type="application/json",
         headers={"Idempotency-Key": "a\x00b"})
@example(method="POST", path_id="a" * 32 + "\n", action="/cancel", body=b"{}", content_type="application/json",
         headers={})
def test_a_hostile_request_on_a_booking_is_never_a_5xx_and_a_refusal_changes_nothing(
        client, broker, booking_id, method, path_id, action, body, content_type, headers):
    """`path_id` None is the booking that exists."""
    path = booking_path(booking_id if path_id is None else path_id, action)
    response = send_and_check(client, broker, path, body, {"Content-Type": content_type, **headers}, method=method)
    assert_masked(response, "ada@example.com")
    if path_id is not None and 200 <= response.status_code < 300 and method not in ("OPTIONS", "HEAD"):
        assert path_id == booking_id, f"{method} {path!r} answered {response.status_code}"


@fuzz_settings()
@given(method=st.sampled_from(METHODS), path=st.sampled_from(["/v1/bookings", "/v1/session-types", "/v1/bookings/",
                                                             "/v1", "/healthz", "/readyz", "/metrics", "/openapi.json",
                                                             "/v1/bookings//cancel", "/%00", "/v1/bookings?id=1"]),
       body=api_bodies, content_type=content_types, headers=api_headers)
@example(method="POST", path="/v1/bookings", body=deeply_nested(20_000, "object"), content_type="application/json",
         headers={})
@example(method="POST", path="/v1/bookings", body=sized(300 * 1024), content_type="application/json", headers={})
def test_a_hostile_request_to_the_other_routes_is_never_a_5xx_and_a_refusal_changes_nothing(
        client, broker, session_type, method, path, body, content_type, headers):
    response = send_and_check(client, broker, path, body, {"Content-Type": content_type, **headers}, method=method)
    if len(body) > 256 * 1024 and method == "POST" and path == "/v1/bookings":
        assert response.status_code in (400, 413)  # 400 when the content type says it is not JSON


emails = st.builds(
    "{}@{}.{}".format,
    st.text("abcdefghijklmnopqrstuvwxyz0123456789._+-\u00e9\u4e2d", min_size=2, max_size=64),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-\u00fc", min_size=1, max_size=30),
    st.sampled_from(["com", "org", "example", "museum"]),
)


@fuzz_settings()
@given(email=emails, name=st.text(min_size=1, max_size=200), etag=st.one_of(st.none(), header_text, st.just("*")),
       request_id=st.one_of(st.none(), header_text))
@example(email="ab@example.com", name="A", etag="*", request_id=None)
def test_the_status_of_a_booking_never_shows_its_email_unmasked(client, broker, session_type, email, name, etag,
                                                                request_id):
    created = client.post("/v1/bookings", json={"session_type": "coaching-hour", "email": email, "name": name})
    assert created.status_code < 500
    assume(created.status_code == 201)
    assert email not in created.get_data(as_text=True).replace(quote(email), "")  # only in the prefilled link
    headers = {name: value for name, value in (("If-None-Match", etag), ("X-Request-ID", request_id))
               if value is not None}
    response = send_and_check(client, broker, f"/v1/bookings/{created.get_json()['id']}", b"", headers, method="GET")
    assert response.status_code in (200, 304)
    assert_masked(response, email)
    if response.status_code == 200:
        assert response.get_json()["email"].endswith(email.rpartition("@")[2])


# --- the real processes: fewer examples, over HTTP ---------------------------------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from support.realstack import running_service

    with running_service(tmp_path_factory.mktemp("fuzz-api"), extra_env=EARLY_DAILY_RUN) as running:
        wait_quiet(running)
        response = requests.post(f"{running.base}/v1/bookings", timeout=60, json={
            "session_type": "strategy-session", "email": "grace@example.com", "name": "Grace Hopper"})
        assert response.status_code == 201, response.text
        running.booking_id = response.json()["id"]
        yield running


@pytest.mark.e2e
@fuzz_settings(E2E_EXAMPLES)
@given(method=st.sampled_from(METHODS), path_id=hostile_ids, action=st.sampled_from(ACTIONS),
       body=api_bodies, content_type=st.one_of(content_types.map(str.encode), raw_header_values),
       headers=st.dictionaries(st.sampled_from(["Idempotency-Key", "If-None-Match", "X-Request-ID"]),
                               raw_header_values, max_size=3))
@example(method="POST", path_id="a" * 10_000, action="/cancel", body=b"{}", content_type=b"application/json",
         headers={"Idempotency-Key": b"a\x00b"})
def test_hostile_requests_to_the_real_processes_are_refused_cleanly(stack, method, path_id, action, body, content_type,
                                                                   headers):
    """Only ids that are not the booking's: what the stack accepts would move it while we watch."""
    assume(path_id != stack.booking_id)
    path = booking_path(path_id, action)
    response = send_over_http(stack, path, body, {"Content-Type": content_type, **headers}, method=method)
    assume(response is not None)
    assert response.status_code >= 400 or method == "OPTIONS", f"{method} {path!r}: {response.status_code}"


@pytest.mark.e2e
@fuzz_settings(E2E_EXAMPLES)
@given(method=st.sampled_from(["GET", "HEAD"]), etag=raw_header_values, request_id=raw_header_values)
def test_the_real_processes_show_a_booking_masked_whatever_the_headers(stack, method, etag, request_id):
    response = send_over_http(stack, f"/v1/bookings/{stack.booking_id}", b"", method=method,
                              headers={"If-None-Match": etag, "X-Request-ID": request_id})
    assume(response is not None)
    assert response.status_code in (200, 304, 400)
    assert "grace@example.com" not in response.text
