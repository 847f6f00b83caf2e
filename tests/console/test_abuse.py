"""Attacks on the console: forged forms, signed-out requests, guessed passwords, planted sessions, and
the password's whereabouts. Each must be refused and change nothing."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from console import sessions
from models.db import utcnow
from models.states import State
from models.tables import AuditEntry, Booking, ConsoleSession, ConsoleUser, FeatureFlag, SignInAttempt
from support.console import CSRF, PASSWORD
from support.records import booking_in, fresh

pytestmark = pytest.mark.abuse

ACTIONS = ("/bookings/{id}/retry", "/bookings/{id}/force", "/bookings/{id}/cancel", "/deliveries/1/replay",
           "/flags/bookings_open", "/sign-out")
PAGES = ("/", "/bookings", "/bookings/{id}", "/deliveries", "/flags", "/session-types", "/audit")
FORM = {"reason": "because", "state": "BOOKING_CONFIRMED", "confirmed": "yes", "refund": "full", "value": "off"}


@pytest.fixture
def flagged(session_type):
    return booking_in(session_type, State.ERROR_PAYMENT, flagged_at=utcnow(), flag_reason="gave up")


def unchanged(booking: Booking) -> bool:
    now = fresh(booking)
    return ((now.state, now.version, now.flagged_at) == (booking.state, booking.version, booking.flagged_at)
            and not AuditEntry.select().exists() and not FeatureFlag.select().exists())


@pytest.mark.parametrize("token", [None, "", "forged-token-from-another-site"])
def test_a_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing(operator, flagged, token):
    for path in ACTIONS:
        data = FORM if token is None else {**FORM, "csrf_token": token}
        response = operator.client.post(path.format(id=flagged.id), data=data)
        assert response.status_code == 400, path
    assert unchanged(flagged)
    assert operator.get("/").status_code == 200  # still signed in: sign-out was refused too


def test_another_sessions_token_is_refused(operator, anonymous, flagged):
    other = anonymous.csrf()
    response = operator.client.post(f"/bookings/{flagged.id}/retry", data={**FORM, "csrf_token": other})
    assert response.status_code == 400 and unchanged(flagged)


def test_signed_out_every_page_redirects_to_sign_in(anonymous, flagged):
    for path in PAGES:
        response = anonymous.get(path.format(id=flagged.id))
        assert response.status_code == 302 and response.headers["Location"].startswith("/sign-in?next="), path


@pytest.mark.parametrize("with_token", [False, True])
def test_signed_out_every_action_is_forbidden_and_changes_nothing(anonymous, flagged, with_token):
    token = anonymous.csrf() if with_token else None
    for path in ACTIONS:
        data = FORM if token is None else {**FORM, "csrf_token": token}
        assert anonymous.client.post(path.format(id=flagged.id), data=data).status_code == 403, path
    assert unchanged(flagged)


def test_a_signed_out_session_cookie_opens_nothing_again(operator, flagged):
    stolen = operator.client.get_cookie("bookingflow_console").value
    operator.post("/sign-out", page="/")
    assert operator.get("/").status_code == 302
    operator.client.set_cookie("bookingflow_console", stolen)
    assert operator.get("/").status_code == 302  # the session ended in the database, whatever the cookie says


def test_sign_in_attempts_beyond_the_limit_are_refused_even_with_the_right_password(anonymous, operator_account):
    for _ in range(sessions.FAILURES_PER_NAME):
        assert anonymous.sign_in("ada", "not the password").status_code == 401
    refused = anonymous.sign_in("ada", PASSWORD)
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.get_data(as_text=True)
    assert anonymous.get("/").status_code == 302
    # Once the failures are older than the window, the right password works again.
    for attempt in SignInAttempt.select():
        attempt.at -= sessions.WINDOW + dt.timedelta(seconds=1)
        attempt.save()
    assert anonymous.sign_in("ada", PASSWORD).status_code == 302
    assert anonymous.get("/").status_code == 200


def test_sign_in_attempts_are_limited_per_client_address_across_names(console_app, operator_account):
    from support.console import Operator

    guesser = Operator(console_app.test_client(), console_app)
    for number in range(sessions.FAILURES_PER_ADDRESS):
        guesser.sign_in(f"name{number}", "guess", REMOTE_ADDR="203.0.113.9")
    assert guesser.sign_in("ada", PASSWORD, REMOTE_ADDR="203.0.113.9").status_code == 429
    elsewhere = Operator(console_app.test_client(), console_app)
    assert elsewhere.sign_in("ada", PASSWORD, REMOTE_ADDR="198.51.100.7").status_code == 302


def test_the_limits_hold_across_console_processes(console_app, anonymous, operator_account, service_settings):
    """Counted in the database: a second app (another process's) sees the first one's failures."""
    from console.web import build
    from support.console import Operator

    for _ in range(sessions.FAILURES_PER_NAME):
        anonymous.sign_in("ada", "wrong")
    other = build(service_settings.replace(console_secret_key=console_app.config["SECRET_KEY"]))
    assert Operator(other.test_client(), other).sign_in("ada", PASSWORD).status_code == 429


def test_signing_in_gives_a_new_session_a_planted_one_cannot_follow(anonymous, operator_account):
    anonymous.csrf()
    before = anonymous.session()
    assert "token" not in before
    planted = anonymous.client.get_cookie("bookingflow_console").value
    assert anonymous.sign_in("ada", PASSWORD).status_code == 302
    after = anonymous.session()
    assert after["token"] and after["csrf_token"] != before["csrf_token"]
    # The cookie the browser held before signing in (one an attacker could have planted) opens nothing.
    anonymous.client.set_cookie("bookingflow_console", planted)
    assert anonymous.get("/").status_code == 302
    # And every sign-in makes a session of its own.
    assert anonymous.sign_in("ada", PASSWORD).status_code == 302
    assert anonymous.session()["token"] != after["token"]
    assert ConsoleSession.select().count() == 2


def test_the_password_is_never_stored_or_logged(anonymous, operator_account, caplog):
    with caplog.at_level(logging.DEBUG):
        anonymous.sign_in("ada", "a wrong password 4711")
        anonymous.sign_in("ada", PASSWORD)
    stored = ConsoleUser.get(ConsoleUser.name == "ada").password_hash
    assert stored.startswith("scrypt:") and PASSWORD not in stored
    rows = [str(row.__data__) for model in (ConsoleUser, ConsoleSession, SignInAttempt) for row in model.select()]
    for secret in (PASSWORD, "a wrong password 4711"):
        assert secret not in caplog.text and not any(secret in row for row in rows)
    assert "ada" in caplog.text  # the sign-ins are logged, by name


def test_the_session_cookie_is_http_only_lax_and_secure_except_on_loopback_http(console_app, operator_account):
    for base, secure in (("https://console.example.com", True), ("http://127.0.0.1:5050", False)):
        client = console_app.test_client()
        token = CSRF.search(client.get("/sign-in", base_url=base).get_data(as_text=True)).group(1)
        response = client.post("/sign-in", base_url=base, data={"name": "ada", "password": PASSWORD, "csrf_token": token})
        cookie = response.headers["Set-Cookie"]
        assert response.status_code == 302 and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert ("Secure" in cookie) is secure, base


def test_a_sign_in_never_sends_the_browser_to_another_host(anonymous, operator_account):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        response = anonymous.client.post("/sign-in", data={"name": "ada", "password": PASSWORD, "next": target,
                                                           "csrf_token": anonymous.csrf()})
        assert response.headers["Location"] == "/", target
        anonymous.post("/sign-out")
