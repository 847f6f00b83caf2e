"""Dramatiq actors. Importing this package builds the broker from the settings, then the actors.

`dramatiq jobs` (the Procfile's worker) and the web process both import it; so does `bookingflow dev`,
after it has configured its embedded settings.
"""

import dramatiq

from bookingflow.bootstrap import open_configured_database, service_settings
from jobs.broker import build_broker

settings = service_settings()
open_configured_database(settings)
broker = build_broker(settings.broker_url)
dramatiq.set_broker(broker)

from jobs import alerts, client_requests, events, flow, outbox, reconcile  # noqa: E402  (actors need the broker first)

__all__ = ["alerts", "broker", "client_requests", "events", "flow", "outbox", "reconcile"]
