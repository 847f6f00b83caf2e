"""Sending the alerts operators are raised (models.alerts): POSTed as JSON to ALERT_WEBHOOK_URL
(Slack-compatible: a `text` field), or logged when no URL is set."""

from __future__ import annotations

import logging

import dramatiq
import requests

from bookingflow import broker
from bookingflow import settings as settings_module
from models.db import utcnow
from models.tables import Alert

log = logging.getLogger(__name__)


def deliver(alert_id: int) -> bool:
    alert = Alert.get_or_none(Alert.id == alert_id)
    if alert is None or alert.sent_at is not None:
        return False
    Alert.update(attempts=Alert.attempts + 1).where(Alert.id == alert_id).execute()
    url = settings_module.get().alert_webhook_url
    if url:
        response = requests.post(url, timeout=10, json={
            "text": f"bookingflow {alert.kind}: {alert.text}", "kind": alert.kind,
            "booking_id": alert.booking_id, "raised_at": alert.created_at.isoformat(),
        })
        response.raise_for_status()
    # An incident is delivered at most once per receiving endpoint that answered 2xx.
    return bool(Alert.update(sent_at=utcnow()).where(Alert.id == alert_id, Alert.sent_at.is_null()).execute())


@dramatiq.actor(actor_name=broker.SEND_ALERT, max_retries=10, min_backoff=5_000, max_backoff=600_000, max_age=24 * 3600_000, time_limit=30_000)
def send_alert(alert_id: int) -> None:
    deliver(alert_id)
