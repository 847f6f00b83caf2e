"""The Checkout Session of a payment attempt: its parameters, its idempotency key and its expiry.

Idempotency. The key is the booking's and its payment attempt's (`bookingflow-checkout-{id}-{attempt}`),
and the attempt's parameters are fixed when it starts (its expires_at included), so a create repeated
by a retried job, or by stripe-python after a lost answer, is answered with the one session Stripe made.
Stripe also saves a refusal under the key (at least 24 hours) and repeats it to every later request
with that key. So after a definitive refusal (a 400/402/404: Stripe executed the request and created
nothing) the attempt moves on, with a compare-and-set on `payment_attempt` and a fresh expiry, and the
next run asks under the next attempt's key. That never charges twice:
- the attempt moves on only after a refusal under its key, which made no session; a lost answer, a
  409, a 429 or a 5xx keeps the key, whose repeat returns whatever the first request did;
- a session made under an older key whose answer never reached us (a worker died before recording
  it) was never recorded: its URL was never shown to anyone, so nobody can pay it, and
  Stripe expires it on its own; only the session the booking records is offered, and only a session
  on record counts as the booking's money (jobs/ledger.py).

Expiry. Stripe accepts an expires_at 30 minutes to 24 hours after the session's creation, measured on
Stripe's clock when the request arrives. A request that left late (a retry, a rate limit wait) or a
clock that disagrees with Stripe's would be refused, and that refusal saved under the key. So the
attempt's expiry keeps CLOCK_MARGIN inside Stripe's window, checked at the moment of each call: when
the call comes too late for it, a new attempt starts, its expiry computed then (jobs/flow.py). A
CHECKOUT_EXPIRES_MINUTES shorter than Stripe's minimum plus the margin gives Stripe a longer expiry;
our own sweep still expires the session at our time (`payable_until`).

Amounts. Stripe refuses a session due less than its minimum for the currency (stripe_amounts): such
an attempt is not sent, but moved to ERROR_PAYMENT with a message the client may read, and alerted.
"""

from __future__ import annotations

import datetime as dt

import stripe

from bookingflow import settings as settings_module
from bookingflow.error_classes import ErrorClass, failure
from bookingflow.providers import stripe_amounts, stripe_client
from jobs import outbox
from models.alerts import raise_alert
from models.db import utcnow
from models.states import TransitionRefused, Trigger, apply, update_fields
from models.tables import Booking, SessionType

STRIPE_MIN_LIFETIME = dt.timedelta(minutes=30)
STRIPE_MAX_LIFETIME = dt.timedelta(hours=24)
# Room kept inside Stripe's window at the moment of the call: clock skew between us and Stripe, and
# a slow request (stripe-python's own retries, a short rate limit wait).
CLOCK_MARGIN = dt.timedelta(minutes=5)
# How late after the attempt's start its create may still be sent (a retried job) with its expiry.
RETRY_SLACK = dt.timedelta(minutes=2)
SHORTEST = STRIPE_MIN_LIFETIME + CLOCK_MARGIN
LONGEST = STRIPE_MAX_LIFETIME - CLOCK_MARGIN

AMOUNT_TOO_SMALL = ("This session's price is below the smallest payment our payment provider accepts, so it "
                    "cannot be paid online. We have been alerted and will contact you.")


class CheckoutRefused(TransitionRefused):
    """No session for this attempt: the booking was moved to ERROR_PAYMENT instead. (advance() reads
    the booking again after it, as after any move it did not make itself.)"""


def _configured_lifetime() -> dt.timedelta:
    return dt.timedelta(minutes=settings_module.get().checkout_expires_minutes)


def attempt_expiry(now: dt.datetime) -> dt.datetime:
    """The expires_at of an attempt starting now: the configured lifetime, kept within Stripe's window
    less the margin even when sent RETRY_SLACK late."""
    lifetime = min(max(_configured_lifetime(), SHORTEST) + RETRY_SLACK, LONGEST)
    return (now + lifetime).replace(microsecond=0)


def attempt_still_creatable(booking: Booking, now: dt.datetime) -> bool:
    """Whether the attempt's expires_at, sent now, lies inside Stripe's window with the margin."""
    expires = booking.checkout_expires_at
    return expires is not None and SHORTEST <= expires - now <= LONGEST


def payable_until(session: dict) -> dt.datetime:
    """When the sweep closes the checkout: Stripe's expires_at, or the configured lifetime after the
    session's creation when that is sooner (a lifetime shorter than Stripe accepts)."""
    expires = dt.datetime.fromtimestamp(session["expires_at"], dt.timezone.utc)
    created = session.get("created")
    if not isinstance(created, int) or isinstance(created, bool):
        return expires
    return min(expires, dt.datetime.fromtimestamp(created, dt.timezone.utc) + _configured_lifetime())


def idempotency_key(booking: Booking) -> str:
    return f"bookingflow-checkout-{booking.id}-{booking.payment_attempt}"


def priced_type(booking: Booking) -> SessionType:
    """The session type the attempt pays for: a reschedule's new type, whose difference it is, or the
    booking's own."""
    return booking.reschedule_session_type if booking.reschedule_session_type_id else booking.session_type


def session_params(booking: Booking) -> dict:
    public_url = settings_module.get().public_url
    session_type = priced_type(booking)
    metadata = {"booking_id": booking.id, "payment_attempt": str(booking.payment_attempt)}
    price_data = {
        "currency": booking.currency,
        "unit_amount": booking.amount_due,
        "product_data": {"name": session_type.name[:250]},
    }
    params = {
        "mode": "payment",
        "line_items": [{"quantity": 1, "price_data": price_data}],
        "client_reference_id": booking.id,
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata},
        "customer_email": booking.email,
        "expires_at": int(booking.checkout_expires_at.timestamp()),
        "success_url": f"{public_url}/bookings/{booking.id}?checkout=success",
        "cancel_url": f"{public_url}/bookings/{booking.id}?checkout=cancel",
        # The client pays in the currency they chose, the amount asked: Adaptive Pricing (Stripe
        # converting to the customer's local currency) would charge another.
        "adaptive_pricing": {"enabled": False},
    }
    if session_type.promotion_codes:
        params["allow_promotion_codes"] = True
    if session_type.automatic_tax:
        # Tax on top of the price (Checkout collects the address it needs): the price is what the
        # session type says, before tax, whatever the account's default tax behavior.
        params["automatic_tax"] = {"enabled": True}
        price_data["tax_behavior"] = "exclusive"
    if session_type.invoice:
        params["invoice_creation"] = {"enabled": True, "invoice_data": {
            "description": session_type.name[:250], "metadata": {"booking_id": booking.id}}}
    return params


def create_session(booking: Booking):
    minimum = stripe_amounts.below_minimum(booking.amount_due, booking.currency)
    if minimum is not None:
        _refuse_amount(booking, f"{stripe_amounts.display(booking.amount_due, booking.currency)} is below Stripe's "
                                f"minimum of {stripe_amounts.display(minimum, booking.currency)}")
    try:
        return stripe_client.create_checkout_session(session_params(booking), idempotency_key(booking))
    except stripe.IdempotencyError as exc:
        # The key was first used with other parameters (the session type's name or switches changed
        # between a lost answer and this retry): Stripe will refuse it for good. A session the first
        # request may have made was never recorded, so never offered: a new attempt is safe.
        _next_attempt(booking, exc)
        raise
    except stripe.StripeError as exc:
        if not stripe_client.is_definitive(exc):
            raise
        _next_attempt(booking, exc)
        if exc.code == "amount_too_small":  # a currency whose minimum we do not know
            _refuse_amount(booking, f"Stripe: {exc.user_message or exc}")
        raise


def _next_attempt(booking: Booking, exc: stripe.StripeError) -> None:
    """Stripe refused the attempt's create for good and repeats that refusal for its key: the next
    run asks under the next attempt's key, with an expiry computed then (once, whoever saw it first)."""
    update_fields(booking.id, only_if=Booking.payment_attempt == booking.payment_attempt,
                  payment_attempt=booking.payment_attempt + 1, checkout_expires_at=attempt_expiry(utcnow()),
                  last_error=(f"checkout of attempt {booking.payment_attempt} refused by Stripe ({exc.http_status} "
                              f"{exc.code or exc.__class__.__name__}): {exc.user_message or exc}")[:500])


def _refuse_amount(booking: Booking, detail: str) -> None:
    """Not chargeable at Stripe: ERROR_PAYMENT with a message for the client, and an operator alerted
    (the session type's price, or the booking's amount due, needs a person)."""
    apply(booking.id, Trigger.onPaymentError, cause=f"amount-below-minimum-{booking.payment_attempt}",
          effects=outbox.queue_for_transition, last_error=f"checkout not created: {detail}"[:500],
          failure=failure(ErrorClass.VALIDATION, AMOUNT_TOO_SMALL))
    raise_alert(f"amount_below_minimum:{booking.id}", "amount_below_minimum",
                f"booking {booking.id} ({booking.session_type.slug}) cannot be paid: {detail}", booking.id)
    raise CheckoutRefused(booking.id, booking.state, Trigger.initiatePayment.value)
