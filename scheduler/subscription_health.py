"""The sweep that notices a dead Calendly webhook subscription.

Calendly retries failed deliveries for 24 hours, then disables the subscription without telling
anyone; from then on no booking hears of its invitee until the reconciliation sweep asks. This sweep
asks Calendly, every CALENDLY_SUBSCRIPTION_CHECK_SECONDS, whether the subscription to this service is
active with every event we act on, and alerts once per incident: per disabled or incomplete
subscription (its URI), and per day while none exists. `bookingflow calendly subscribe` repairs it.
"""

from __future__ import annotations

import datetime as dt
import logging

from bookingflow import settings as settings_module
from bookingflow.providers import calendly_client, calendly_subscription
from models.alerts import raise_alert

log = logging.getLogger(__name__)

ALERT_KIND = "calendly_subscription"
REPAIR = "run `bookingflow calendly subscribe`"


def incident(found: calendly_subscription.Health, url: str, now: dt.datetime) -> str:
    """The alert's key: one alert per incident, not one per sweep."""
    if found.problem == "missing":
        return f"calendly_subscription_missing:{url}:{now:%Y-%m-%d}"
    return f"calendly_subscription_{found.problem}:{found.subscription['uri']}"


def check_calendly_subscription(now: dt.datetime) -> int:
    """1 when the subscription is missing, disabled or lacks an event (alerted), else 0."""
    url = calendly_subscription.callback_url(settings_module.get())
    try:
        found = calendly_subscription.health(calendly_subscription.standing(), url)
    except calendly_client.CalendlyError as exc:
        # Not the subscription's fault: the next run asks again, and `bookingflow check` tells why.
        log.warning("could not read Calendly's webhook subscriptions: %s", exc)
        return 0
    if found.problem is None:
        return 0
    raise_alert(incident(found, url, now), ALERT_KIND, f"Calendly webhook subscription: {found.describe(url)}; {REPAIR}")
    return 1

