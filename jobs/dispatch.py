"""Which handler processes which stored delivery: one table, by provider and type.

A handler `(event: ProviderEvent, body: dict) -> Outcome` parses the body, finds the booking and
calls the decision (jobs/flow.py); the event processor (jobs/events.py) does the rest. The keys are
the deliveries bookingflow acts on (bookingflow.deliveries), which the web marks for processing.
"""

from __future__ import annotations

from collections.abc import Callable

from bookingflow import deliveries as d
from jobs import calendly_events, client_requests, operator_requests, stripe_events
from jobs.outcomes import Outcome

Handler = Callable[..., Outcome]

HANDLERS: dict[tuple[str, str], Handler] = {
    (d.STRIPE, d.CHECKOUT_COMPLETED): stripe_events.checkout_paid,
    (d.STRIPE, d.ASYNC_PAYMENT_SUCCEEDED): stripe_events.checkout_paid,
    (d.STRIPE, d.ASYNC_PAYMENT_FAILED): stripe_events.checkout_failed,
    (d.STRIPE, d.CHECKOUT_EXPIRED): stripe_events.checkout_failed,
    (d.STRIPE, d.REFUND_CREATED): stripe_events.refund_event,
    (d.STRIPE, d.REFUND_UPDATED): stripe_events.refund_event,
    (d.STRIPE, d.REFUND_FAILED): stripe_events.refund_event,
    (d.STRIPE, d.CHARGE_REFUNDED): stripe_events.charge_refunded,
    **{(d.STRIPE, kind): stripe_events.dispute_event for kind in d.DISPUTE_EVENTS},
    (d.CALENDLY, d.INVITEE_CREATED): calendly_events.invitee_created,
    (d.CALENDLY, d.INVITEE_CANCELED): calendly_events.invitee_canceled,
    (d.CLIENT, d.SCHEDULED): client_requests.scheduled,
    (d.CLIENT, d.CANCEL): client_requests.cancel,
    (d.CLIENT, d.RETRY_PAYMENT): client_requests.retry_payment,
    (d.OPERATOR, d.CANCEL): operator_requests.cancel,
}


def handler_for(provider: str, event_type: str) -> Handler | None:
    return HANDLERS.get((provider, event_type))
