"""Prometheus metrics.

Counted where they happen: intake requests in the web process; deliveries, transitions and the
latency from a delivery accepted to the transition it caused in the workers, which expose them with
Dramatiq's own metrics on Dramatiq's exposition port. What the database knows (bookings by state,
transitions and deliveries so far) the web's /metrics reads from it, so one scrape sees the whole
service whichever process did the work.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import threading
import time

import os

import peewee

from bookingflow import settings as settings_module

# prometheus_client's multiprocess mode (gunicorn's workers, the Procfile's worker) writes one file
# per process into this directory: it must exist before the first metric is made.
if settings_module.get().prometheus_multiproc_dir:
    os.makedirs(settings_module.get().prometheus_multiproc_dir, exist_ok=True)

from prometheus_client import Counter, Histogram  # noqa: E402
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

HTTP_REQUESTS = Counter("bookingflow_http_requests_total", "Intake requests by route, method and status.",
                        ["route", "method", "status"])
HTTP_SECONDS = Histogram("bookingflow_http_request_seconds", "Intake request latency by route.", ["route"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
DELIVERIES = Counter("bookingflow_deliveries_processed_total", "Stored deliveries and client requests processed, "
                     "by provider, type and outcome.", ["provider", "type", "outcome"])
TRANSITIONS = Counter("bookingflow_transitions_total", "State transitions made by this process.",
                      ["from_state", "to_state"])
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


class DatabaseCollector:
    """Gauges and counters read from the database at scrape time, cached briefly: a scrape every few
    seconds from several Prometheus servers costs one set of grouped, index-served queries."""

    CACHE_SECONDS = 10

    def __init__(self):
        self._lock = threading.Lock()
        self._cached_at = 0.0
        self._families: list = []

    def describe(self):
        return []  # nothing is read at registration: the database may not be there yet

    def collect(self):
        with self._lock:
            if time.monotonic() - self._cached_at > self.CACHE_SECONDS:
                self._families = self._read()
                self._cached_at = time.monotonic()
            return list(self._families)

    @staticmethod
    def _read() -> list:
        from models.tables import Booking, ProviderEvent, Transition

        bookings = GaugeMetricFamily("bookingflow_bookings", "Bookings by current state.", labels=["state"])
        for state, count in Booking.select(Booking.state, peewee.fn.COUNT(Booking.id)).group_by(Booking.state).tuples():
            bookings.add_metric([state], count)
        transitions = CounterMetricFamily("bookingflow_history_transitions", "Transitions in the bookings' history.",
                                          labels=["from_state", "to_state"])
        for from_state, to_state, count in (Transition.select(Transition.from_state, Transition.state,
                                                              peewee.fn.COUNT(Transition.id))
                                            .group_by(Transition.from_state, Transition.state).tuples()):
            transitions.add_metric([from_state or "", to_state], count)
        deliveries = CounterMetricFamily("bookingflow_deliveries", "Accepted deliveries and client requests, by "
                                         "provider, type and outcome.", labels=["provider", "type", "outcome"])
        for provider, kind, outcome, count in (ProviderEvent.select(ProviderEvent.provider, ProviderEvent.type,
                                                                    ProviderEvent.outcome, peewee.fn.COUNT(ProviderEvent.id))
                                               .group_by(ProviderEvent.provider, ProviderEvent.type, ProviderEvent.outcome)
                                               .tuples()):
            deliveries.add_metric([provider, kind, outcome or "pending"], count)
        return [bookings, transitions, deliveries]
