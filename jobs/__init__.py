"""Dramatiq actors. Importing this package builds the broker from the settings, then the actors.

`dramatiq jobs` (the Procfile's worker) and the web process both import it; so does `bookingflow dev`,
after it has configured its embedded settings.
"""

import dramatiq

from bookingflow import logs
from models.bootstrap import open_configured_database, service_settings

logs.configure_unless_configured()  # the Procfile's worker runs `dramatiq --skip-logging`: JSON lines
settings = service_settings()

from jobs.broker import build_broker  # noqa: E402  (after the settings: it sets up metrics from them)

open_configured_database(settings)
broker = build_broker(settings.broker_url)
dramatiq.set_broker(broker)

from jobs import alerts, client_requests, events, flow, outbox, reconcile  # noqa: E402  (actors need the broker first)

__all__ = ["alerts", "broker", "client_requests", "events", "flow", "outbox", "reconcile"]
