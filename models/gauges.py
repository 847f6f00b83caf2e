"""What the database knows, as Prometheus metrics: bookings by state, transitions and deliveries so far,
read at scrape time by the web's /metrics."""

from __future__ import annotations

import threading
import time

import peewee
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from models.tables import Booking, ProviderEvent, Transition


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
