"""The sandbox fakes, exercised over HTTP through the same clients the product uses."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests
import stripe
from werkzeug.wrappers import Request, Response

from sandbox import Sandbox, SandboxConfig, serve_in_thread

STRIPE_KEY = "sk_test_sandbox"
STRIPE_WEBHOOK_SECRET = "whsec_sandbox_secret"
CALENDLY_TOKEN = "calendly-token"
CALENDLY_SIGNING_KEY = "calendly-signing-key"
SCHEDULING_URL = ("https://calendly.com/acme/intro-call"
                  "?utm_content=booking_42&name=Ann%20Lee&email=ann%40example.com")
METADATA = {"booking_id": "booking_42"}


class Receiver:
    """A webhook endpoint that records what it gets; answers the queued statuses first, then 200."""

    def __init__(self):
        self._cond = threading.Condition()
        self.received: list[dict] = []
        self.statuses: list[int] = []

    def __call__(self, environ, start_response):
        incoming = Request(environ)
        with self._cond:
            self.received.append({"path": incoming.path, "headers": dict(incoming.headers),
                                  "body": incoming.get_data()})
            status = self.statuses.pop(0) if self.statuses else 200
            self._cond.notify_all()
        return Response("ok", status)(environ, start_response)

    def wait_for(self, path: str, count: int, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(matching := [r for r in self.received if r["path"] == path]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"got {len(matching)} deliveries on {path}, wanted {count}")
                self._cond.wait(remaining)
            return matching


@pytest.fixture
def receiver():
    endpoint = Receiver()
    server, base = serve_in_thread(endpoint)
    endpoint.base = base
    yield endpoint
    server.shutdown()


@pytest.fixture
def sandbox(receiver):
    sandbox = Sandbox(SandboxConfig(
        stripe_secret_key=STRIPE_KEY, stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
        calendly_api_token=CALENDLY_TOKEN, calendly_signing_key=CALENDLY_SIGNING_KEY))
    server, base = serve_in_thread(sandbox.app)
    sandbox.base = base
    # Set after start, as the test-suite does once it knows its ports.
    sandbox.config.public_base = base
    sandbox.config.stripe_webhook_url = receiver.base + "/stripe"
    sandbox.config.calendly_webhook_url = receiver.base + "/calendly"
    yield sandbox
    sandbox.close()
    server.shutdown()


def stripe_client(sandbox: Sandbox, key: str = STRIPE_KEY) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": sandbox.base + "/stripe"}, max_network_retries=0)


def session_params(**overrides) -> dict:
    return {
        "mode": "payment",
        "success_url": "https://shop.example/done?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://shop.example/cancel",
        "client_reference_id": "booking_42",
        "line_items": [{"price_data": {"currency": "EUR", "unit_amount": 5000,
                                       "product_data": {"name": "Coaching session"}},
                        "quantity": 1}],
        "metadata": METADATA,
        "payment_method_types": ["card"],
        "expires_at": int(time.time()) + 3600,
        **overrides,
    }


def pay(sandbox: Sandbox, session_id: str, outcome: str = "paid") -> dict:
    response = requests.post(f"{sandbox.base}/stripe/checkout/{session_id}/pay", json={"outcome": outcome})
    assert response.status_code == 200, response.text
    return response.json()


def calendly_get(sandbox: Sandbox, uri: str) -> dict:
    response = requests.get(sandbox.base + "/calendly" + urlsplit(uri).path,
                            headers={"Authorization": f"Bearer {CALENDLY_TOKEN}"})
    assert response.status_code == 200, response.text
    return response.json()


def verified_calendly_body(delivery: dict) -> dict:
    fields = dict(part.split("=", 1) for part in delivery["headers"]["Calendly-Webhook-Signature"].split(","))
    expected = hmac.new(CALENDLY_SIGNING_KEY.encode(), f"{fields['t']}.".encode() + delivery["body"],
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert abs(time.time() - int(fields["t"])) < 180
    return json.loads(delivery["body"])


def test_checkout_session_creation_is_idempotent(sandbox):
    client = stripe_client(sandbox)
    params = session_params()

    first = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "booking_42"})
    replay = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": "booking_42"})

    assert first.id.startswith("cs_test_") and replay.id == first.id
    assert replay.last_response.headers["Idempotent-Replayed"] == "true"
    assert (first.status, first.payment_status, first.payment_intent) == ("open", "unpaid", None)
    assert (first.amount_total, first.currency, first.metadata.to_dict()) == (5000, "eur", METADATA)
    assert first.url == f"{sandbox.base}/stripe/checkout/{first.id}"
    assert len(sandbox.objects("checkout.session")) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.checkout.sessions.create(params=session_params(client_reference_id="other"),
                                           options={"idempotency_key": "booking_42"})
    recorded = sandbox.api_requests("stripe")[0]
    assert recorded["path"] == "/v1/checkout/sessions" and recorded["idempotency_key"] == "booking_42"
    assert recorded["params"]["line_items"][0]["price_data"]["unit_amount"] == "5000"


def test_concurrent_requests_with_one_key_create_one_session(sandbox):
    def create(_):
        return stripe_client(sandbox).v1.checkout.sessions.create(
            params=session_params(expires_at=None), options={"idempotency_key": "same-key"}).id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(create, range(8)))

    assert len(ids) == 1 and len(sandbox.objects("checkout.session")) == 1


def test_stripe_rejects_what_stripe_rejects(sandbox):
    client = stripe_client(sandbox)
    with pytest.raises(stripe.InvalidRequestError) as too_soon:
        client.v1.checkout.sessions.create(params=session_params(expires_at=int(time.time()) + 600))
    with pytest.raises(stripe.InvalidRequestError) as no_quantity:
        client.v1.checkout.sessions.create(params=session_params(line_items=[
            {"price_data": {"currency": "eur", "unit_amount": 100, "product_data": {"name": "x"}}}]))
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.checkout.sessions.retrieve("cs_test_missing")
    with pytest.raises(stripe.AuthenticationError):
        stripe_client(sandbox, key="sk_test_wrong").v1.checkout.sessions.create(params=session_params())

    assert too_soon.value.param == "expires_at"
    assert no_quantity.value.param == "line_items[0][quantity]"
    assert missing.value.http_status == 404
    assert sandbox.objects("checkout.session") == []


def test_paid_checkout_delivers_a_signed_completed_event(sandbox, receiver):
    client = stripe_client(sandbox)
    session = client.v1.checkout.sessions.create(params=session_params())

    paid = pay(sandbox, session.id)

    delivery = receiver.wait_for("/stripe", 1)[0]
    event = stripe.Webhook.construct_event(
        delivery["body"].decode(), delivery["headers"]["Stripe-Signature"], STRIPE_WEBHOOK_SECRET)
    assert event.type == "checkout.session.completed" and event.api_version == stripe.api_version
    assert event.data.object.id == session.id and event.data.object.payment_status == "paid"
    intent = client.v1.payment_intents.retrieve(paid["payment_intent"])
    assert (intent.status, intent.amount, intent.metadata.to_dict()) == ("succeeded", 5000, METADATA)
    assert intent.latest_charge.startswith("ch_")
    assert client.v1.events.retrieve(event.id).type == "checkout.session.completed"
    assert sandbox.wait_deliveries_idle()
    assert sandbox.deliveries("stripe")[0] | {"payload": None} == {
        "provider": "stripe", "type": "checkout.session.completed", "event_id": event.id,
        "attempts": 1, "status": 200, "delivered": True, "payload": None}


def test_declined_card_keeps_the_session_open_without_events(sandbox):
    session = stripe_client(sandbox).v1.checkout.sessions.create(params=session_params())

    declined = pay(sandbox, session.id, outcome="failed")

    assert (declined["status"], declined["payment_status"]) == ("open", "unpaid")
    assert sandbox.objects("event") == [] and sandbox.deliveries() == []


def test_refunds_are_limited_to_the_charged_amount(sandbox, receiver):
    client = stripe_client(sandbox)
    session = client.v1.checkout.sessions.create(params=session_params())
    intent_id = pay(sandbox, session.id)["payment_intent"]

    refund = client.v1.refunds.create(params={"payment_intent": intent_id, "amount": 2000})
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create(params={"payment_intent": intent_id, "amount": 3001})
    rest = client.v1.refunds.create(params={"payment_intent": intent_id})

    assert (refund.status, refund.amount, rest.amount) == ("succeeded", 2000, 3000)
    assert too_much.value.param == "amount"
    events = [json.loads(d["body"]) for d in receiver.wait_for("/stripe", 5)]
    assert [e["type"] for e in events] == ["checkout.session.completed", "refund.created",
                                           "charge.refunded", "refund.created", "charge.refunded"]
    assert events[-1]["data"]["object"]["amount_refunded"] == 5000
    listed = client.v1.events.list(params={"type": "charge.refunded"})
    assert [e.type for e in listed.data] == ["charge.refunded", "charge.refunded"]


def simulate(sandbox: Sandbox, path: str, **body) -> requests.Response:
    return requests.post(f"{sandbox.base}/stripe{path}", json=body, timeout=10)


def test_a_disputed_charge_cannot_be_refunded_until_the_dispute_is_won(sandbox, receiver):
    client = stripe_client(sandbox)
    intent_id = pay(sandbox, client.v1.checkout.sessions.create(params=session_params()).id)["payment_intent"]
    charge_id = client.v1.payment_intents.retrieve(intent_id).latest_charge
    dispute = simulate(sandbox, f"/charges/{charge_id}/dispute", reason="fraudulent").json()
    assert (dispute["object"], dispute["status"], dispute["amount"], dispute["payment_intent"]) == (
        "dispute", "needs_response", 5000, intent_id)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create(params={"payment_intent": intent_id})
    assert (refused.value.http_status, refused.value.code) == (400, "charge_disputed")
    assert simulate(sandbox, f"/disputes/{dispute['id']}/close", outcome="won").json()["status"] == "won"
    assert client.v1.refunds.create(params={"payment_intent": intent_id}).amount == 5000
    events = [json.loads(d["body"]) for d in receiver.wait_for("/stripe", 6)]
    assert [e["type"] for e in events] == [
        "checkout.session.completed", "charge.dispute.created", "charge.dispute.funds_withdrawn",
        "charge.dispute.funds_reinstated", "charge.dispute.closed", "refund.created", "charge.refunded"][:len(events)]
    assert client.v1.disputes.retrieve(dispute["id"]).status == "won"


def test_disputes_and_refunds_are_listed_by_payment_intent_page_by_page(sandbox):
    client = stripe_client(sandbox)
    intents = [pay(sandbox, client.v1.checkout.sessions.create(params=session_params()).id)["payment_intent"]
               for _ in range(2)]
    for amount in (1000, 1500, 2000):
        assert simulate(sandbox, f"/payment_intents/{intents[0]}/dashboard_refund", amount=amount).status_code == 200
    simulate(sandbox, f"/payment_intents/{intents[1]}/dashboard_refund")
    first = client.v1.refunds.list(params={"payment_intent": intents[0], "limit": 2})
    assert ([r.amount for r in first.data], first.has_more) == ([2000, 1500], True)
    assert [r.amount for r in first.auto_paging_iter()] == [2000, 1500, 1000]
    assert all(r.metadata.to_dict() == {} for r in first.data)
    for intent_id in intents:
        simulate(sandbox, f"/charges/{client.v1.payment_intents.retrieve(intent_id).latest_charge}/dispute")
    listed = client.v1.disputes.list(params={"payment_intent": intents[1]})
    assert [d.payment_intent for d in listed.data] == [intents[1]]
    assert len(client.v1.disputes.list().data) == 2


def test_the_sandbox_issues_charges_and_refunds_of_other_payment_methods(sandbox):
    sandbox.config.non_card_ids = True
    client = stripe_client(sandbox)
    intent_id = pay(sandbox, client.v1.checkout.sessions.create(params=session_params()).id)["payment_intent"]
    assert client.v1.payment_intents.retrieve(intent_id).latest_charge.startswith("py_")
    assert client.v1.refunds.create(params={"payment_intent": intent_id}).id.startswith("pyr_")


def test_failed_deliveries_are_retried(sandbox, receiver):
    receiver.statuses = [500]
    session = stripe_client(sandbox).v1.checkout.sessions.create(params=session_params())

    pay(sandbox, session.id)

    assert sandbox.wait_deliveries_idle()
    [delivery] = sandbox.deliveries("stripe")
    assert (delivery["attempts"], delivery["status"], delivery["delivered"]) == (2, 200, True)


def test_held_deliveries_wait_until_released(sandbox, receiver):
    sandbox.hold_deliveries("stripe")
    session = stripe_client(sandbox).v1.checkout.sessions.create(params=session_params())
    pay(sandbox, session.id)

    assert sandbox.wait_deliveries_idle()  # a held delivery is parked, not pending
    assert receiver.received == [] and sandbox.deliveries("stripe")[0]["attempts"] == 0

    sandbox.hold_deliveries("stripe", False)
    assert sandbox.wait_deliveries_idle()
    assert len(receiver.wait_for("/stripe", 1)) == 1


@pytest.mark.parametrize("shape", ["embedded", "reference"])
def test_calendly_booking_delivers_signed_invitee_created(sandbox, receiver, shape):
    response = requests.post(f"{sandbox.base}/calendly/_sandbox/schedule",
                             json={"scheduling_url": SCHEDULING_URL, "shape": shape})
    assert response.status_code == 201
    booked = response.json()

    body = verified_calendly_body(receiver.wait_for("/calendly", 1)[0])
    invitee = calendly_get(sandbox, booked["invitee_uri"])["resource"]
    event = calendly_get(sandbox, booked["event_uri"])["resource"]

    assert body["event"] == "invitee.created"
    assert body["payload"]["uri"] == booked["invitee_uri"]
    assert body["payload"]["event"] == booked["event_uri"] == event["uri"]
    assert booked["event_uri"].startswith("https://api.calendly.com/scheduled_events/")
    assert ("scheduled_event" in body["payload"]) == (shape == "embedded")
    if shape == "embedded":
        assert body["payload"]["scheduled_event"] == event
    assert (invitee["email"], invitee["name"], invitee["tracking"]["utm_content"]) == (
        "ann@example.com", "Ann Lee", "booking_42")
    assert event["event_type"] == "https://api.calendly.com/event_types/intro-call"
    assert event["start_time"].endswith(".000000Z") and event["status"] == "active"


def test_calendly_reschedule_links_invitees_and_cancellation_is_final(sandbox, receiver):
    old = requests.post(f"{sandbox.base}/calendly/_sandbox/schedule",
                        json={"scheduling_url": SCHEDULING_URL}).json()

    new = requests.post(f"{sandbox.base}/calendly/_sandbox/reschedule",
                        json={"invitee_uri": old["invitee_uri"], "order": "created_first"}).json()

    bodies = [verified_calendly_body(d) for d in receiver.wait_for("/calendly", 3)]
    assert [b["event"] for b in bodies] == ["invitee.created", "invitee.created", "invitee.canceled"]
    canceled = calendly_get(sandbox, old["invitee_uri"])["resource"]
    assert (canceled["status"], canceled["rescheduled"]) == ("canceled", True)
    assert canceled["new_invitee"] == new["invitee_uri"]
    created = calendly_get(sandbox, new["invitee_uri"])["resource"]
    assert created["old_invitee"] == old["invitee_uri"] and created["tracking"]["utm_content"] == "booking_42"

    cancel_url = sandbox.base + "/calendly" + urlsplit(new["event_uri"]).path + "/cancellation"
    headers = {"Authorization": f"Bearer {CALENDLY_TOKEN}"}
    first = requests.post(cancel_url, json={"reason": "Host unavailable"}, headers=headers)
    again = requests.post(cancel_url, json={"reason": "Host unavailable"}, headers=headers)
    unauthenticated = requests.get(sandbox.base + "/calendly/users/me")

    assert first.status_code == 201 and first.json()["resource"]["canceler_type"] == "host"
    assert again.status_code == 403 and again.json()["message"] == "Event is already canceled"
    assert unauthenticated.status_code == 401 and unauthenticated.json()["title"] == "Unauthenticated"
    assert verified_calendly_body(receiver.wait_for("/calendly", 4)[-1])["event"] == "invitee.canceled"


def test_a_refusal_of_a_request_that_ran_is_replayed_for_its_key_and_a_new_key_runs_anew(sandbox):
    client = stripe_client(sandbox)
    intent_id = pay(sandbox, client.v1.checkout.sessions.create(params=session_params()).id)["payment_intent"]
    sandbox.stripe.refuse_next("/v1/refunds", status=400, code="charge_expired_for_refund")
    params = {"payment_intent": intent_id, "amount": 1000, "metadata": {"refund_key": "k"}}

    with pytest.raises(stripe.InvalidRequestError) as first:
        client.v1.refunds.create(params=params, options={"idempotency_key": "refund-k"})
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.refunds.create(params=params, options={"idempotency_key": "refund-k"})
    assert sandbox.objects("refund") == []
    refund = client.v1.refunds.create(params=params, options={"idempotency_key": "refund-k-1"})

    assert first.value.code == again.value.code == "charge_expired_for_refund"
    assert "Idempotent-Replayed" not in first.value.headers
    assert again.value.headers["Idempotent-Replayed"] == "true"
    listed = client.v1.refunds.list(params={"payment_intent": intent_id})
    assert [(r.id, r.metadata.to_dict()) for r in listed.data] == [(refund.id, {"refund_key": "k"})]
    assert client.v1.refunds.list(params={"payment_intent": "pi_other"}).data == []


def test_a_malformed_request_saves_nothing_under_its_key(sandbox):
    client = stripe_client(sandbox)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.create(params=session_params(mode=None), options={"idempotency_key": "k"})
    session = client.v1.checkout.sessions.create(params=session_params(), options={"idempotency_key": "k"})
    assert session.status == "open"


def test_expires_at_is_checked_on_stripes_own_clock(sandbox):
    client = stripe_client(sandbox)
    expires_at = int(time.time()) + 31 * 60
    sandbox.stripe.set_clock_offset(2 * 60)  # Stripe's clock two minutes ahead of ours
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.checkout.sessions.create(params=session_params(expires_at=expires_at))
    sandbox.stripe.set_clock_offset(0)
    assert client.v1.checkout.sessions.create(params=session_params(expires_at=expires_at)).status == "open"
    assert refused.value.param == "expires_at"


@pytest.mark.parametrize("currency, amount, accepted", [
    ("usd", 49, False), ("usd", 50, True), ("gbp", 29, False), ("jpy", 49, False), ("jpy", 50, True),
    ("huf", 17499, False)])
def test_a_checkout_below_stripes_minimum_for_its_currency_is_refused(sandbox, currency, amount, accepted):
    items = [{"price_data": {"currency": currency, "unit_amount": amount, "product_data": {"name": "x"}},
              "quantity": 1}]
    create = lambda: stripe_client(sandbox).v1.checkout.sessions.create(params=session_params(line_items=items))  # noqa: E731
    if accepted:
        assert create().amount_total == amount
        return
    with pytest.raises(stripe.InvalidRequestError) as refused:
        create()
    assert (refused.value.http_status, refused.value.code) == (400, "amount_too_small")


def test_the_sandbox_records_the_api_version_each_request_names(sandbox):
    client = stripe.StripeClient(STRIPE_KEY, base_addresses={"api": sandbox.base + "/stripe"},
                                 stripe_version="2024-06-20")
    client.v1.checkout.sessions.create(params=session_params())
    assert sandbox.api_requests("stripe")[-1]["stripe_version"] == "2024-06-20"


def test_the_sandbox_controls_work_over_http_for_tests_driving_other_processes(sandbox):
    assert requests.post(f"{sandbox.base}/stripe/_sandbox/clock", json={"offset_seconds": 120}).status_code == 200
    assert sandbox.stripe.now() >= int(time.time()) + 119
    assert requests.post(f"{sandbox.base}/stripe/_sandbox/refuse",
                         json={"path": "/v1/checkout/sessions", "status": 400, "code": "x"}).status_code == 200
    client = stripe_client(sandbox)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.checkout.sessions.create(params=session_params(expires_at=int(time.time()) + 3600))
    assert refused.value.code == "x"
    sandbox.stripe.reset_controls()
    assert client.v1.checkout.sessions.create(params=session_params()).status == "open"
