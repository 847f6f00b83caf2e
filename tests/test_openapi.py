"""The OpenAPI document at /openapi.json: valid OpenAPI 3.1, in step with the routes the app serves,
and true of the running service: schemathesis drives the live server with requests generated from the
document and checks every answer against it (documented status, headers, content type and schema; no
5xx; valid requests accepted, invalid ones rejected).

Generated requests that the document calls valid are steered to where they can succeed, since a
schema cannot know the catalog or the bookings that exist: a valid booking id is often swapped for a
real booking (one in each interesting state, made per test), a valid `session_type` for one on offer (and a `currency` for one it is offered in),
a valid `invitee_uri` for one under the generated `event_uri`, and a valid webhook delivery is signed
with the suite's secret. Invalid requests are sent as generated (webhooks unsigned): they must be
refused with a documented 4xx.
"""

from __future__ import annotations

import copy
import json
import re
import zlib
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from support.catalogue import make_session_type
from support.suite import CALENDLY_KEY, STRIPE_WEBHOOK_SECRET
from intake.openapi import DOCUMENT, EVENT_URI_PATTERN, INVITEE_URI_PATTERN
from support.providers import calendly_signature, encode, stripe_signature

CONFIG = schemathesis.Config.from_dict({
    "seed": 7,  # with `deterministic`, the same requests on every run
    "generation": {"max-examples": 25, "deterministic": True, "database": "none"},
})
schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT), config=CONFIG)

OFFERED = ("coaching-hour", "long-call")
EVENT = "https://api.calendly.com/scheduled_events/EVT1"


# --- the document itself ---------------------------------------------------------------------------

def test_the_served_document_is_valid_openapi_3_1(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    served = response.get_json()
    assert served == json.loads(json.dumps(DOCUMENT))
    assert served["openapi"] == "3.1.0"
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(served)


def _flask_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_route_is_documented_and_every_documented_operation_is_served(app):
    served = {
        (_flask_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules() if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, item in DOCUMENT["paths"].items() for method in item}
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


def test_the_documents_patterns_are_the_codes():
    from intake import api
    from bookingflow.providers.calendly_payloads import is_event_uri, is_invitee_uri

    schemas = DOCUMENT["components"]["schemas"]
    assert schemas["BookingId"]["pattern"] == api.BOOKING_ID.pattern
    assert schemas["NewBooking"]["properties"]["email"]["pattern"] == api.EMAIL.pattern
    for uri in [EVENT, EVENT + "?x=1#y", "http://calendly.test:8080/scheduled_events/a_B-9", EVENT + "/",
                "https:///scheduled_events/A", "ftp://api.calendly.com/scheduled_events/A", EVENT + "/invitees/I",
                "https://api.calendly.com/scheduled_events/", "https://api.calendly.com/scheduled_events/A.B"]:
        # A trailing slash passes is_event_uri but never matches an invitee's event: the document refuses it.
        expected = is_event_uri(uri) and not urlsplit(uri).path.endswith("/")
        assert bool(re.search(EVENT_URI_PATTERN, uri)) == expected, uri
    for uri in [EVENT + "/invitees/INV1", EVENT + "/invitees/INV1/", EVENT + "/invitees/INV1?a#b", EVENT,
                EVENT + "/invitees/", EVENT + "/invitees/I/x", "mailto:" + EVENT + "/invitees/I"]:
        assert bool(re.search(INVITEE_URI_PATTERN, uri)) == is_invitee_uri(uri), uri


# --- the service keeps to it -----------------------------------------------------------------------

@pytest.fixture
def bookings(client, sandbox, session_type):
    """Real bookings, one per state the actions treat differently."""
    from models.states import Trigger as T
    from models.states import apply

    make_session_type(sandbox.base, "long-call", price=20000)
    invitee = EVENT + "/invitees/INV1"
    scheduled = [(T.onCalendlyEventCreated, {"calendly_event_uri": EVENT, "calendly_invitee_uri": invitee}),
                 (T.onCalendlyWebhookReceived, {}), (T.initiatePayment, {}),
                 (T.onStripeSessionCreated, {"checkout_session_id": "cs_test_openapi",
                                             "checkout_url": "https://checkout.stripe.com/c/pay/cs_test_openapi"})]
    paths = {
        "scheduling": [],
        "processing": scheduled,
        "failed": scheduled + [(T.onPaymentFailed, {"checkout_url": None})],
        "confirmed": scheduled + [(T.onPaymentSucceeded, {}), (T.confirmBooking, {
            "calendly_reschedule_url": "https://calendly.com/reschedulings/INV1"})],
        "confirmed_without_link": scheduled + [(T.onPaymentSucceeded, {}), (T.confirmBooking, {})],
        "abandoned": [(T.cancelBookingProcess, {})],
    }
    ids = {}
    for state, steps in paths.items():
        created = client.post("/v1/bookings", json={"session_type": OFFERED[0], "email": "ada@example.com",
                                                      "name": "Ada Lovelace"})
        booking_id = created.get_json()["id"]
        for trigger, changes in steps:
            apply(booking_id, trigger, cause=f"openapi-{trigger.value}", **changes)
        ids[state] = booking_id
    return ids


class _Signature(requests.auth.AuthBase):
    """Signs the body as it goes out, as the provider would."""

    def __init__(self, header: str, sign):
        self.header, self.sign = header, sign

    def __call__(self, request):
        body = request.body or b""
        request.headers[self.header] = self.sign(body.encode() if isinstance(body, str) else body)
        return request


SIGNERS = {
    "/webhooks/stripe": _Signature("Stripe-Signature", lambda body: stripe_signature(body, STRIPE_WEBHOOK_SECRET)),
    "/webhooks/calendly": _Signature("Calendly-Webhook-Signature", lambda body: calendly_signature(body, CALENDLY_KEY)),
}


@pytest.fixture(scope="module")
def sessions():
    plain = requests.Session()
    signed = {}
    for path, signer in SIGNERS.items():
        signed[path] = requests.Session()
        signed[path].auth = signer
    yield plain, signed
    for session in [plain, *signed.values()]:
        session.close()


def _pick(case, choices: int) -> int:
    """A deterministic choice, from the generated values themselves."""
    return zlib.crc32(repr((case.path_parameters, case.body)).encode("utf-8", "surrogatepass")) % choices


def real_slot(sandbox, booking_id: str) -> dict:
    """A slot scheduled in the sandbox's Calendly with the booking's own link (its webhook dropped):
    the only report Calendly's API confirms."""
    sandbox.hold_deliveries("calendly", True)
    try:
        response = requests.post(f"{sandbox.base}/calendly/_sandbox/schedule", timeout=10, json={
            "scheduling_url": f"{sandbox.base}/calendly/book/coaching-hour?utm_content={booking_id}"})
        assert response.status_code == 201, response.text
        return response.json()
    finally:
        sandbox.drop_pending_deliveries("calendly")
        sandbox.hold_deliveries("calendly", False)


def steer(case, bookings: dict[str, str], sandbox) -> None:
    """Make a valid request one that can succeed (see the module's docstring)."""
    path_parameters, body, path = case.path_parameters, case.body, case.operation.path
    bookings = list(bookings.values())
    if path_parameters and "booking_id" in path_parameters:
        choice = _pick(case, len(bookings) + 1)
        if choice < len(bookings):  # else: a well-formed id nobody holds, 404
            path_parameters["booking_id"] = bookings[choice]
    if not isinstance(body, dict):
        return
    if path == "/v1/bookings":
        body["session_type"] = OFFERED[0]
        if isinstance(body.get("currency"), str):
            body["currency"] = ("usd", "USD")[_pick(case, 2)]  # the ones coaching-hour is offered in
    elif path.endswith("/reschedule") and isinstance(body.get("session_type"), str):
        body["session_type"] = OFFERED[_pick(case, len(OFFERED))]
    elif path.endswith("/scheduled") and path_parameters["booking_id"] in bookings:
        body.update(real_slot(sandbox, path_parameters["booking_id"]))
    elif path.endswith("/scheduled"):
        event = urlsplit(body["event_uri"])
        invitee = re.search(r"/invitees/([A-Za-z0-9_-]+)", urlsplit(body["invitee_uri"]).path).group(1)
        body["invitee_uri"] = f"{event.scheme}://{event.netloc}{event.path}/invitees/{invitee}"


@schema.parametrize()
# `bookings` is made once per operation and shared by its examples on purpose: the actions only queue
# requests (no worker runs), so each booking stays in its state.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_service_keeps_to_its_document(case, live_server, sandbox, bookings, sessions):
    plain, signed = sessions
    session = plain
    if case.meta is not None and case.meta.generation.mode.is_positive:
        steer(case, bookings, sandbox)
        session = signed.get(case.operation.path, plain)
    case.call_and_validate(base_url=live_server, session=session)


# --- what generation does not reach ---------------------------------------------------------------

def _validated(response: requests.Response, path: str, method: str, **case) -> requests.Response:
    """Check an answer to a hand-made request against the document, as the run does."""
    schema[path][method].Case(**case).validate_response(response)
    return response


def _post_raw(live_server, bookings, path, auth, body):
    url = live_server + path.format(**bookings)
    return requests.post(url, data=body, auth=auth, headers={"Content-Type": "application/json"})


def test_an_unchanged_booking_answers_304_as_documented(live_server, session_type):
    created = requests.post(f"{live_server}/v1/bookings", json={"session_type": OFFERED[0], "email": "a@b.cd", "name": "A"})
    _validated(created, "/v1/bookings", "POST")
    url = created.json()["status_url"]
    path = "/v1/bookings/{booking_id}"
    booking_id = {"booking_id": created.json()["id"]}
    first = _validated(requests.get(url), path, "GET", path_parameters=booking_id)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-cache"
    again = requests.get(url, headers={"If-None-Match": first.headers["ETag"]})
    _validated(again, path, "GET", path_parameters=booking_id, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""


REFUSALS = [  # (booking, action, raw body, status, error code): bodies a valid id needs to reach
    ("scheduling", "scheduled", b'{"event_uri": "https://api.calendly.com/scheduled_events/A", "invitee_uri": 7}', 422, "invalid_field"),
    ("scheduling", "scheduled", b'{"event_uri": "https://api.calendly.com/scheduled_events/A", '
                                b'"invitee_uri": "https://api.calendly.com/scheduled_events/B/invitees/I"}', 422, "invalid_field"),
    ("scheduling", "scheduled", b"[]", 400, "invalid_json"),
    ("scheduling", "cancel", b'{"reason": 7}', 422, "invalid_field"),
    ("scheduling", "cancel", b'{"reason": "%s"}' % (b"x" * 501), 422, "invalid_field"),
    ("scheduling", "cancel", b"nope", 400, "invalid_json"),
    ("confirmed", "reschedule", b'{"session_type": " "}', 422, "invalid_field"),
    ("confirmed", "reschedule", b'{"session_type": "no-such-type"}', 422, "unknown_session_type"),
    ("confirmed", "reschedule", b'"long-call"', 400, "invalid_json"),
    ("abandoned", "scheduled", b'{"event_uri": "https://api.calendly.com/scheduled_events/A", '
                               b'"invitee_uri": "https://api.calendly.com/scheduled_events/A/invitees/I"}', 409, "wrong_state"),
]


@pytest.mark.parametrize("booking, action, body, status, code", REFUSALS)
def test_refusals_of_the_actions_are_as_documented(live_server, bookings, booking, action, body, status, code):
    response = _post_raw(live_server, bookings, f"/v1/bookings/{{{booking}}}/{action}", None, body)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    _validated(response, f"/v1/bookings/{{booking_id}}/{action}", "POST",
               path_parameters={"booking_id": bookings[booking]})


@pytest.mark.parametrize("path", ["/webhooks/stripe", "/webhooks/calendly", "/v1/bookings"])
def test_a_body_over_256_kib_answers_413_as_documented(live_server, path):
    body = encode({"id": "evt_1", "type": "x", "event": "x", "padding": "x" * (256 * 1024)})
    response = requests.post(live_server + path, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    _validated(response, path, "POST")


@pytest.mark.parametrize("path", ["/webhooks/stripe", "/webhooks/calendly"])
@pytest.mark.parametrize("signature", [None, "t=1,v1=00", "garbage"])
def test_an_unsigned_or_badly_signed_delivery_answers_400_as_documented(live_server, path, signature):
    header = SIGNERS[path].header
    headers = {"Content-Type": "application/json", **({header: signature} if signature else {})}
    response = requests.post(live_server + path, data=encode({"id": "evt_1", "type": "x", "event": "x"}), headers=headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_signature"
    _validated(response, path, "POST")


@pytest.mark.parametrize("path", ["/webhooks/stripe", "/webhooks/calendly"])
@pytest.mark.parametrize("body, code", [(b"not json", "invalid_json"), (b"[]", "invalid_json"), (b"{}", "invalid_event")])
def test_a_signed_delivery_that_is_not_an_event_answers_400_as_documented(live_server, path, body, code):
    response = requests.post(live_server + path, data=body, auth=SIGNERS[path], headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == code
    _validated(response, path, "POST")


@pytest.mark.parametrize("path", ["/webhooks/stripe", "/webhooks/calendly"])
def test_a_signed_delivery_twice_is_received_then_a_duplicate(live_server, path):
    body = encode({"id": "evt_openapi", "type": "unknown.type", "event": "unknown.type", "payload": {}})
    answers = [requests.post(live_server + path, data=body, auth=SIGNERS[path], headers={"Content-Type": "application/json"})
               for _ in range(2)]
    assert [a.json() for a in answers] == [{"received": True, "duplicate": False}, {"received": True, "duplicate": True}]
    for answer in answers:
        _validated(answer, path, "POST")


UNDECLARED = ("PUT", "PATCH", "DELETE", "TRACE")


def _undeclared_methods():
    for path, item in DOCUMENT["paths"].items():
        for method in UNDECLARED:
            if method.lower() not in item:
                yield path.replace("{booking_id}", "Ny4bLw0cS3Ibe0TmMSZ8TZXdDq1pGZ0C"), method


def test_an_undeclared_method_answers_405(client):
    for path, method in _undeclared_methods():
        response = client.open(path, method=method)
        assert response.status_code == 405, (method, path)
        assert response.get_json()["error"]["code"] == "method_not_allowed"


def test_a_405_names_the_allowed_methods(client):
    for path, method in _undeclared_methods():
        allowed = {m.strip() for m in client.open(path, method=method).headers.get("Allow", "").split(",")}
        documented = {m.upper() for m in DOCUMENT["paths"][re.sub(r"/bookings/[^/]+", "/bookings/{booking_id}", path)]}
        assert documented <= allowed, (method, path, allowed)


# --- text a database cannot store, and URIs that cannot be parsed: refused, never a 500 -----------

# Raw JSON bodies: `\u0000` is a NUL character, `\ud800` a lone surrogate (valid JSON syntax, not text).
BAD_TEXT = [
    ("/v1/bookings", None, rb'{"session_type": "coaching-hour", "email": "a@b.cd", "name": "A%s"}'),
    ("/v1/bookings/{confirmed}/reschedule", None, rb'{"session_type": "x%s"}'),
    ("/webhooks/stripe", SIGNERS["/webhooks/stripe"], rb'{"id": "evt_%s", "type": "x"}'),
    ("/webhooks/calendly", SIGNERS["/webhooks/calendly"], rb'{"event": "x%s"}'),
]



@pytest.mark.parametrize("path, auth, template", BAD_TEXT, ids=[p for p, _, _ in BAD_TEXT])
def test_text_holding_a_nul_is_refused(live_server, bookings, path, auth, template):
    assert _post_raw(live_server, bookings, path, auth, template % rb"\u0000").status_code in (400, 422)


@pytest.mark.parametrize("path, auth, template", BAD_TEXT, ids=[p for p, _, _ in BAD_TEXT])
def test_text_holding_a_lone_surrogate_is_refused(live_server, bookings, path, auth, template):
    assert _post_raw(live_server, bookings, path, auth, template % rb"\ud800").status_code in (400, 422)


@pytest.mark.parametrize("host", ["[", "\uff03"], ids=["unbalanced-bracket", "fullwidth-number-sign"])
def test_a_calendly_uri_with_an_unreadable_host_is_refused(live_server, bookings, host):
    event = f"https://{host}/scheduled_events/A"
    body = json.dumps({"event_uri": event, "invitee_uri": event + "/invitees/B"}).encode()
    assert _post_raw(live_server, bookings, "/v1/bookings/{scheduling}/scheduled", None, body).status_code == 422
