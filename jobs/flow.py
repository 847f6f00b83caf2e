"""Moving a booking along the automatic part of its path.

`advance(booking_id)` looks at the booking's state and runs that state's entry action, again and
again, until the booking rests in a state that waits for the outside world (a client, Calendly or
Stripe). Every action is idempotent, so running it twice, or from two workers at once, or after a
worker died half-way, ends in the same place: one transition, one Checkout Session.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import dramatiq

from jobs import checkout
from models.db import utcnow
from models.states import State, Trigger, TransitionRefused, apply, update_fields
from models.tables import Booking

log = logging.getLogger(__name__)

# Enough steps for the longest automatic run (WEBHOOK_RECEIVED -> PENDING -> PROCESSING); a bound, so a
# bug can never spin a worker.
MAX_STEPS = 8


def _initiate_payment(booking: Booking) -> None:
    attempt = booking.payment_attempt + 1
    apply(
        booking.id, Trigger.initiatePayment, cause=f"attempt-{attempt}",
        payment_attempt=attempt, checkout_expires_at=checkout.attempt_expiry(utcnow()),
        checkout_session_id=None, checkout_url=None,
    )


def _create_checkout_session(booking: Booking) -> None:
    if not checkout.attempt_still_creatable(booking, utcnow()):
        # A retry long after the attempt began: its expires_at is too close for Stripe. Start a fresh
        # attempt (a new idempotency key) rather than send different parameters under the old key.
        update_fields(
            booking.id, payment_attempt=booking.payment_attempt + 1,
            checkout_expires_at=checkout.attempt_expiry(utcnow()),
        )
        booking = Booking.get_by_id(booking.id)
    session = checkout.create_session(booking)
    apply(
        booking.id, Trigger.onStripeSessionCreated, cause=session.id,
        checkout_session_id=session.id, checkout_url=session.url,
        checkout_expires_at=dt.datetime.fromtimestamp(session.expires_at, dt.timezone.utc),
    )


def _confirm(booking: Booking) -> None:
    apply(booking.id, Trigger.confirmBooking, cause=f"payment-{booking.checkout_session_id or booking.payment_intent_id}")


ENTRY_ACTIONS: dict[State, Callable[[Booking], None]] = {
    State.CALENDLY_WEBHOOK_RECEIVED: _initiate_payment,
    State.PAYMENT_PENDING: _create_checkout_session,
    State.PAYMENT_SUCCEEDED: _confirm,
}


def advance(booking_id: str) -> State | None:
    """Run entry actions until the booking rests; return where it rests (None if it does not exist)."""
    for _ in range(MAX_STEPS):
        booking = Booking.get_or_none(Booking.id == booking_id)
        if booking is None:
            return None
        action = ENTRY_ACTIONS.get(State(booking.state))
        if action is None:
            return State(booking.state)
        try:
            action(booking)
        except TransitionRefused:
            # Another worker moved the booking while we acted; look again.
            log.info("booking %s moved under us from %s", booking_id, booking.state)
    return State(Booking.get_by_id(booking_id).state)


@dramatiq.actor(max_retries=6, min_backoff=1_000, max_backoff=120_000, max_age=6 * 3600_000, time_limit=120_000)
def advance_booking(booking_id: str) -> None:
    advance(booking_id)
