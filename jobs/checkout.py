"""The Checkout Session of a payment attempt: its parameters and its idempotency key."""

from __future__ import annotations

import datetime as dt

from bookingflow import settings as settings_module
from bookingflow.providers import stripe_client
from models.tables import Booking

# Stripe wants expires_at at least 30 minutes after the session is created. The attempt's expiry is
# fixed when the attempt starts (so a retried create sends the very same parameters under the same
# idempotency key); a retry that comes later than this slack starts a new attempt instead.
MINIMUM_LIFETIME = dt.timedelta(minutes=30)
RETRY_SLACK = dt.timedelta(minutes=2)


def attempt_expiry(now: dt.datetime) -> dt.datetime:
    minutes = settings_module.get().checkout_expires_minutes
    lifetime = dt.timedelta(minutes=minutes)
    if lifetime < dt.timedelta(hours=24) - RETRY_SLACK:
        lifetime += RETRY_SLACK
    return (now + lifetime).replace(microsecond=0)


def attempt_still_creatable(booking: Booking, now: dt.datetime) -> bool:
    expires = booking.checkout_expires_at
    return expires is not None and expires - now >= MINIMUM_LIFETIME


def idempotency_key(booking: Booking) -> str:
    return f"bookingflow-checkout-{booking.id}-{booking.payment_attempt}"


def session_params(booking: Booking) -> dict:
    public_url = settings_module.get().public_url
    session_type = booking.session_type
    metadata = {"booking_id": booking.id, "payment_attempt": str(booking.payment_attempt)}
    return {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": booking.currency,
                    "unit_amount": booking.amount_due,
                    "product_data": {"name": session_type.name[:250]},
                },
            }
        ],
        "client_reference_id": booking.id,
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
        "customer_email": booking.email,
        "expires_at": int(booking.checkout_expires_at.timestamp()),
        "success_url": f"{public_url}/bookings/{booking.id}?checkout=success",
        "cancel_url": f"{public_url}/bookings/{booking.id}?checkout=cancel",
    }


def create_session(booking: Booking):
    return stripe_client.create_checkout_session(session_params(booking), idempotency_key(booking))
