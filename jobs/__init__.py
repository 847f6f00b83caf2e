"""The worker's entry point: `dramatiq jobs` (the Procfile's worker) loads this package.

As Dramatiq prescribes, it sets the broker up before any actor module is imported: the settings
(or a one-line stop), JSON logs, the database, the broker; then the actors, then the middleware
their jobs need. Nothing else in bookingflow reads the environment or connects when imported.
"""

from bookingflow import logs
from models.bootstrap import open_configured_database, prepare_metrics, service_settings

logs.configure_unless_configured()  # the Procfile's worker runs `dramatiq --skip-logging`: JSON lines
settings = service_settings()
prepare_metrics(settings)  # before the first metric is made, which importing the broker does

from bookingflow import broker as broker_module  # noqa: E402

open_configured_database(settings, "worker")
broker = broker_module.install(settings.broker_url)

from jobs import alerts, client_requests, drift, events, flow, middleware, outbox, receipts, reconcile  # noqa: E402  (actors need the broker first)

broker_module.install(settings.broker_url, [middleware.DatabaseConnections(), middleware.ErrorClassification()])

__all__ = ["alerts", "broker", "client_requests", "drift", "events", "flow", "outbox", "receipts", "reconcile"]
