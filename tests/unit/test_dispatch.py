"""jobs/dispatch.py: every delivery bookingflow acts on has its handler, and nothing else has one."""

from __future__ import annotations

import pytest

from bookingflow import deliveries
from jobs import calendly_events, client_requests, dispatch, operator_requests, stripe_events


def test_the_table_names_exactly_the_deliveries_bookingflow_acts_on():
    assert set(dispatch.HANDLERS) == set(deliveries.HANDLED)


@pytest.mark.parametrize(("provider", "event_type"), sorted(deliveries.HANDLED))
def test_each_handled_delivery_has_a_callable_handler(provider, event_type):
    assert callable(dispatch.handler_for(provider, event_type))


@pytest.mark.parametrize(("provider", "event_type"), [
    ("stripe", "customer.created"), ("stripe", "invitee.created"), ("calendly", "checkout.session.completed"),
    ("calendly", "routing_form_submission.created"), ("client", "booking.reschedule"), ("github", "push"),
])
def test_any_other_delivery_has_no_handler(provider, event_type):
    assert dispatch.handler_for(provider, event_type) is None
    assert not deliveries.is_handled(provider, event_type)


def test_each_provider_is_handled_by_its_own_module():
    homes = {deliveries.STRIPE: stripe_events, deliveries.CALENDLY: calendly_events, deliveries.CLIENT: client_requests,
             deliveries.OPERATOR: operator_requests}
    for (provider, event_type), handler in dispatch.HANDLERS.items():
        assert handler.__module__ == homes[provider].__name__, (provider, event_type)


@pytest.mark.parametrize(("event_type", "handler"), [
    ("checkout.session.completed", "checkout_paid"), ("checkout.session.async_payment_succeeded", "checkout_paid"),
    ("checkout.session.async_payment_failed", "checkout_failed"), ("checkout.session.expired", "checkout_failed"),
    ("refund.created", "refund_event"), ("refund.updated", "refund_event"), ("refund.failed", "refund_event"),
    ("charge.refunded", "charge_refunded"),
])
def test_stripe_events_go_to_the_handler_of_their_kind(event_type, handler):
    assert dispatch.handler_for("stripe", event_type) is getattr(stripe_events, handler)
