"""Critical incidents for operators: recorded once per key, then sent by the worker's `send_alert`
(POSTed to ALERT_WEBHOOK_URL, or logged when no URL is set); the scheduler resends what is unsent."""

from __future__ import annotations

import logging

import peewee

from bookingflow import broker
from models.tables import Alert

log = logging.getLogger(__name__)


def raise_alert(key: str, kind: str, text: str, booking_id: str | None = None) -> bool:
    """Record the incident and queue it; False if this incident was already raised."""
    try:
        alert = Alert.create(key=key[:255], kind=kind, text=text[:2000], booking=booking_id)
    except peewee.IntegrityError:
        return False
    log.error("alert %s: %s", kind, text)
    try:
        broker.send(broker.SEND_ALERT, alert.id)
    except Exception:  # the broker is down: the scheduler's sweep sends unsent alerts
        log.warning("alert %s stored, not yet sent", alert.id)
    return True
