"""Sweeps: find what is late and hand it to the same jobs that webhooks and clients trigger.

Each sweep is a function `sweep(now) -> int` that handles due rows one at a time and returns how
many it handled. They only enqueue idempotent jobs, so two schedulers running the same sweep at once
cost a duplicate message, never a duplicate action.
"""

from __future__ import annotations

import datetime as dt
import logging

from jobs.events import process_event
from jobs.flow import ENTRY_ACTIONS, advance_booking
from models.tables import Booking, ProviderEvent

log = logging.getLogger(__name__)

BATCH = 100
# Give the normal path time to act before a sweep steps in.
EVENT_GRACE = dt.timedelta(minutes=2)
ENTRY_ACTION_GRACE = dt.timedelta(minutes=1)
MAX_EVENT_ATTEMPTS = 20


def requeue_unprocessed_events(now: dt.datetime) -> int:
    """Deliveries stored but never processed (the broker lost the message, or it died in retries)."""
    due = (
        ProviderEvent.select(ProviderEvent.id)
        .where(
            ProviderEvent.processed_at.is_null(),
            ProviderEvent.received_at < now - EVENT_GRACE,
            ProviderEvent.attempts < MAX_EVENT_ATTEMPTS,
        )
        .order_by(ProviderEvent.received_at)
        .limit(BATCH)
    )
    count = 0
    for event in due:
        process_event.send(event.id)
        count += 1
    return count


def resume_stalled_bookings(now: dt.datetime) -> int:
    """Bookings resting in a state whose entry action should already have moved them on."""
    due = (
        Booking.select(Booking.id)
        .where(
            Booking.state.in_([state.value for state in ENTRY_ACTIONS]),
            Booking.state_changed_at < now - ENTRY_ACTION_GRACE,
        )
        .order_by(Booking.state_changed_at)
        .limit(BATCH)
    )
    count = 0
    for booking in due:
        advance_booking.send(booking.id)
        count += 1
    return count


SWEEPS = (requeue_unprocessed_events, resume_stalled_bookings)
