"""Sweeps: find what is late and hand it to the same jobs that webhooks and clients trigger.

Each sweep is a function `sweep(now) -> int` that looks at due rows only (each query is served by an
index on the column it filters), enqueues one idempotent job per row, and returns how many. Two
schedulers running the same sweep at once cost a duplicate message, never a duplicate action.
"""

from __future__ import annotations

import datetime as dt
import logging

from bookingflow import settings as settings_module
from jobs.events import process_event
from jobs.flow import CLOSING, TRANSIENT, advance_booking, release_held_slot
from jobs.outbox import CLAIM_TIMEOUT, send_email
from models.states import State
from models.tables import Booking, Outbox, ProviderEvent

log = logging.getLogger(__name__)

BATCH = 100
# Give the normal path time to act before a sweep steps in.
EVENT_GRACE = dt.timedelta(minutes=2)
ENTRY_ACTION_GRACE = dt.timedelta(minutes=1)
OUTBOX_GRACE = dt.timedelta(minutes=1)
MAX_EVENT_ATTEMPTS = 20


def _send_each(query, actor) -> int:
    count = 0
    for row in query.limit(BATCH):
        actor.send(row.id)
        count += 1
    return count


def requeue_unprocessed_events(now: dt.datetime) -> int:
    """Deliveries stored but never processed (the broker lost the message, or it died in retries)."""
    return _send_each(
        ProviderEvent.select(ProviderEvent.id).where(
            ProviderEvent.processed_at.is_null(), ProviderEvent.received_at < now - EVENT_GRACE,
            ProviderEvent.attempts < MAX_EVENT_ATTEMPTS,
        ).order_by(ProviderEvent.received_at),
        process_event,
    )


def resume_stalled_bookings(now: dt.datetime) -> int:
    """Bookings in a state whose entry action should already have moved them on, and cancelled or
    abandoned bookings whose closing work (release, refund) is unfinished."""
    transient = Booking.state.in_([state.value for state in TRANSIENT])
    closing = Booking.state.in_([state.value for state in CLOSING]) & Booking.settled_at.is_null()
    return _send_each(
        Booking.select(Booking.id).where(transient | closing, Booking.state_changed_at < now - ENTRY_ACTION_GRACE)
        .order_by(Booking.state_changed_at),
        advance_booking,
    )


def release_expired_holds(now: dt.datetime) -> int:
    """PAYMENT_FAILED for longer than PAYMENT_HOLD_MINUTES: the slot is released."""
    hold = dt.timedelta(minutes=settings_module.get().payment_hold_minutes)
    return _send_each(
        Booking.select(Booking.id).where(Booking.state == State.PAYMENT_FAILED.value,
                                         Booking.state_changed_at < now - hold).order_by(Booking.state_changed_at),
        release_held_slot,
    )


def resend_unsent_emails(now: dt.datetime) -> int:
    """Outbox rows whose message was lost, or whose sender died mid-send."""
    return _send_each(
        Outbox.select(Outbox.id).where(
            Outbox.sent_at.is_null(), Outbox.created_at < now - OUTBOX_GRACE,
            Outbox.claimed_at.is_null() | (Outbox.claimed_at < now - CLAIM_TIMEOUT),
        ).order_by(Outbox.created_at),
        send_email,
    )


SWEEPS = (requeue_unprocessed_events, resume_stalled_bookings, release_expired_holds, resend_unsent_emails)
