"""Source-network allowlists of the webhook endpoints, through HTTP: a delivery from outside its
endpoint's networks is refused with 403 before anything else (signature included) and nothing is
stored; inside them, or with no list, it is handled as ever. The client address follows the same
rule as the rate limit (X-Forwarded-For only through trusted proxies)."""

from __future__ import annotations

import copy
import ipaddress

import pytest
import schemathesis

from support.suite import CALENDLY_KEY, STRIPE_WEBHOOK_SECRET
from intake.openapi import DOCUMENT
from models.tables import ProviderEvent
from support.providers import (
    calendly_invitee_delivery, calendly_signature, checkout_session, encode, stripe_event, stripe_signature,
)

STRIPE_NETWORKS = (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8:5::/48"))
INSIDE, OUTSIDE = "192.0.2.17", "198.51.100.17"
EVENT = "https://api.calendly.com/scheduled_events/EVT9"


@pytest.fixture
def client_with_stripe_list(app_with):
    return app_with(stripe_webhook_source_networks=STRIPE_NETWORKS)


def deliver_stripe(client, address: str, signed: bool = True, **headers):
    body = encode(stripe_event("checkout.session.completed", checkout_session("b" * 32, 5000)))
    if signed:
        headers["Stripe-Signature"] = stripe_signature(body, STRIPE_WEBHOOK_SECRET)
    return client.post("/webhooks/stripe", data=body, headers={"Content-Type": "application/json", **headers},
                       environ_base={"REMOTE_ADDR": address})


def deliver_calendly(client, address: str):
    body = encode(calendly_invitee_delivery("invitee.created", event_uri=EVENT, invitee_uri=EVENT + "/invitees/I9",
                                            utm_content=None))
    return client.post("/webhooks/calendly", data=body, environ_base={"REMOTE_ADDR": address}, headers={
        "Content-Type": "application/json", "Calendly-Webhook-Signature": calendly_signature(body, CALENDLY_KEY)})


def assert_refused(response):
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "source_not_allowed"
    assert ProviderEvent.select().count() == 0


def test_a_delivery_from_outside_the_networks_is_refused_and_nothing_is_stored(client_with_stripe_list):
    assert_refused(deliver_stripe(client_with_stripe_list, OUTSIDE))


def test_a_delivery_from_inside_the_networks_is_stored(client_with_stripe_list):
    response = deliver_stripe(client_with_stripe_list, INSIDE)

    assert response.status_code == 200
    assert ProviderEvent.select().count() == 1


@pytest.mark.parametrize("address, allowed", [
    ("2001:db8:5:1::9", True), ("2001:db8:6::9", False), ("::ffff:192.0.2.17", True), ("::ffff:198.51.100.17", False),
])
def test_ipv6_peers_are_matched_too(client_with_stripe_list, address, allowed):
    response = deliver_stripe(client_with_stripe_list, address)

    assert response.status_code == (200 if allowed else 403)


def test_the_source_is_checked_before_the_signature(client_with_stripe_list):
    assert_refused(deliver_stripe(client_with_stripe_list, OUTSIDE, signed=False))
    assert deliver_stripe(client_with_stripe_list, INSIDE, signed=False).status_code == 400


def test_each_endpoint_has_its_own_list_and_an_empty_one_accepts_any_source(client_with_stripe_list):
    assert deliver_calendly(client_with_stripe_list, OUTSIDE).status_code == 200


def test_a_calendly_list_refuses_calendly_deliveries_from_elsewhere(app_with):
    client = app_with(calendly_webhook_source_networks=(ipaddress.ip_network("203.0.113.0/28"),))

    assert_refused(deliver_calendly(client, "203.0.113.16"))
    assert deliver_calendly(client, "203.0.113.15").status_code == 200


def test_the_client_api_is_not_subject_to_the_webhook_lists(client_with_stripe_list, session_type):
    response = client_with_stripe_list.get("/v1/session-types", environ_base={"REMOTE_ADDR": OUTSIDE})

    assert response.status_code == 200


def test_x_forwarded_for_is_ignored_without_trusted_proxies(client_with_stripe_list):
    assert_refused(deliver_stripe(client_with_stripe_list, OUTSIDE, **{"X-Forwarded-For": INSIDE}))


def test_behind_a_trusted_proxy_the_forwarded_address_is_checked(app_with):
    client = app_with(stripe_webhook_source_networks=STRIPE_NETWORKS, trusted_proxy_count=1)
    proxy = "10.0.0.2"

    assert_refused(deliver_stripe(client, proxy, **{"X-Forwarded-For": OUTSIDE}))
    assert_refused(deliver_stripe(client, proxy, **{"X-Forwarded-For": f"{INSIDE}, {OUTSIDE}"}))
    assert deliver_stripe(client, proxy, **{"X-Forwarded-For": f"{OUTSIDE}, {INSIDE}"}).status_code == 200


def test_the_403_is_as_the_document_says(client_with_stripe_list):
    schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT))
    refused = deliver_stripe(client_with_stripe_list, OUTSIDE)

    assert refused.status_code == 403
    schema["/webhooks/stripe"]["POST"].Case().validate_response(refused)
