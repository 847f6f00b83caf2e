"""Error classes and payload validation: what failed, of which class, shown to the client safely;
invalid payloads stored with the reason and never reaching a handler."""

from __future__ import annotations

import datetime as dt

import pytest
import requests
import stripe

from bookingflow.providers.calendly_client import CalendlyError
from bookingflow.providers.limits import RateLimited
from support.suite import CALENDLY_KEY, STRIPE_WEBHOOK_SECRET
from support.waiting import wait_until
from bookingflow.providers.calendly_payloads import PayloadInvalid
from bookingflow.error_classes import ErrorClass, classify
from jobs.reconcile import reconcile
from models.db import utcnow
from models.tables import Booking, ProviderEvent
from support.providers import calendly_invitee_delivery, calendly_signature, checkout_session, encode, stripe_event, stripe_signature


def post(url: str, body: bytes, header: str, signature: str) -> requests.Response:
    return requests.post(url, data=body, timeout=10, headers={"Content-Type": "application/json", header: signature})


@pytest.mark.parametrize("exc, expected", [
    (PayloadInvalid("payload.uri: bad"), ErrorClass.VALIDATION),
    (RateLimited("Stripe", 60), ErrorClass.TRANSIENT),
    (requests.ConnectionError(), ErrorClass.TRANSIENT),
    (stripe.APIConnectionError("down"), ErrorClass.TRANSIENT),
    (stripe.APIError("stripe had a problem"), ErrorClass.TRANSIENT),
    (CalendlyError(503, "unavailable"), ErrorClass.TRANSIENT),
    (CalendlyError(None, "unreachable"), ErrorClass.TRANSIENT),
    (stripe.CardError("declined", None, "card_declined"), ErrorClass.PAYMENT),
    (stripe.AuthenticationError("bad key"), ErrorClass.INTEGRATION),
    (stripe.InvalidRequestError("bad param", "expires_at"), ErrorClass.INTEGRATION),
    (CalendlyError(403, "forbidden"), ErrorClass.INTEGRATION),
    (KeyError("a bug"), ErrorClass.SYSTEM),
], ids=lambda value: value.__class__.__name__ if isinstance(value, Exception) else value.value)
def test_every_failure_falls_in_one_of_the_five_classes(exc, expected):
    assert classify(exc) == expected


def test_an_invalid_stripe_payload_is_kept_with_its_reason_and_shown_as_a_validation_error(frontend, live_server):
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    session = checkout_session(view["id"], 5000)
    session["amount_total"] = "a lot"
    body = encode(stripe_event("checkout.session.completed", session))
    assert post(f"{live_server}/webhooks/stripe", body, "Stripe-Signature",
                stripe_signature(body, STRIPE_WEBHOOK_SECRET)).status_code == 200
    event = wait_until(lambda: ProviderEvent.get_or_none(ProviderEvent.outcome == "invalid"), message="invalid")
    assert "data.object.amount_total" in event.detail
    shown = frontend.status(view["id"])
    assert shown["state"] == "PAYMENT_PROCESSING"  # nothing changed: the handler never ran
    assert shown["error"]["class"] == "validation" and "could not be read" in shown["error"]["message"]


def test_an_invalid_calendly_payload_moves_its_booking_to_the_webhook_error_state(frontend, live_server, sandbox):
    sandbox.hold_deliveries("calendly")
    booking = frontend.create_booking("short-call")
    slot = frontend.schedule_in_calendly(booking["scheduling_url"])
    frontend.report_scheduled(booking["id"], slot)
    frontend.wait_for_state(booking["id"], "CALENDLY_SCHEDULED")
    bad = calendly_invitee_delivery("invitee.created", event_uri=slot["event_uri"], invitee_uri="not a uri",
                                    utm_content=booking["id"])
    body = encode(bad)
    assert post(f"{live_server}/webhooks/calendly", body, "Calendly-Webhook-Signature",
                calendly_signature(body, CALENDLY_KEY)).status_code == 200
    view = frontend.wait_for_state(booking["id"], "ERROR_WEBHOOK")
    assert view["error"]["class"] == "validation"
    assert view["history"][-1]["error"] == view["error"]
    assert "payload.uri" in Booking.get_by_id(booking["id"]).last_error
    # The worker is fine: the real delivery, released now, is still processed.
    sandbox.hold_deliveries("calendly", False)
    wait_until(lambda: ProviderEvent.get_or_none(ProviderEvent.subject == slot["invitee_uri"],
                                                 ProviderEvent.processed_at.is_null(False)), message="processed")


def test_a_provider_refusing_our_request_shows_an_integration_error_until_the_booking_moves_on(frontend, sandbox):
    good_key = sandbox.config.stripe_secret_key
    sandbox.config.stripe_secret_key = "sk_test_rotated_away"
    try:
        booking = frontend.create_booking("short-call")
        frontend.schedule_in_calendly(booking["scheduling_url"])
        shown = wait_until(lambda: (lambda v: v if v["error"] else None)(frontend.status(booking["id"])),
                           message="the failure recorded")
        assert shown["error"] == {"class": "integration",
                                  "message": "We could not complete a step with our scheduling or payment partner; "
                                             "we are on it."}
        assert "sk_test" not in str(shown)
    finally:
        sandbox.config.stripe_secret_key = good_key
    reconcile(booking["id"], now=utcnow() + dt.timedelta(minutes=2))
    recovered = frontend.status(booking["id"])
    assert recovered["state"] == "PAYMENT_PROCESSING" and recovered["error"] is None
