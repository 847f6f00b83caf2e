"""The deliveries bookingflow acts on, by name: the providers' event types and the client's requests.

The web stores every accepted delivery; those named here are queued for a job (jobs/dispatch.py maps
each to its handler), any other is kept and marked ignored at once. The client's requests travel the
same way, under the provider name "client", and an operator's (the console's cancellation) under "operator".
"""

from __future__ import annotations

STRIPE, CALENDLY, CLIENT, OPERATOR = "stripe", "calendly", "client", "operator"

# Stripe
CHECKOUT_COMPLETED = "checkout.session.completed"
ASYNC_PAYMENT_SUCCEEDED = "checkout.session.async_payment_succeeded"
ASYNC_PAYMENT_FAILED = "checkout.session.async_payment_failed"
CHECKOUT_EXPIRED = "checkout.session.expired"
REFUND_CREATED, REFUND_UPDATED, REFUND_FAILED = "refund.created", "refund.updated", "refund.failed"
CHARGE_REFUNDED = "charge.refunded"
DISPUTE_CREATED, DISPUTE_UPDATED, DISPUTE_CLOSED = "charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"
DISPUTE_FUNDS_WITHDRAWN, DISPUTE_FUNDS_REINSTATED = "charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated"
DISPUTE_EVENTS = (DISPUTE_CREATED, DISPUTE_UPDATED, DISPUTE_CLOSED, DISPUTE_FUNDS_WITHDRAWN, DISPUTE_FUNDS_REINSTATED)
# Calendly
INVITEE_CREATED, INVITEE_CANCELED = "invitee.created", "invitee.canceled"
# The client (POST /v1/bookings/<id>/...)
SCHEDULED, CANCEL, RETRY_PAYMENT = "booking.scheduled", "booking.cancel", "booking.retry_payment"
# POST /v1/bookings with an Idempotency-Key: stored answered (the booking is made in the request), for
# a repeat to find; no job acts on it.
CREATE = "booking.create"

HANDLED: frozenset[tuple[str, str]] = frozenset(
    {(STRIPE, kind) for kind in (CHECKOUT_COMPLETED, ASYNC_PAYMENT_SUCCEEDED, ASYNC_PAYMENT_FAILED, CHECKOUT_EXPIRED,
                                 REFUND_CREATED, REFUND_UPDATED, REFUND_FAILED, CHARGE_REFUNDED, *DISPUTE_EVENTS)}
    | {(CALENDLY, kind) for kind in (INVITEE_CREATED, INVITEE_CANCELED)}
    | {(CLIENT, kind) for kind in (SCHEDULED, CANCEL, RETRY_PAYMENT)}
    | {(OPERATOR, CANCEL)}
)


def is_handled(provider: str, event_type: str) -> bool:
    return (provider, event_type) in HANDLED
