"""Privacy: no client e-mail, name, token or secret in any process's logs (the masked e-mail is fine),
only the masked e-mail in what the client API answers, and no card data anywhere we store things.

The logs are read from the real processes (web, worker, scheduler) after bookings took many paths
with a distinctive client and after refused requests that carried that client's data and our secrets;
the formatters are checked in process as well. The schema and the stored values are checked both on
the suite's database and on the real stack's, after its `db upgrade`."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from support.suite import STRIPE_WEBHOOK_SECRET
from support.waiting import wait_until
from support.flows import Client, hours_from_now
from support.providers import (calendly_invitee_delivery, calendly_signature, checkout_session, encode, fixture, luhn_valid,
                       stripe_event, stripe_signature)

pytestmark = pytest.mark.privacy

EMAIL = "grace.hopper+privacy@example.org"
MASKED_EMAIL = "g***@example.org"
NAME = "Grace Brewster Hopper"
POLICY = {"full_before_hours": 48, "partial_before_hours": 24, "partial_percent": 50}
SESSION_TYPES = [{"slug": "short-call", "price": 5000, "refund_policy": POLICY},
                 {"slug": "long-call", "price": 20000, "refund_policy": POLICY}]

# Column names that could only hold card data: the schema must have no place for it.
CARD_COLUMN = re.compile(r"card|(^|_)pan($|_)|cvc|cvv|cid|exp(iry|iration)?_?(month|year|date)|track_?[12]?_?data|"
                         r"(^|_)pin($|_)|last_?4|fingerprint|magstripe", re.IGNORECASE)
# 13 to 19 digits, maybe grouped by single spaces or dashes, starting like the card networks' numbers
# (2 to 6) and standing alone: not the tail of a hex digest, nor a timestamp in milliseconds (1...).
CARD_NUMBER = re.compile(r"(?<![0-9A-Za-z])[2-6](?:[ -]?[0-9]){12,18}(?![0-9A-Za-z])")
# What a payment card's details look like in a Stripe payload.
CARD_DETAIL_KEYS = ("exp_month", "exp_year", "last4", "fingerprint", "dynamic_last4", "iin")


def card_numbers_in(text: str) -> list[str]:
    found = (re.sub(r"[ -]", "", match) for match in CARD_NUMBER.findall(text))
    return [digits for digits in found if 13 <= len(digits) <= 19 and luhn_valid(digits)]


def card_columns(columns: list[str]) -> list[str]:
    return [column for column in columns if CARD_COLUMN.search(column)]


# --- the real processes ---------------------------------------------------------------------------

@dataclass
class Run:
    """What a privacy run left behind: every client API answer, the whole log of the stack, every
    stored text value, and the values that must appear in none of them."""

    answers: list[tuple[str, int, object]] = field(default_factory=list)
    log: str = ""
    columns: dict[str, list[str]] = field(default_factory=dict)
    stored: list[tuple[str, str, str]] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    signatures: list[str] = field(default_factory=list)
    checkout_urls: set[str] = field(default_factory=set)
    charge_payloads: list[dict] = field(default_factory=list)


class RecordingClient(Client):
    """The frontend, keeping every answer of our client API it was given."""

    def __init__(self, base: str, sandbox, run: Run):
        super().__init__(base, sandbox)
        self.http.hooks["response"].append(self._keep)
        self.run = run

    def _keep(self, response, *args, **kwargs):
        if response.url.startswith(self.base + "/v1/"):
            try:
                body = response.json()
            except ValueError:
                body = response.text
            self.run.answers.append((f"{response.request.method} {urlsplit(response.url).path}", response.status_code, body))
            for url in _checkout_urls(body):
                self.run.checkout_urls.add(url)

    def book(self, slug: str, **schedule) -> dict:
        booking = self.create_booking(slug, email=EMAIL, name=NAME)
        slot = self.schedule_in_calendly(booking["scheduling_url"], **schedule)
        assert self.report_scheduled(booking["id"], slot).status_code == 202
        return self.wait_for_state(booking["id"], "PAYMENT_PROCESSING", timeout=60)

    def act(self, booking_id: str, action: str, body: dict | None = None) -> requests.Response:
        return self.http.post(f"{self.base}/v1/bookings/{booking_id}/{action}", json=body or {}, timeout=30)


def _checkout_urls(body) -> list[str]:
    if isinstance(body, dict):
        return [body["checkout_url"]] if body.get("checkout_url") else []
    return []


def drive_every_path(frontend: RecordingClient, sandbox) -> None:
    # Paid, then cancelled by the client three days ahead: refunded in full by the policy.
    paid = frontend.book("short-call", start_time=hours_from_now(72))
    frontend.pay(paid["checkout_url"])
    frontend.wait_for_state(paid["id"], "BOOKING_CONFIRMED", timeout=60)
    reason = f"{NAME} cannot come; write to {EMAIL}"
    assert frontend.act(paid["id"], "cancel", {"reason": reason}).status_code == 202
    frontend.wait_for_state(paid["id"], "REFUND_COMPLETED", timeout=60)

    # The payment fails, is retried and paid; Calendly moves the slot; the client moves to a dearer type.
    retried = frontend.book("short-call", start_time=hours_from_now(96))
    frontend.pay(retried["checkout_url"], outcome="delayed")
    frontend.settle(retried["checkout_url"], "failed")
    frontend.wait_for_state(retried["id"], "PAYMENT_FAILED", timeout=60)
    assert frontend.act(retried["id"], "retry-payment").status_code == 202
    again = frontend.wait_for_state(retried["id"], "PAYMENT_PROCESSING", timeout=60)
    frontend.pay(again["checkout_url"])
    frontend.wait_for_state(retried["id"], "BOOKING_CONFIRMED", timeout=60)
    invitee = _invitee_of(sandbox, retried["id"])
    moved = requests.post(f"{sandbox.base}/calendly/_sandbox/reschedule", timeout=10, json={
        "invitee_uri": invitee, "start_time": hours_from_now(120), "order": "canceled_first"})
    assert moved.ok, moved.text
    def confirmed_again(view: dict) -> bool:  # one view: two polls could each see a different moment
        return view["state"] == "BOOKING_CONFIRMED" and "BOOKING_RESCHEDULED" in [row["state"] for row in view["history"]]

    wait_until(lambda: confirmed_again(frontend.status(retried["id"])), timeout=60,
               message="the Calendly reschedule confirmed")
    answer = frontend.act(retried["id"], "reschedule", {"session_type": "long-call"})
    assert answer.status_code == 202, answer.text
    frontend.schedule_in_calendly(answer.json()["scheduling_url"], start_time=hours_from_now(144))
    owing = frontend.wait_for_state(retried["id"], "PAYMENT_PROCESSING", timeout=60)
    frontend.pay(owing["checkout_url"])
    frontend.wait_for_state(retried["id"], "BOOKING_CONFIRMED", timeout=60)

    # Cancelled by the invitee in Calendly after confirmation: refunded by the policy.
    in_calendly = frontend.book("short-call", start_time=hours_from_now(72))
    frontend.pay(in_calendly["checkout_url"])
    frontend.wait_for_state(in_calendly["id"], "BOOKING_CONFIRMED", timeout=60)
    cancelled = requests.post(f"{sandbox.base}/calendly/_sandbox/cancel", timeout=10, json={
        "invitee_uri": _invitee_of(sandbox, in_calendly["id"]), "canceler_type": "invitee"})
    assert cancelled.status_code == 200, cancelled.text
    frontend.wait_for_state(in_calendly["id"], "REFUND_COMPLETED", timeout=60)

    # Stripe refuses our key while a checkout is created, Calendly our token while a slot is released:
    # the jobs fail and are retried, and their failures are logged.
    refused = lambda provider: [r for r in sandbox.api_requests(provider) if r["status"] == 401]  # noqa: E731
    key, token = sandbox.config.stripe_secret_key, sandbox.config.calendly_api_token
    try:
        sandbox.config.stripe_secret_key = "sk_test_" + secrets.token_hex(12)
        before = len(refused("stripe"))
        stuck = frontend.create_booking("short-call", email=EMAIL, name=NAME)
        frontend.schedule_in_calendly(stuck["scheduling_url"])
        wait_until(lambda: len(refused("stripe")) > before, timeout=60, message="the checkout creation refused")
    finally:
        sandbox.config.stripe_secret_key = key
    frontend.wait_for_state(stuck["id"], "PAYMENT_PROCESSING", timeout=90)
    released = frontend.book("short-call", start_time=hours_from_now(72))
    frontend.pay(released["checkout_url"])
    frontend.wait_for_state(released["id"], "BOOKING_CONFIRMED", timeout=60)
    try:
        sandbox.config.calendly_api_token = secrets.token_hex(16)
        before = len(refused("calendly"))
        assert frontend.act(released["id"], "cancel", {"reason": "plans changed"}).status_code == 202
        wait_until(lambda: len(refused("calendly")) > before, timeout=60, message="the slot's release refused")
    finally:
        sandbox.config.calendly_api_token = token
    frontend.wait_for_state(released["id"], "REFUND_COMPLETED", timeout=120)

    # Abandoned before paying.
    abandoned = frontend.book("short-call")
    assert frontend.act(abandoned["id"], "cancel", {"reason": "changed my mind"}).status_code == 202
    frontend.wait_for_state(abandoned["id"], "IDLE", timeout=60)


def _invitee_of(sandbox, booking_id: str) -> str:
    """The active Calendly invitee the booking's scheduling link created (utm_content names it)."""
    invitees = [i for i in sandbox.objects("invitee")
                if (i.get("tracking") or {}).get("utm_content") == booking_id and i.get("status") == "active"]
    assert invitees, f"no active invitee for booking {booking_id}"
    return invitees[-1]["uri"]


def send_refused_and_unusual_requests(base: str, env: dict, run: Run) -> None:
    """Requests that carry the client's data and our secrets where they do not belong: refused ones, and
    correctly signed deliveries that no booking matches or that fail validation."""
    stripe_secrets = env["STRIPE_WEBHOOK_SECRET"].split(",")
    signing_key = env["CALENDLY_WEBHOOK_SIGNING_KEY"].split(",")[0]
    leaky = {"email": EMAIL, "name": NAME, "note": f"{env['STRIPE_SECRET_KEY']} {env['CALENDLY_API_TOKEN']} {signing_key}"}
    nosy = {"Authorization": f"Bearer {env['STRIPE_SECRET_KEY']}", "X-Request-ID": EMAIL,
            "X-Forwarded-For": EMAIL, "Cookie": f"token={env['CALENDLY_API_TOKEN']}"}

    def post(path: str, expected: int, data: bytes, headers: dict | None = None) -> None:
        response = requests.post(base + path, data=data, timeout=30,
                                 headers={"Content-Type": "application/json", **nosy, **(headers or {})})
        assert response.status_code == expected, f"{path}: {response.status_code} {response.text}"
        body = response.json()
        run.answers.append((f"POST {path}", response.status_code, body))

    # The client API refuses, each for its own reason.
    post("/v1/bookings", 422, encode({"session_type": "no-such-type", **leaky}))
    post("/v1/bookings", 422, encode({"session_type": "short-call", "email": EMAIL.replace(".org", ""), "name": NAME}))
    post("/v1/bookings", 422, encode({"session_type": "short-call", "email": EMAIL, "name": NAME * 20}))
    post("/v1/bookings", 400, f"{{email: {EMAIL}, name: {NAME}".encode())
    post("/v1/bookings/not-a-booking-" + secrets.token_hex(8) + "/cancel", 404, encode({"reason": EMAIL}))
    post("/v1/bookings", 413, encode({"session_type": "short-call", **leaky, "padding": EMAIL * 9000}))

    # Webhooks: signed with a wrong secret, signed too long ago, not JSON, too large.
    body = encode(stripe_event("checkout.session.completed", {**checkout_session("z" * 32, 5000), "customer_email": EMAIL,
                                                              "customer_details": {"email": EMAIL, "name": NAME}, **leaky}))
    for signature in (stripe_signature(body, "whsec_" + secrets.token_hex(16)),
                      stripe_signature(body, stripe_secrets[-1], timestamp=1_600_000_000)):
        run.signatures.append(signature)
        post("/webhooks/stripe", 400, body, {"Stripe-Signature": signature})
    not_json = f"email={EMAIL}&name={NAME}".encode()
    run.signatures.append(stripe_signature(not_json, stripe_secrets[-1]))
    post("/webhooks/stripe", 400, not_json, {"Stripe-Signature": run.signatures[-1]})
    post("/webhooks/stripe", 413, body * 200, {"Stripe-Signature": stripe_signature(body * 200, stripe_secrets[-1])})
    invitee = calendly_invitee_delivery(
        "invitee.created", event_uri=f"https://api.calendly.com/scheduled_events/{secrets.token_hex(8)}",
        invitee_uri=None, utm_content="unknown-booking-" + secrets.token_hex(8))
    invitee["payload"].update(email=EMAIL, name=NAME, first_name="Grace", last_name="Hopper")
    invitee["payload"]["uri"] = invitee["payload"]["event"] + "/invitees/" + secrets.token_hex(8)
    calendly_body = encode(invitee)
    for signature in (calendly_signature(calendly_body, secrets.token_hex(16)),
                      calendly_signature(calendly_body, signing_key, timestamp=1_600_000_000)):
        run.signatures.append(signature)
        post("/webhooks/calendly", 400, calendly_body, {"Calendly-Webhook-Signature": signature,
                                                        "Authorization": f"Bearer {env['CALENDLY_API_TOKEN']}"})

    # Correctly signed: accepted and stored, then no booking matches, or a field fails validation.
    run.signatures.append(calendly_signature(calendly_body, signing_key))
    post("/webhooks/calendly", 200, calendly_body, {"Calendly-Webhook-Signature": run.signatures[-1]})
    broken = stripe_event("checkout.session.completed", {**checkout_session("y" * 32, 5000), "amount_total": EMAIL,
                                                         "customer_email": EMAIL,
                                                         "customer_details": {"email": EMAIL, "name": NAME}})
    run.signatures.append(stripe_signature(encode(broken), stripe_secrets[-1]))
    post("/webhooks/stripe", 200, encode(broken), {"Stripe-Signature": run.signatures[-1]})
    charge = charge_refunded_with_card_details()
    run.charge_payloads.append(charge)
    run.signatures.append(stripe_signature(encode(charge), stripe_secrets[0]))  # the rotated-out secret, still listed
    post("/webhooks/stripe", 200, encode(charge), {"Stripe-Signature": run.signatures[-1]})


def charge_refunded_with_card_details() -> dict:
    """charge.refunded as Stripe sends it: the charge carries the card's and the cardholder's details."""
    charge = fixture("stripe/charge.json")
    charge.update(id=f"ch_test_{secrets.token_hex(12)}", payment_intent=f"pi_test_{secrets.token_hex(12)}",
                  refunded=True, amount_refunded=charge["amount"], receipt_email=EMAIL)
    charge["billing_details"].update(email=EMAIL, name=NAME, phone="+1 202 555 0143")
    charge["payment_method_details"]["card"].update(exp_month=8, exp_year=2030, last4="4242",
                                                    fingerprint="AOB934RVNwzk6xtn")
    return stripe_event("charge.refunded", charge)


def stored_text(database_url: str) -> tuple[dict[str, list[str]], list[tuple[str, str, str]]]:
    """Every table's columns, and every text value stored in them: (table, column, value)."""
    from playhouse.db_url import connect

    database = connect(database_url)
    try:
        columns = {table: [c.name for c in database.get_columns(table)] for table in database.get_tables()}
        values = []
        for table, names in columns.items():
            cursor = database.execute_sql(f'SELECT * FROM "{table}"')
            described = [d[0] for d in cursor.description]
            for row in cursor.fetchall():
                values += [(table, name, value) for name, value in zip(described, row) if isinstance(value, str)]
        return columns, values
    finally:
        database.close()


def unprocessed_events(database_url: str) -> int:
    from playhouse.db_url import connect

    database = connect(database_url)
    try:
        return database.execute_sql("SELECT count(*) FROM provider_event WHERE processed_at IS NULL").fetchone()[0]
    finally:
        database.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    from support.realstack import running_service

    result = Run()
    with contextlib.ExitStack() as cleanup:
        stack = cleanup.enter_context(running_service(tmp_path_factory.mktemp("privacy"), session_types=SESSION_TYPES))
        result.secrets = {"STRIPE_SECRET_KEY": stack.env["STRIPE_SECRET_KEY"],
                          "CALENDLY_API_TOKEN": stack.env["CALENDLY_API_TOKEN"]}
        for variable in ("STRIPE_WEBHOOK_SECRET", "CALENDLY_WEBHOOK_SIGNING_KEY"):
            for number, value in enumerate(stack.env[variable].split(",")):
                result.secrets[f"{variable} #{number + 1}"] = value
        try:
            drive_every_path(RecordingClient(stack.base, stack.sandbox, result), stack.sandbox)
            send_refused_and_unusual_requests(stack.base, stack.env, result)
            # Everything accepted has been processed, and nothing is left for the providers to send.
            wait_until(lambda: stack.sandbox.wait_deliveries_idle() and unprocessed_events(stack.env["DATABASE_URL"]) == 0,
                       timeout=90, message="every stored delivery processed")
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n--- stack log ---\n{stack.log()}") from None
        result.columns, result.stored = stored_text(stack.env["DATABASE_URL"])
        log_path = stack.log_path
    result.log = log_path.read_text()  # read once every process has stopped and written its last line
    return result


def _leaks(text: str, run: Run) -> list[str]:
    found = []
    lowered = text.lower()
    if EMAIL in lowered or "grace.hopper" in lowered:
        found.append("the client's e-mail")
    if NAME.lower() in lowered or "brewster" in lowered or "hopper" in lowered:
        found.append("the client's name")
    found += [name for name, value in run.secrets.items() if value in text]
    return found


@pytest.mark.e2e
def test_the_processes_log_neither_the_clients_email_nor_name_nor_any_secret(run):
    assert run.log.count("\n") > 100, "the stack logged next to nothing: the check would prove nothing"
    leaked = _leaks(run.log, run)
    lines = [line for line in run.log.splitlines() if _leaks(line, run)]
    assert not leaked, f"{leaked} in the stack log:\n" + "\n".join(lines[:20])


@pytest.mark.e2e
def test_the_processes_log_no_credential_from_a_request_header(run):
    bearer = [line for line in run.log.splitlines() if re.search(r"bearer\s+(?!\[secret\])\S", line, re.IGNORECASE)]
    assert not bearer, "\n".join(bearer[:10])
    macs = [re.search(r"v1=([0-9a-f]+)", signature).group(1) for signature in run.signatures]
    assert len(macs) >= 8
    assert not [mac for mac in macs if mac in run.log], "a Stripe or Calendly signature in the stack log"


@pytest.mark.e2e
def test_the_processes_log_no_checkout_url(run):
    assert len(run.checkout_urls) >= 5, run.checkout_urls
    logged = [url for url in run.checkout_urls if url in run.log]
    assert not logged, f"checkout URLs in the stack log: {logged}"


@pytest.mark.e2e
def test_every_answer_of_the_client_api_shows_the_email_masked_and_never_the_name_or_a_secret(run):
    statuses = [body for label, code, body in run.answers if label.startswith("GET /v1/bookings/") and code == 200]
    assert len(statuses) >= 20
    assert all(body["email"] == MASKED_EMAIL for body in statuses)
    for label, code, body in run.answers:
        text = json.dumps(body)
        if label == "POST /v1/bookings" and code == 201:
            # The contract's prefill of the Calendly link, the only place they may appear: the e-mail
            # and the name the client has just typed.
            prefill = dict(parse_qsl(urlsplit(body["scheduling_url"]).query))
            assert (prefill["email"], prefill["name"]) == (EMAIL, NAME)
            text = json.dumps({**body, "scheduling_url": None})
        assert not _leaks(text, run), f"{label} answered {code} with {_leaks(text, run)}: {text[:500]}"


@pytest.mark.e2e
def test_the_schema_after_db_upgrade_has_no_column_for_card_data(run):
    assert {"booking", "provider_event", "payment", "refund"} <= set(run.columns)
    assert not {table: card_columns(names) for table, names in run.columns.items() if card_columns(names)}


@pytest.mark.e2e
def test_nothing_stored_after_the_paths_looks_like_a_card_number_or_card_details(run):
    payloads = [value for table, column, value in run.stored if (table, column) == ("provider_event", "payload")]
    assert len(payloads) >= 20 and any('"charge.refunded"' in p for p in payloads)
    found = [(table, column, number) for table, column, value in run.stored for number in card_numbers_in(value)]
    assert not found
    for payload in payloads:
        body = json.loads(payload)
        assert not _card_details_in(body), f"card details kept in a stored {body.get('type') or body.get('event')}"


def _card_details_in(value) -> list[str]:
    if isinstance(value, dict):
        return [key for key in value if key in CARD_DETAIL_KEYS and value[key] is not None] + \
               [found for item in value.values() for found in _card_details_in(item)]
    if isinstance(value, list):
        return [found for item in value for found in _card_details_in(item)]
    return []


# --- in process: the formatters, the schema, a charge event -------------------------------------

@pytest.fixture
def captured_logs():
    """The root logger configured as the processes configure it, writing into a buffer."""
    from bookingflow import logs

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffers = {}

    def configure(json_lines: bool) -> io.StringIO:
        buffers[json_lines] = io.StringIO()
        logs.configure(json_lines=json_lines, stream=buffers[json_lines])
        return buffers[json_lines]

    yield configure
    handlers, level = saved
    root.handlers[:] = handlers
    root.setLevel(level)


SECRET_VALUES = {
    "stripe key": "sk_live_" + secrets.token_hex(12),
    "webhook secret": "whsec_" + secrets.token_hex(16),
    "bearer": "Bearer " + secrets.token_urlsafe(24),
    "stripe signature": f"t=1700000000,v1={secrets.token_hex(32)}",
    "calendly signature": f"t=1700000000,v1={secrets.token_hex(32)},v0={secrets.token_hex(32)}",
    "password in a URL": "redis://bookingflow:" + secrets.token_hex(8) + "@redis.internal:6379/0",
    "checkout url": "https://checkout.stripe.com/c/pay/cs_live_" + secrets.token_hex(20) + "#fidkdWxOYHwnPyd1blpxYHZxWjA0",
    "client secret": "pi_3" + secrets.token_hex(10) + "_secret_" + secrets.token_hex(12),
    "calendly token": ".".join(base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=") for part in (
        {"kid": secrets.token_hex(8), "typ": "PAT", "alg": "ES256"}, {"iss": "https://auth.calendly.com", "iat": 1700000000},
        secrets.token_hex(32))),
}


@pytest.mark.parametrize("json_lines", [True, False], ids=["json lines", "dev terminal"])
def test_the_log_formatters_mask_emails_names_and_secrets_whoever_logs_them(captured_logs, json_lines):
    stream = captured_logs(json_lines)
    log = logging.getLogger("anything.at.all")
    log.info("new booking for %s", EMAIL)
    log.info("scheduling at https://calendly.com/acme/30min?utm_content=AbC&name=%s&email=%s",
             NAME.replace(" ", "+"), EMAIL.replace("+", "%2B").replace("@", "%40"))
    log.warning("payload %r", {"email": EMAIL, "name": NAME, "first_name": "Grace", "last_name": "Hopper"})
    log.warning("payload %s", json.dumps({"invitee": {"email": EMAIL, "name": NAME}}))
    for what, value in SECRET_VALUES.items():
        log.error("%s: %s", what, value)
    try:
        raise RuntimeError(f"refused with {SECRET_VALUES['stripe key']} for {EMAIL}")
    except RuntimeError:
        log.exception("calling Stripe failed")

    written = stream.getvalue()
    assert MASKED_EMAIL in written and "calling Stripe failed" in written
    assert EMAIL not in written and "Brewster" not in written and "Hopper" not in written, written
    assert not [what for what, value in SECRET_VALUES.items() if value in written], written
    assert not re.search(r"v[01]=[0-9a-f]{16}", written), written
    assert "checkout.stripe.com/c/pay/cs_live_" not in written
    if json_lines:
        assert all(json.loads(line)["message"] for line in written.splitlines())


def test_the_log_formatters_mask_the_configured_credentials_whatever_their_shape(captured_logs, service_settings):
    stream = captured_logs(True)
    credentials = [service_settings.calendly_api_token, *service_settings.calendly_signing_keys,
                   service_settings.stripe_secret_key, *service_settings.stripe_webhook_secrets]
    for value in credentials:
        logging.getLogger("jobs").warning("calling with %s", value)
    written = stream.getvalue()
    assert written.count("\n") == len(credentials)
    assert not [value for value in credentials if value in written], written


def test_the_log_formatters_mask_the_metrics_token(captured_logs, service_settings):
    from bookingflow import settings as settings_module

    token = secrets.token_urlsafe(24)
    settings_module.configure(service_settings.replace(metrics_token=token))
    try:
        stream = captured_logs(True)
        logging.getLogger("intake").warning("metrics token in use: %s", token)  # not only after "Bearer"
    finally:
        settings_module.configure(service_settings)
    assert token not in stream.getvalue() and "[secret]" in stream.getvalue()


def test_the_log_formatters_leave_ordinary_lines_alone(captured_logs):
    stream = captured_logs(True)
    line = "booking AbC123: PAYMENT_PROCESSING -> BOOKING_CONFIRMED (confirmBooking) for 25000 usd at 2026-11-21T10:00:00Z"
    logging.getLogger("jobs.flow").info(line)
    logging.getLogger("intake").info("POST /webhooks/stripe 200")
    entries = [json.loads(entry) for entry in stream.getvalue().splitlines()]
    assert [entry["message"] for entry in entries] == [line, "POST /webhooks/stripe 200"]


def test_the_suites_schema_has_no_column_for_card_data(app):
    from models.db import database

    columns = {table: [c.name for c in database.get_columns(table)] for table in database.get_tables()}
    assert {"booking", "provider_event", "payment", "refund", "outbox"} <= set(columns)
    assert not {table: card_columns(names) for table, names in columns.items() if card_columns(names)}


def test_a_charge_event_is_stored_without_the_card_or_cardholder_details_and_still_processed(client, worker):
    from models.tables import ProviderEvent

    delivery = charge_refunded_with_card_details()
    body = encode(delivery)
    response = client.post("/webhooks/stripe", data=body, headers={
        "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, STRIPE_WEBHOOK_SECRET)})
    assert response.status_code == 200, response.get_json()

    event = wait_until(lambda: ProviderEvent.get_or_none(ProviderEvent.event_id == delivery["id"],
                                                         ProviderEvent.processed_at.is_null(False)),
                       message="the charge event processed")
    assert event.outcome != "invalid", event.detail
    stored = json.loads(event.payload)
    charge = stored["data"]["object"]
    assert (stored["id"], stored["type"], charge["id"], charge["payment_intent"]) == (
        delivery["id"], "charge.refunded", delivery["data"]["object"]["id"], delivery["data"]["object"]["payment_intent"])
    assert charge["amount_refunded"] == delivery["data"]["object"]["amount_refunded"]
    assert not _card_details_in(stored), _card_details_in(stored)
    # The last four digits nowhere as a value of their own (a timestamp may well contain 4242).
    assert not re.search(r"(?<![0-9])4242(?![0-9])", event.payload) and "AOB934RVNwzk6xtn" not in event.payload
    assert NAME not in event.payload and "202 555 0143" not in event.payload


def test_a_stripe_event_without_card_details_is_stored_as_received(client):
    from models.tables import ProviderEvent

    body = encode(stripe_event("checkout.session.expired", checkout_session("w" * 32, 5000, payment_status="unpaid")))
    response = client.post("/webhooks/stripe", data=body, headers={
        "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, STRIPE_WEBHOOK_SECRET)})
    assert response.status_code == 200
    assert ProviderEvent.get(ProviderEvent.event_id == json.loads(body)["id"]).payload == body.decode()


def _stored_after_delivery(client, delivery: dict, text: str) -> dict:
    from models.tables import ProviderEvent

    assert json.loads(text) == delivery  # the same object, only written differently
    body = text.encode()
    response = client.post("/webhooks/stripe", data=body, headers={
        "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, STRIPE_WEBHOOK_SECRET)})
    assert response.status_code == 200, response.get_json()
    return json.loads(ProviderEvent.get(ProviderEvent.event_id == delivery["id"]).payload)


# The intake tells a payload with nothing to remove from its text, before any walk of the object. A
# key spelled otherwise (valid JSON, and signed by Stripe all the same) must still be found.

def test_card_details_are_removed_when_every_key_is_followed_by_whitespace(client):
    delivery = charge_refunded_with_card_details()
    stored = _stored_after_delivery(client, delivery, json.dumps(delivery, separators=(",", ":")).replace('":', '"\n :'))
    charge = stored["data"]["object"]
    assert not _card_details_in(stored), _card_details_in(stored)
    assert charge["billing_details"] is None and set(charge["payment_method_details"]["card"]) == {"brand"}


@pytest.mark.parametrize("spelled", ['"billing\\u005fdetails":', '"\\u0062illing_details":'])
def test_cardholder_details_are_removed_when_their_key_is_spelled_with_an_escape(client, spelled):
    delivery = charge_refunded_with_card_details()
    charge = delivery["data"]["object"]
    del charge["payment_method_details"], charge["source"]  # the cardholder's details are all it holds
    text = json.dumps(delivery, separators=(",", ":"))
    assert text.count('"billing_details":') == 1
    stored = _stored_after_delivery(client, delivery, text.replace('"billing_details":', spelled))
    assert stored["data"]["object"]["billing_details"] is None
    assert NAME not in json.dumps(stored) and "202 555 0143" not in json.dumps(stored)


def test_a_legacy_card_known_only_by_its_object_is_reduced_to_its_brand(client):
    """A card source of the older API, with the cardholder's name and address but none of the keys
    of a card's own details: what marks it is "object": "card" alone, here spaced out."""
    delivery = charge_refunded_with_card_details()
    charge = delivery["data"]["object"]
    del charge["payment_method_details"], charge["billing_details"]
    charge["source"] = {"id": "card_1Legacy", "object": "card", "brand": "Visa", "name": NAME,
                        "address_line1": "12 Analytical Row", "address_zip": "10001"}
    text = json.dumps(delivery, separators=(",", ":"))
    assert text.count('"object":"card"') == 1
    stored = _stored_after_delivery(client, delivery, text.replace('"object":"card"', '"object" :\t"card"'))
    assert stored["data"]["object"]["source"] == {"object": "card", "brand": "Visa"}
    assert NAME not in json.dumps(stored)


def test_the_card_number_check_finds_card_numbers_however_written():
    # So that finding none above means something.
    for written in ("4242424242424242", "4242 4242 4242 4242", "5555-5555-5555-4444", "378282246310005",
                    '{"number":"6011111111111117"}'):
        assert card_numbers_in(written), written
    for harmless in ("1763713453123", "4242424242424241", "sha256:ab4242424242424242cd", "2026-11-21 08:24:13"):
        assert not card_numbers_in(harmless), harmless
