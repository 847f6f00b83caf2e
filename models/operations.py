"""What operators do to bookings and stored deliveries, shared by the command line (ops/) and the
console (console/): finding bookings (stuck, by e-mail), retrying one, replaying deliveries, and asking
the workers to cancel one.

Forcing a state is models.states.force; these are the rest. Work for the workers goes by name through
the broker, so neither caller loads the workers' code.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets

import peewee

from bookingflow import broker, crypto
from bookingflow import settings as settings_module
from bookingflow.deliveries import CANCEL, OPERATOR
from models.inbox import reopen_event, store
from models.states import RESTING, BookingNotFound, State, timeout_for, unflag
from models.tables import Booking, ProviderEvent

# Outcomes of a processed event that mean it did nothing useful and may deserve a replay.
FAILED_OUTCOMES = ("invalid", "stale", "unhandled", "conflict", "unmatched", "foreign_payment", "wrong_event_type",
                   "unrequested_slot")


def stuck_bookings(now: dt.datetime):
    """Bookings in a non-resting state for longer than its timeout."""
    current = settings_module.get()
    for state in State:
        if state in RESTING:
            continue
        timeout = timeout_for(state, current.state_timeouts, current.payment_hold_minutes)
        yield from Booking.select().where(Booking.state == state.value, Booking.state_changed_at < now - timeout)


def email_matches(address: str):
    """Bookings of `address`: by its keyed hash (under every listed key, so a rotation under way still
    finds them), or by the plaintext column for rows written before a key was set, which have no hash."""
    normalized = crypto.normalize_email(address)
    plain = Booking.email_hash.is_null() & peewee.fn.LOWER(peewee.fn.TRIM(Booking.email)).in_(
        (normalized, crypto.ESCAPED + normalized))
    hashes = crypto.email_hashes(address)
    return (Booking.email_hash.in_(hashes) | plain) if hashes else plain


def failed_events() -> peewee.Expression:
    """Deliveries that failed, did nothing useful, or keep failing before they are processed."""
    return (ProviderEvent.outcome.in_(FAILED_OUTCOMES)
            | (ProviderEvent.processed_at.is_null() & (ProviderEvent.attempts > 0)))


def retry(booking_id: str, queue: bool = True) -> Booking:
    """Run the booking's current step again, whatever its flag or backoff says; BookingNotFound. It is
    made due at once, then queued when `queue`; without (a process with no broker, beside `bookingflow
    dev`), the scheduler's next sweep of due bookings queues it."""
    booking = Booking.by_id(booking_id)
    if booking is None:
        raise BookingNotFound(booking_id)
    unflag(booking_id)
    if queue:
        broker.send(broker.RECONCILE_BOOKING, booking_id)
    return booking


def replay(event: ProviderEvent, queue: bool = True) -> None:
    """Process a stored delivery again. Safe: handlers are idempotent, transitions dedupe on the cause.
    It is reopened with its attempts forgotten, then queued when `queue`; without, the scheduler's sweep
    of unprocessed deliveries queues it (even one it had given up on)."""
    reopen_event(event.id, fresh=True)
    if queue:
        broker.send(broker.PROCESS_EVENT, event.id)


def cancel(booking_id: str, in_full: bool, operator: str) -> ProviderEvent:
    """Ask the workers to cancel the booking, refunding by its policy or, `in_full`, all that was paid:
    stored in the inbox first (a lost message is found again by the scheduler's sweep), then queued.
    The operator's reason belongs to the caller's audit, never to the client's e-mail."""
    if Booking.by_id(booking_id) is None:
        raise BookingNotFound(booking_id)
    body = {"refund": "full" if in_full else "policy", "operator": operator}
    event, _ = store(OPERATOR, f"{CANCEL}:{booking_id}:{secrets.token_hex(8)}", CANCEL, booking_id, json.dumps(body))
    broker.send(broker.PROCESS_EVENT, event.id)
    return event
