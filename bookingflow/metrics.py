"""Prometheus metrics.

Counted where they happen: intake requests in the web process; deliveries, transitions and the
latency from a delivery accepted to the transition it caused in the workers, which expose them with
Dramatiq's own metrics on Dramatiq's exposition port. What the database knows (bookings by state,
transitions and deliveries so far) the web's /metrics reads from it (models.gauges), so one scrape
sees the whole service whichever process did the work.

In prometheus_client's multiprocess mode (gunicorn's workers, the Procfile's worker) each process
writes its counts into PROMETHEUS_MULTIPROC_DIR, which must exist before the first metric is made:
each process's entry point makes it (bookingflow.gunicorn_conf, jobs).
"""

from __future__ import annotations

import contextvars
import datetime as dt

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("bookingflow_http_requests_total", "Intake requests by route, method and status.",
                        ["route", "method", "status"])
HTTP_SECONDS = Histogram("bookingflow_http_request_seconds", "Intake request latency by route.", ["route"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
DELIVERIES = Counter("bookingflow_deliveries_processed_total", "Stored deliveries and client requests processed, "
                     "by provider, type and outcome.", ["provider", "type", "outcome"])
TRANSITIONS = Counter("bookingflow_transitions_total", "State transitions made by this process.",
                      ["from_state", "to_state"])
# 1 in each web worker whose listener is connected and the trigger on (intake/poll_versions.py); summed
# over the live workers, it should equal their number. Fewer means polls read the database there.
VERSIONS_LISTENING = Gauge("bookingflow_web_versions_listening", "Web workers listening for the bookings' "
                           "versions, which answer a matching status poll without a query.",
                           multiprocess_mode="livesum")
DELIVERY_TO_TRANSITION = Histogram(
    "bookingflow_delivery_to_transition_seconds", "From a delivery accepted by the intake to the transition it caused.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))

# When the delivery being processed was accepted (set by the job that processes it).
event_received_at: contextvars.ContextVar[dt.datetime | None] = contextvars.ContextVar("event_received_at", default=None)


def request(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route, method, str(status)).inc()
    HTTP_SECONDS.labels(route).observe(seconds)


def delivery(provider: str, event_type: str, outcome: str) -> None:
    DELIVERIES.labels(provider, event_type, outcome).inc()


def transition(from_state: str | None, to_state: str) -> None:
    TRANSITIONS.labels(from_state or "", to_state).inc()
    received = event_received_at.get()
    if received is not None:
        DELIVERY_TO_TRANSITION.observe(max(0.0, (dt.datetime.now(dt.timezone.utc) - received).total_seconds()))
