"""The sandbox's webhook endpoints (Stripe) and webhook subscriptions (Calendly), through the clients
real code uses against the real providers: stripe-python, and plain HTTP for Calendly."""

from __future__ import annotations

import pytest
import requests
import stripe

from support import suite


@pytest.fixture
def stripe_api(sandbox):
    sandbox.stripe.clear_webhook_endpoints()
    yield stripe.StripeClient(suite.STRIPE_KEY, base_addresses={"api": sandbox.base + "/stripe"})
    sandbox.stripe.clear_webhook_endpoints()


def test_stripe_webhook_endpoints_are_created_listed_updated_and_deleted(stripe_api):
    created = stripe_api.v1.webhook_endpoints.create(params={
        "url": "https://frontend.example/webhooks/stripe", "enabled_events": ["checkout.session.completed"],
        "api_version": "2026-10-28.endive"})
    assert created.secret.startswith("whsec_") and created.status == "enabled"

    updated = stripe_api.v1.webhook_endpoints.update(created.id, params={"disabled": True, "enabled_events": ["*"]})
    listed = stripe_api.v1.webhook_endpoints.list()
    retrieved = stripe_api.v1.webhook_endpoints.retrieve(created.id)

    assert (updated.status, updated.enabled_events) == ("disabled", ["*"])
    assert [e.id for e in listed.data] == [created.id] and "secret" not in retrieved
    assert stripe_api.v1.webhook_endpoints.delete(created.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError):
        stripe_api.v1.webhook_endpoints.retrieve(created.id)


def test_a_stripe_webhook_endpoint_needs_events(stripe_api):
    with pytest.raises(stripe.InvalidRequestError, match="enabled_events"):
        stripe_api.v1.webhook_endpoints.create(params={"url": "https://frontend.example/hook"})


def test_the_stripe_balance_says_test_mode(stripe_api):
    assert stripe_api.v1.balance.retrieve().livemode is False


@pytest.fixture
def calendly(sandbox):
    sandbox.calendly.clear_webhook_subscriptions()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {suite.CALENDLY_TOKEN}"
    yield session
    sandbox.calendly.clear_webhook_subscriptions()
    sandbox.calendly.revoke_grants()


def test_calendly_subscriptions_are_listed_by_scope_and_one_url_is_taken_once(sandbox, calendly):
    base, org, user = sandbox.base + "/calendly", sandbox.calendly.organization_uri, sandbox.calendly.host_uri
    body = {"url": "https://frontend.example/a", "events": ["invitee.created"], "organization": org,
            "scope": "organization", "signing_key": "k"}
    first = calendly.post(base + "/webhook_subscriptions", json=body)
    again = calendly.post(base + "/webhook_subscriptions", json=body)
    calendly.post(base + "/webhook_subscriptions", json={**body, "url": "https://frontend.example/b",
                                                         "scope": "user", "user": user})

    organization = calendly.get(base + "/webhook_subscriptions", params={"organization": org, "scope": "organization"})
    mine = calendly.get(base + "/webhook_subscriptions", params={"organization": org, "scope": "user", "user": user})

    assert first.status_code == 201 and again.status_code == 409
    assert [s["callback_url"] for s in organization.json()["collection"]] == ["https://frontend.example/a"]
    assert [s["scope"] for s in mine.json()["collection"]] == ["user"]
    assert calendly.get(base + "/webhook_subscriptions", params={"scope": "user"}).status_code == 400


def test_a_calendly_member_who_is_not_an_admin_may_not_subscribe_the_organization(sandbox, calendly):
    sandbox.calendly.grant(suite.CALENDLY_TOKEN, role="user")
    answer = calendly.post(sandbox.base + "/calendly/webhook_subscriptions", json={
        "url": "https://frontend.example/a", "events": ["invitee.created"],
        "organization": sandbox.calendly.organization_uri, "scope": "organization"})

    assert answer.status_code == 403


def test_calendly_disables_a_subscription_and_deletes_it(sandbox, calendly):
    base = sandbox.base + "/calendly"
    created = calendly.post(base + "/webhook_subscriptions", json={
        "url": "https://frontend.example/a", "events": ["invitee.created", "invitee.canceled"],
        "organization": sandbox.calendly.organization_uri, "scope": "organization"}).json()["resource"]
    path = "/webhook_subscriptions/" + created["uri"].rsplit("/", 1)[-1]

    disabled = requests.post(base + "/_sandbox" + path + "/disable").json()

    assert disabled["state"] == "disabled" and disabled["retry_started_at"]
    assert calendly.get(base + path).json()["resource"]["state"] == "disabled"
    assert calendly.delete(base + path).status_code == 204
    assert calendly.get(base + path).status_code == 404
