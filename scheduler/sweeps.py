"""Sweeps: find what is due and hand it to the same idempotent jobs webhooks and clients trigger.

Each sweep is a function `sweep(now) -> int` that reads due rows only (each query is served by an
index on the column it filters, so its cost follows the due rows, not the table), handles them one
at a time, and returns how many it handled. A booking is claimed by a compare-and-set that pushes
its next check forward first: a second scheduler finds it taken, and a booking whose check keeps
failing backs off instead of crowding out the others.
"""

from __future__ import annotations

import datetime as dt
import logging

from bookingflow import broker
from bookingflow import settings as settings_module
from models.alerts import raise_alert
from models.states import claim_check
from models.tables import Alert, Booking, Outbox, Payment, ProviderEvent, ScheduledRun, documents_missing

log = logging.getLogger(__name__)

BATCH = 100
MIN_EVENT_GRACE = dt.timedelta(seconds=30)
OUTBOX_GRACE = dt.timedelta(minutes=1)
ALERT_GRACE = dt.timedelta(minutes=1)
MAX_EVENT_ATTEMPTS = 20
ALERT_AFTER_EVENT_ATTEMPTS = 5
CHECK_BACKOFF_BASE = dt.timedelta(seconds=30)
CHECK_BACKOFF_MAX = dt.timedelta(hours=1)
PRUNE_BATCH = 1000


def _send_each(actor_name: str, rows) -> int:
    """Queue the job of each row again, one at a time; how many were queued."""
    count = 0
    for row in rows:
        broker.send(actor_name, row.id)
        count += 1
    return count


def check_backoff(attempts: int) -> dt.timedelta:
    return min(CHECK_BACKOFF_BASE * (2 ** min(attempts, 16)), CHECK_BACKOFF_MAX)


def claim_due_bookings(now: dt.datetime) -> int:
    """Bookings whose next check is due: claimed, then reconciled with the providers by a job."""
    due = (
        Booking.select(Booking.id, Booking.next_check_at, Booking.check_attempts)
        .where(Booking.next_check_at <= now)
        .order_by(Booking.next_check_at)
        .limit(BATCH)
    )
    claimed = 0
    for row in due:
        if claim_check(row.id, row.next_check_at, now + check_backoff(row.check_attempts)):
            # The sweep's clock goes with the job, so both judge the booking's timeouts alike.
            broker.send(broker.RECONCILE_BOOKING, row.id, now.isoformat())
            claimed += 1
    return claimed


def event_grace() -> dt.timedelta:
    """How long a stored delivery or request may wait for its worker before it counts as lost: two
    sweep intervals (two minutes by default), and never less than 30 seconds."""
    return max(MIN_EVENT_GRACE, 2 * dt.timedelta(seconds=settings_module.get().sweep_interval_seconds))


def requeue_unprocessed_events(now: dt.datetime) -> int:
    """Deliveries and client requests stored but never processed (the broker lost the message, or
    it died in retries)."""
    due = (
        ProviderEvent.select(ProviderEvent.id, ProviderEvent.attempts, ProviderEvent.provider, ProviderEvent.type,
                             ProviderEvent.event_id, ProviderEvent.booking)
        .where(ProviderEvent.processed_at.is_null(), ProviderEvent.received_at < now - event_grace(),
               ProviderEvent.attempts < MAX_EVENT_ATTEMPTS)
        .order_by(ProviderEvent.received_at)
        .limit(BATCH)
    )
    count = 0
    for event in due:
        if event.attempts >= ALERT_AFTER_EVENT_ATTEMPTS:
            raise_alert(f"delivery_failing:{event.id}", "delivery_failing",
                        f"{event.provider} {event.type} {event.event_id} failed {event.attempts} times",
                        event.booking_id)
        broker.send(broker.PROCESS_EVENT, event.id)
        count += 1
    return count


def resend_unsent_emails(now: dt.datetime) -> int:
    """Outbox rows whose message was lost, or whose sender died mid-send (never a withheld one)."""
    due = (
        Outbox.select(Outbox.id)
        .where(Outbox.sendable(now), Outbox.created_at < now - OUTBOX_GRACE)
        .order_by(Outbox.created_at)
        .limit(BATCH)
    )
    return _send_each(broker.SEND_EMAIL, due)


def resend_unsent_alerts(now: dt.datetime) -> int:
    due = Alert.select(Alert.id).where(Alert.sent_at.is_null(), Alert.created_at < now - ALERT_GRACE).limit(BATCH)
    return _send_each(broker.SEND_ALERT, due)


def prune_old_payloads(now: dt.datetime) -> int:
    """Raw payloads of processed events go after PAYLOAD_RETENTION_DAYS; the rows and the history stay."""
    cutoff = now - dt.timedelta(days=settings_module.get().payload_retention_days)
    # Oldest first, in the order of the partial index on received_at WHERE payload IS NOT NULL: the
    # planner then walks that index. Without the ORDER BY it chose a sequential scan (it takes the few
    # rows still carrying a payload among the old ones for many), whose cost grew with the history.
    old = (
        ProviderEvent.select(ProviderEvent.id)
        .where(ProviderEvent.received_at < cutoff, ProviderEvent.processed_at.is_null(False),
               ProviderEvent.payload.is_null(False))
        .order_by(ProviderEvent.received_at)
        .limit(PRUNE_BATCH)
    )
    ids = [event.id for event in old]
    if not ids:
        return 0
    return ProviderEvent.update(payload=None).where(ProviderEvent.id.in_(ids)).execute()


def report_drift_daily(now: dt.datetime) -> int:
    """Once a day, from DRIFT_REPORT_HOUR (UTC) on: the drift report (jobs/drift.py), sent to a worker,
    once its day is claimed: a second scheduler, or this one a minute later, finds it taken."""
    if now.hour < settings_module.get().drift_report_hour:
        return 0
    day = now.date().isoformat()
    if not ScheduledRun.claim("drift_report", day):
        return 0
    broker.send(broker.REPORT_DRIFT, day)
    return 1


# How long, and how often, a paid payment's receipt or invoice is asked of Stripe again.
DOCUMENTS_WINDOW = dt.timedelta(days=3)
DOCUMENTS_RECHECK = dt.timedelta(minutes=10)


def collect_missing_receipts(now: dt.datetime) -> int:
    """Paid payments of the last few days whose receipt or invoice Stripe had not yet: claimed (their
    last check pushed to now, a compare-and-set), then asked again by a job."""
    due = (
        Payment.select(Payment.id, Payment.documents_checked_at)
        .where(documents_missing(), Payment.created_at > now - DOCUMENTS_WINDOW,
               Payment.documents_checked_at.is_null() | (Payment.documents_checked_at < now - DOCUMENTS_RECHECK))
        .order_by(Payment.created_at)
        .limit(BATCH)
    )
    claimed = 0
    for row in due:
        previous = (Payment.documents_checked_at.is_null() if row.documents_checked_at is None
                    else Payment.documents_checked_at == row.documents_checked_at)
        if Payment.update(documents_checked_at=now).where(Payment.id == row.id, previous).execute():
            broker.send(broker.COLLECT_RECEIPTS, row.id)
            claimed += 1
    return claimed


SWEEPS = (claim_due_bookings, requeue_unprocessed_events, resend_unsent_emails, resend_unsent_alerts, prune_old_payloads,
          collect_missing_receipts)
# Run by a job of their own (scheduler/__init__.py), at the same interval: once a day, not every sweep.
DAILY = (report_drift_daily,)
