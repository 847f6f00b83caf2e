"""The webhook endpoints: signatures, status codes, storage and deduplication."""

from __future__ import annotations

import time

import pytest

from support.suite import CALENDLY_KEY, STRIPE_WEBHOOK_SECRET
from models.tables import ProviderEvent
from support.providers import (
    calendly_invitee_delivery, calendly_signature, checkout_session, encode, stripe_event, stripe_signature,
)

INVITEE = "https://api.calendly.com/scheduled_events/EVT123/invitees/INV123"
EVENT = "https://api.calendly.com/scheduled_events/EVT123"


def post_stripe(client, body: bytes, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post("/webhooks/stripe", data=body, headers=headers)


def post_calendly(client, body: bytes, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Calendly-Webhook-Signature"] = signature
    return client.post("/webhooks/calendly", data=body, headers=headers)


def a_stripe_body(event_type: str = "checkout.session.completed") -> bytes:
    return encode(stripe_event(event_type, checkout_session("b" * 32, 5000)))


def a_calendly_body() -> bytes:
    return encode(calendly_invitee_delivery("invitee.created", event_uri=EVENT, invitee_uri=INVITEE, utm_content=None))


def assert_rejected(response, status: int = 400):
    assert response.status_code == status
    assert set(response.get_json()["error"]) >= {"code", "message"}
    assert ProviderEvent.select().count() == 0


def test_a_signed_stripe_delivery_is_stored_once_and_acknowledged(client):
    body = a_stripe_body()
    response = post_stripe(client, body, stripe_signature(body, STRIPE_WEBHOOK_SECRET))
    assert response.status_code == 200
    assert response.get_json() == {"received": True, "duplicate": False}
    event = ProviderEvent.get()
    assert (event.provider, event.type, event.processed_at) == ("stripe", "checkout.session.completed", None)
    assert event.payload == body.decode()


def test_a_repeated_delivery_is_acknowledged_as_a_duplicate(client):
    body = a_stripe_body()
    for expected in (False, True, True):
        response = post_stripe(client, body, stripe_signature(body, STRIPE_WEBHOOK_SECRET))
        assert response.status_code == 200 and response.get_json()["duplicate"] is expected
    assert ProviderEvent.select().count() == 1


def test_a_stripe_delivery_with_a_bad_signature_is_refused(client):
    body = a_stripe_body()
    assert_rejected(post_stripe(client, body, stripe_signature(body, "whsec_not_ours")))


def test_a_stripe_delivery_without_a_signature_is_refused(client):
    assert_rejected(post_stripe(client, a_stripe_body(), None))


def test_a_stripe_delivery_with_a_stale_timestamp_is_refused(client):
    body = a_stripe_body()
    assert_rejected(post_stripe(client, body, stripe_signature(body, STRIPE_WEBHOOK_SECRET, int(time.time()) - 600)))


def test_a_tampered_stripe_body_is_refused(client):
    body = a_stripe_body()
    signature = stripe_signature(body, STRIPE_WEBHOOK_SECRET)
    assert_rejected(post_stripe(client, body.replace(b"5000", b"1"), signature))


def test_a_signed_body_that_is_not_json_is_refused(client):
    body = b"this is not json"
    assert_rejected(post_stripe(client, body, stripe_signature(body, STRIPE_WEBHOOK_SECRET)))
    assert_rejected(post_calendly(client, body, calendly_signature(body, CALENDLY_KEY)))


def test_a_body_over_256_kib_is_refused_as_too_large(client):
    body = b'{"padding": "' + b"x" * (256 * 1024) + b'"}'
    assert_rejected(post_stripe(client, body, stripe_signature(body, STRIPE_WEBHOOK_SECRET)), 413)
    assert_rejected(post_calendly(client, body, calendly_signature(body, CALENDLY_KEY)), 413)


def test_a_stripe_event_of_an_unknown_type_is_accepted_and_ignored(client):
    body = encode(stripe_event("customer.created", {"id": "cus_123", "object": "customer"}))
    response = post_stripe(client, body, stripe_signature(body, STRIPE_WEBHOOK_SECRET))
    assert response.status_code == 200
    event = ProviderEvent.get()
    assert event.outcome == "ignored" and event.processed_at is not None


def test_a_signed_calendly_delivery_is_stored_under_its_invitee(client):
    body = a_calendly_body()
    response = post_calendly(client, body, calendly_signature(body, CALENDLY_KEY))
    assert response.status_code == 200
    event = ProviderEvent.get()
    assert (event.provider, event.type, event.subject) == ("calendly", "invitee.created", INVITEE)
    assert event.event_id == f"invitee.created:{INVITEE}"


def test_a_calendly_delivery_signed_with_another_key_is_refused(client):
    body = a_calendly_body()
    assert_rejected(post_calendly(client, body, calendly_signature(body, "not-our-key")))


def test_a_calendly_delivery_older_than_three_minutes_is_refused(client):
    body = a_calendly_body()
    assert_rejected(post_calendly(client, body, calendly_signature(body, CALENDLY_KEY, int(time.time()) - 181)))


def test_a_calendly_delivery_from_the_future_is_refused(client):
    body = a_calendly_body()
    assert_rejected(post_calendly(client, body, calendly_signature(body, CALENDLY_KEY, int(time.time()) + 600)))


def test_a_tampered_calendly_body_is_refused(client):
    body = a_calendly_body()
    signature = calendly_signature(body, CALENDLY_KEY)
    assert_rejected(post_calendly(client, body.replace(b"John Doe", b"Jane Roe"), signature))


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=deadbeef", "t=123", "garbage"])
def test_a_malformed_calendly_signature_header_is_refused(client, header):
    assert_rejected(post_calendly(client, a_calendly_body(), header))


def test_a_calendly_header_with_several_signatures_passes_when_one_is_valid(client):
    body = a_calendly_body()
    valid = calendly_signature(body, CALENDLY_KEY)
    timestamp = valid.split(",")[0]
    header = f"{timestamp},v1={'0' * 64},{valid.split(',')[1]}"
    assert post_calendly(client, body, header).status_code == 200


def test_secrets_being_rotated_are_all_accepted(app, client):
    current = app.config["SETTINGS"]
    rotated = current.replace(
        stripe_webhook_secrets=("whsec_new_one",) + current.stripe_webhook_secrets,
        calendly_signing_keys=("new-calendly-key",) + current.calendly_signing_keys,
    )
    app.config["SETTINGS"] = rotated
    try:
        for secret in ("whsec_new_one", STRIPE_WEBHOOK_SECRET):
            body = a_stripe_body()
            assert post_stripe(client, body, stripe_signature(body, secret)).status_code == 200
        body = a_calendly_body()
        assert post_calendly(client, body, calendly_signature(body, "new-calendly-key")).status_code == 200
    finally:
        app.config["SETTINGS"] = current


def test_a_stripe_event_without_an_id_is_refused(client):
    event = stripe_event("checkout.session.completed", {"id": "cs_1"})
    del event["id"]
    body = encode(event)
    assert_rejected(post_stripe(client, body, stripe_signature(body, STRIPE_WEBHOOK_SECRET)))
