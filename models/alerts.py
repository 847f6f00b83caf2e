"""Critical incidents for operators: recorded once per key, then sent by the worker's `send_alert`
(POSTed to ALERT_WEBHOOK_URL, or logged when no URL is set); the scheduler resends what is unsent."""

from __future__ import annotations

import logging

import peewee

from bookingflow import broker
from models.db import database, utcnow, write_transaction
from models.states import update_fields
from models.tables import Alert

log = logging.getLogger(__name__)


def raise_alert(key: str, kind: str, text: str, booking_id: str | None = None) -> bool:
    """Record the incident and queue it; False if this incident was already raised."""
    alert = record_alert(key, kind, text, booking_id)
    if alert is None:
        return False
    queue_alert(alert)
    return True


def record_alert(key: str, kind: str, text: str, booking_id: str | None = None) -> Alert | None:
    """Record the incident without queueing it, so that it commits with the change it reports (a
    booking's flag and its alert are seen together); None if it was already raised. Queue what it
    returns with `queue_alert` once the transaction has committed: a worker may read it at once."""
    try:
        with database.atomic():  # a savepoint inside the caller's transaction: a repeat leaves it usable
            alert = Alert.create(key=key[:255], kind=kind, text=text[:2000], booking=booking_id)
    except peewee.IntegrityError:
        return None
    log.error("alert %s: %s", kind, text)
    return alert


def queue_alert(alert: Alert | None) -> None:
    """Hand a recorded alert to the worker that sends it (nothing for None, an alert already raised)."""
    if alert is None:
        return
    try:
        broker.send(broker.SEND_ALERT, alert.id)
    except Exception:  # the broker is down: the scheduler's sweep sends unsent alerts
        log.warning("alert %s stored, not yet sent", alert.id)


def flag_booking(booking_id: str, reason: str, alert_key: str, alert_kind: str, alert_text: str, **fields) -> None:
    """Flag a booking for an operator (with `fields`, more of its columns) and record the alert in one
    transaction, so whoever sees the flag also finds the alert; the alert is queued after the commit."""
    with write_transaction():
        update_fields(booking_id, flagged_at=fields.pop("flagged_at", None) or utcnow(), flag_reason=reason[:500],
                      **fields)
        alert = record_alert(alert_key, alert_kind, alert_text, booking_id)
    queue_alert(alert)
