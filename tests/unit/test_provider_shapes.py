"""The providers' own published shapes, delivered as they deliver them: signed, through the webhook
endpoints, then run by the event processor, again, and out of order. Stripe's API reference example
objects and event envelope, and Calendly's webhook bodies old and new (tests/fixtures/README.md).
A legitimate shape is never `invalid`, a repeat changes nothing more, and an event bookingflow does
not act on is accepted and ignored."""

from __future__ import annotations

import copy
import hashlib
import time

import pytest
import requests

from bookingflow import deliveries as d
from bookingflow.providers.calendly_payloads import delivery_identity
from jobs import calendly_events, flow, stripe_events
from jobs.outcomes import Result
from models.states import State
from models.tables import Dispute, Payment, ProviderEvent, Refund
from support.providers import calendly_signature, encode, fixture, stripe_signature
from support.records import booking_in, fresh, handled, paid_at_stripe
from support.suite import CALENDLY_KEY, STRIPE_WEBHOOK_SECRET

EVENT_URI = "https://api.calendly.com/scheduled_events/EVTSHAPES"


def stripe_delivery(event_type: str, obj: dict, event_id: str, previous: dict | None = None) -> dict:
    """Stripe's event envelope as its API reference shows it (api_version, previous_attributes,
    request, livemode) around `obj`."""
    event = fixture("stripe/event_api_reference.json")
    event.update(id=event_id, type=event_type, created=int(time.time()))
    event["data"] = {"object": obj, **({"previous_attributes": previous} if previous else {})}
    return event


def posted(client, provider: str, body: dict) -> ProviderEvent:
    """`body` delivered to our endpoint, signed as the provider signs; its stored row."""
    raw = encode(body)
    if provider == d.STRIPE:
        header = {"Stripe-Signature": stripe_signature(raw, STRIPE_WEBHOOK_SECRET)}
    else:
        header = {"Calendly-Webhook-Signature": calendly_signature(raw, CALENDLY_KEY)}
    response = client.post(f"/webhooks/{provider}", data=raw, headers={"Content-Type": "application/json", **header})
    assert response.status_code == 200, response.get_data(as_text=True)
    if provider == d.STRIPE:
        event_id = body["id"]
    else:
        event_id = delivery_identity(body)[0] or f"{body['event']}:sha256:{hashlib.sha256(raw).hexdigest()}"
    return ProviderEvent.get(ProviderEvent.provider == provider, ProviderEvent.event_id == event_id)


def run(client, provider: str, body: dict, handler):
    return handled(posted(client, provider, body), handler)


@pytest.fixture
def paying(app, quiet_sandbox, session_type):
    booking = booking_in(session_type, State.CALENDLY_WEBHOOK_RECEIVED, calendly_event_uri=EVENT_URI,
                         calendly_invitee_uri=f"{EVENT_URI}/invitees/INV", amount_due=0)
    assert flow.advance(booking.id) == State.PAYMENT_PROCESSING
    return fresh(booking)


def api_reference_session(ours: dict, **changes) -> dict:
    """The API reference's Checkout Session, completed as Stripe completes ours."""
    session = fixture("stripe/checkout_session_api_reference.json")
    session.update({key: ours[key] for key in ("id", "client_reference_id", "metadata", "amount_subtotal",
                                               "amount_total", "currency", "payment_intent")},
                   status="complete", payment_status="paid", url=None, **changes)
    return session


@pytest.fixture
def confirmed(paying, quiet_sandbox, client):
    ours = paid_at_stripe(quiet_sandbox, paying)
    outcome = run(client, d.STRIPE, stripe_delivery(d.CHECKOUT_COMPLETED, api_reference_session(ours), "evt_shape_paid"),
                  stripe_events.checkout_paid)
    assert outcome.result == Result.ADVANCED
    return fresh(paying)


# --- Stripe -----------------------------------------------------------------------------------------

def test_the_api_references_checkout_session_paid_confirms_the_booking_once(paying, quiet_sandbox, client):
    session = api_reference_session(paid_at_stripe(quiet_sandbox, paying))
    body = stripe_delivery(d.CHECKOUT_COMPLETED, session, "evt_shape_cs",
                           previous={"status": "open", "payment_status": "unpaid"})
    assert run(client, d.STRIPE, body, stripe_events.checkout_paid).result == Result.ADVANCED
    assert run(client, d.STRIPE, body, stripe_events.checkout_paid).result == Result.DUPLICATE
    booking = fresh(paying)
    assert (booking.state, booking.amount_paid) == (State.BOOKING_CONFIRMED.value, 12000)
    assert booking.payment_intent_id == session["payment_intent"]


def test_a_checkout_session_with_its_payment_intent_expanded_keeps_the_intents_id(paying, quiet_sandbox, client):
    ours = paid_at_stripe(quiet_sandbox, paying)
    intent = {**fixture("stripe/payment_intent.json"), "id": ours["payment_intent"], "status": "succeeded"}
    session = api_reference_session(ours, payment_intent=intent, customer={"id": "cus_shape", "object": "customer"})
    body = stripe_delivery(d.CHECKOUT_COMPLETED, session, "evt_shape_cs_expanded")
    assert run(client, d.STRIPE, body, stripe_events.checkout_paid).result == Result.ADVANCED
    # The intent is what every later refund and dispute of the booking is matched by.
    assert fresh(paying).payment_intent_id == ours["payment_intent"]
    assert Payment.get(Payment.checkout_session_id == ours["id"]).payment_intent_id == ours["payment_intent"]


def test_the_api_references_open_session_without_a_payment_intent_expiring_is_handled(paying, quiet_sandbox, client):
    (ours,) = [s for s in quiet_sandbox.objects("checkout.session") if s["id"] == paying.checkout_session_id]
    session = {**api_reference_session(ours), "status": "expired", "payment_status": "unpaid", "payment_intent": None}
    body = stripe_delivery(d.CHECKOUT_EXPIRED, session, "evt_shape_expired")
    assert run(client, d.STRIPE, body, stripe_events.checkout_failed).result == Result.ADVANCED
    # Again: the booking no longer has that checkout open, so nothing moves.
    assert run(client, d.STRIPE, body, stripe_events.checkout_failed).result == Result.RECORDED
    assert fresh(paying).state == State.PAYMENT_FAILED.value


def test_a_pyr_refund_needing_action_then_succeeding_in_any_order_settles_once(confirmed, client):
    refund = {**fixture("stripe/refund.json"), "id": "pyr_1ShapesAbc", "amount": 2000, "charge": "py_1ShapesAbc",
              "payment_intent": confirmed.payment_intent_id, "status": "requires_action",
              "destination_details": {"type": "us_bank_transfer", "us_bank_transfer": {
                  "reference": None, "reference_status": "pending"}}}
    succeeded = stripe_delivery(d.REFUND_UPDATED, {**refund, "status": "succeeded"}, "evt_shape_re_2",
                                previous={"status": "requires_action"})
    late = stripe_delivery(d.REFUND_CREATED, refund, "evt_shape_re_1")
    for body in (succeeded, late, succeeded):
        outcome = run(client, d.STRIPE, body, stripe_events.refund_event)
        assert outcome.result not in (Result.INVALID, Result.UNMATCHED), outcome
    (row,) = Refund.select().where(Refund.stripe_refund_id == "pyr_1ShapesAbc")
    assert (row.status, row.amount) == ("succeeded", 2000)
    assert fresh(confirmed).amount_refunded == 2000


def test_a_py_charge_without_a_payment_intent_refunded_is_unmatched_not_invalid(app, client):
    charge = {**fixture("stripe/charge.json"), "id": "py_1ShapesNoIntent", "payment_intent": None, "refunded": True}
    outcome = run(client, d.STRIPE, stripe_delivery(d.CHARGE_REFUNDED, charge, "evt_shape_py"),
                  stripe_events.charge_refunded)
    assert outcome.result == Result.UNMATCHED


def test_the_api_references_dispute_warning_is_recorded_against_the_booking_once(confirmed, quiet_sandbox, client):
    (intent,) = [i for i in quiet_sandbox.objects("payment_intent") if i["id"] == confirmed.payment_intent_id]
    dispute = {**fixture("stripe/dispute.json"), "id": "du_1Shapes", "amount": 12000, "charge": intent["latest_charge"]}
    assert dispute["payment_intent"] is None and dispute["status"] == "warning_needs_response"
    body = stripe_delivery("charge.dispute.created", dispute, "evt_shape_du")
    for _ in range(2):
        outcome = run(client, d.STRIPE, body, stripe_events.dispute_event)
        assert outcome.result not in (Result.INVALID, Result.UNMATCHED), outcome
    (row,) = Dispute.select()
    assert (row.payment_intent_id, row.status) == (confirmed.payment_intent_id, "warning_needs_response")
    assert fresh(confirmed).state == State.BOOKING_CONFIRMED.value


# --- Calendly ---------------------------------------------------------------------------------------

def full_invitee_body(kind: str, slot: dict, sandbox, utm_content: str) -> dict:
    """The 2024 body: the invitee with no_show, reconfirmation, payment, routing form, and the
    scheduled event embedded, about the sandbox's slot."""
    body = copy.deepcopy(fixture("calendly/webhook_invitee_created_full.json"))
    (event,) = [e for e in sandbox.objects("scheduled_event") if e["uri"] == slot["event_uri"]]
    body["event"] = kind
    body["payload"].update(uri=slot["invitee_uri"], event=slot["event_uri"])
    body["payload"]["tracking"]["utm_content"] = utm_content
    body["payload"]["scheduled_event"].update({key: event[key] for key in ("uri", "start_time", "end_time",
                                                                           "event_type", "status")})
    return body


def test_the_full_2024_invitee_created_takes_the_slot_once(scheduling, slot, quiet_sandbox, client):
    body = full_invitee_body(d.INVITEE_CREATED, slot, quiet_sandbox, scheduling.id)
    body["payload"].update(reconfirmation={"created_at": "2024-01-01T10:00:00Z", "confirmed_at": None},
                           routing_form_submission="https://api.calendly.com/routing_form_submissions/AAAA",
                           payment={"external_id": "ch_x", "provider": "stripe", "amount": 50.0, "currency": "USD",
                                    "terms": None, "successful": True})
    assert run(client, d.CALENDLY, body, calendly_events.invitee_created).result == Result.ADVANCED
    before = fresh(scheduling)
    assert before.calendly_invitee_uri == slot["invitee_uri"]
    outcome = run(client, d.CALENDLY, body, calendly_events.invitee_created)
    assert outcome.result not in (Result.INVALID, Result.ADVANCED), outcome
    assert (fresh(scheduling).state, fresh(scheduling).calendly_event_uri) == (before.state, before.calendly_event_uri)


def test_the_legacy_v1_invitee_created_takes_the_slot(scheduling, slot, quiet_sandbox, client):
    body = copy.deepcopy(fixture("calendly/webhook_v1_invitee_created.json"))
    (event,) = [e for e in quiet_sandbox.objects("scheduled_event") if e["uri"] == slot["event_uri"]]
    body["payload"]["event"].update(uuid=slot["event_uri"].rsplit("/", 1)[1], start_time=event["start_time"],
                                    end_time=event["end_time"])
    body["payload"]["event_type"]["uuid"] = event["event_type"].rsplit("/", 1)[1]
    body["payload"]["invitee"]["uuid"] = slot["invitee_uri"].rsplit("/", 1)[1]
    body["payload"]["tracking"]["utm_content"] = scheduling.id
    assert run(client, d.CALENDLY, body, calendly_events.invitee_created).result == Result.ADVANCED
    assert fresh(scheduling).calendly_invitee_uri == slot["invitee_uri"]
    assert run(client, d.CALENDLY, body, calendly_events.invitee_created).result != Result.INVALID


@pytest.mark.parametrize("path", ["calendly/webhook_invitee_no_show_created.json",
                                  "calendly/openapi_webhook_routing_form_submission_created.json"])
def test_calendly_events_bookingflow_does_not_act_on_are_accepted_and_ignored(app, client, path):
    body = fixture(path)
    for _ in range(2):
        event = posted(client, d.CALENDLY, body)
        assert handled(event, None).result == Result.IGNORED
    assert ProviderEvent.select().where(ProviderEvent.provider == d.CALENDLY).count() == 1


@pytest.fixture
def confirmed_slot(scheduling, slot, quiet_sandbox, client):
    """The booking holding its slot (taken by the full 2024 body), paid and confirmed."""
    body = full_invitee_body(d.INVITEE_CREATED, slot, quiet_sandbox, scheduling.id)
    assert run(client, d.CALENDLY, body, calendly_events.invitee_created).result == Result.ADVANCED
    ours = paid_at_stripe(quiet_sandbox, scheduling)
    body = stripe_delivery(d.CHECKOUT_COMPLETED, api_reference_session(ours), "evt_shape_paid_slot")
    assert run(client, d.STRIPE, body, stripe_events.checkout_paid).result == Result.ADVANCED
    return fresh(scheduling)


def test_a_full_2024_reschedule_arriving_cancel_half_first_moves_the_booking_once(confirmed_slot, quiet_sandbox,
                                                                                  client):
    response = requests.post(f"{quiet_sandbox.base}/calendly/_sandbox/reschedule", timeout=10,
                             json={"invitee_uri": confirmed_slot.calendly_invitee_uri})
    assert response.status_code == 201, response.text
    new = response.json()
    old = {"event_uri": confirmed_slot.calendly_event_uri, "invitee_uri": confirmed_slot.calendly_invitee_uri}
    canceled = full_invitee_body(d.INVITEE_CANCELED, old, quiet_sandbox, confirmed_slot.id)
    canceled["payload"].update(status="canceled", rescheduled=True, new_invitee=new["invitee_uri"],
                               cancellation={"canceled_by": "Joe", "canceler_type": "invitee", "reason": None,
                                             "created_at": "2024-01-02T09:00:00.000000Z"})
    created = full_invitee_body(d.INVITEE_CREATED, new, quiet_sandbox, confirmed_slot.id)
    created["payload"]["old_invitee"] = old["invitee_uri"]
    for body, handler in ((canceled, calendly_events.invitee_canceled), (created, calendly_events.invitee_created),
                          (canceled, calendly_events.invitee_canceled), (created, calendly_events.invitee_created)):
        outcome = run(client, d.CALENDLY, body, handler)
        assert outcome.result not in (Result.INVALID, Result.CANCELLED), outcome
    booking = fresh(confirmed_slot)
    assert (booking.state, booking.calendly_invitee_uri) == (State.BOOKING_CONFIRMED.value, new["invitee_uri"])
    assert Refund.select().count() == 0


@pytest.mark.parametrize("shape", ["v1", "2024"])
def test_the_host_cancelling_in_either_shape_cancels_and_refunds_once(confirmed_slot, quiet_sandbox, client, shape):
    slot = {"event_uri": confirmed_slot.calendly_event_uri, "invitee_uri": confirmed_slot.calendly_invitee_uri}
    if shape == "v1":
        body = copy.deepcopy(fixture("calendly/webhook_v1_invitee_canceled.json"))
        body["payload"]["event"]["uuid"] = slot["event_uri"].rsplit("/", 1)[1]
        body["payload"]["invitee"]["uuid"] = slot["invitee_uri"].rsplit("/", 1)[1]
        body["payload"]["tracking"]["utm_content"] = confirmed_slot.id
        (event,) = [e for e in quiet_sandbox.objects("scheduled_event") if e["uri"] == slot["event_uri"]]
        body["payload"]["event"].update(start_time=event["start_time"], end_time=event["end_time"])
    else:
        body = full_invitee_body(d.INVITEE_CANCELED, slot, quiet_sandbox, confirmed_slot.id)
        body["payload"].update(status="canceled", cancellation={
            "canceled_by": "Host", "canceler_type": "host", "reason": "host ill", "created_at": "2024-01-02T09:00:00Z"})
        body["payload"]["scheduled_event"]["status"] = "canceled"
    assert run(client, d.CALENDLY, body, calendly_events.invitee_canceled).result == Result.CANCELLED
    refunds = Refund.select().count()
    assert refunds >= 1
    outcome = run(client, d.CALENDLY, body, calendly_events.invitee_canceled)
    assert outcome.result not in (Result.INVALID, Result.CANCELLED), outcome
    assert Refund.select().count() == refunds
