"""The dashboard's figures over a period: conversion, payment success, cancellations and refunds,
revenue per currency per day, and how long a webhook takes to become visible.

Days are UTC days. Amounts are kept per currency and never added across currencies.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass

from models.states import State
from models.tables import Booking, Payment, ProviderEvent, Refund, Transition

# The funnel's steps: a booking counts at a step once its history reached any of the step's states.
FUNNEL = (
    ("created", (State.CALENDLY_SCHEDULING,)),
    ("scheduled", (State.CALENDLY_SCHEDULED, State.CALENDLY_WEBHOOK_RECEIVED)),
    ("paid", (State.PAYMENT_SUCCEEDED,)),
    ("confirmed", (State.BOOKING_CONFIRMED,)),
)
LATENCY_BUCKETS = ((1, "under 1 s"), (5, "1 to 5 s"), (30, "5 to 30 s"), (300, "30 s to 5 min"), (None, "over 5 min"))
PROVIDERS = ("stripe", "calendly")


@dataclass
class Dashboard:
    since: dt.datetime
    until: dt.datetime
    days: list[dt.date]
    funnel: list[tuple[str, int]]
    payments: dict[str, int]
    payment_success: float | None
    cancellations: dict[str, dict[dt.date, int]]
    refunded: dict[str, int]  # per currency
    revenue: dict[str, dict[dt.date, int]]  # per currency, per day
    latency_buckets: list[tuple[str, int]]
    latency_median: float | None
    latency_p95: float | None


def _days(since: dt.datetime, until: dt.datetime) -> list[dt.date]:
    first, last = since.date(), (until - dt.timedelta(microseconds=1)).date()
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def funnel(since: dt.datetime, until: dt.datetime) -> list[tuple[str, int]]:
    created = Booking.select(Booking.id).where(Booking.created_at >= since, Booking.created_at < until)
    steps = []
    for name, states in FUNNEL:
        reached = (Transition.select(Transition.booking).distinct()
                   .where(Transition.booking.in_(created), Transition.state.in_([s.value for s in states])).count())
        steps.append((name, reached))
    return steps


def latencies(since: dt.datetime, until: dt.datetime) -> list[float]:
    """Seconds from a provider's delivery being received to the transition it caused: the first
    transition of its booking written between the delivery's arrival and its being marked processed
    (the handler writes the transition before it marks the delivery). Deliveries that changed no state
    are left out: nothing new became visible."""
    seconds = []
    events = (ProviderEvent.select(ProviderEvent.booking, ProviderEvent.received_at, ProviderEvent.processed_at)
              .where(ProviderEvent.provider.in_(PROVIDERS), ProviderEvent.booking.is_null(False),
                     ProviderEvent.processed_at.is_null(False),
                     ProviderEvent.received_at >= since, ProviderEvent.received_at < until))
    for event in events:
        caused = (Transition.select(Transition.at)
                  .where(Transition.booking == event.booking_id, Transition.at >= event.received_at,
                         Transition.at <= event.processed_at)
                  .order_by(Transition.at).first())
        if caused is not None:
            seconds.append((caused.at - event.received_at).total_seconds())
    return seconds


def _bucketed(seconds: list[float]) -> list[tuple[str, int]]:
    counts = Counter()
    for value in seconds:
        label = next(label for limit, label in LATENCY_BUCKETS if limit is None or value < limit)
        counts[label] += 1
    return [(label, counts[label]) for _, label in LATENCY_BUCKETS]


def build(since: dt.datetime, until: dt.datetime) -> Dashboard:
    days = _days(since, until)
    payments = Counter(row.status for row in Payment.select(Payment.status)
                       .where(Payment.created_at >= since, Payment.created_at < until))
    settled = payments["paid"] + payments["failed"] + payments["expired"]
    cancellations: dict[str, dict[dt.date, int]] = {"cancelled": defaultdict(int), "abandoned": defaultdict(int),
                                                    "refunds": defaultdict(int)}
    for row in Transition.select(Transition.state, Transition.at).where(
            Transition.state.in_([State.BOOKING_CANCELLED.value, State.IDLE.value]),
            Transition.at >= since, Transition.at < until):
        cancellations["cancelled" if row.state == State.BOOKING_CANCELLED.value else "abandoned"][row.at.date()] += 1
    refunded: dict[str, int] = defaultdict(int)
    for refund in Refund.select(Refund.amount, Refund.currency, Refund.created_at).where(
            Refund.status == "succeeded", Refund.created_at >= since, Refund.created_at < until):
        cancellations["refunds"][refund.created_at.date()] += 1
        refunded[refund.currency] += refund.amount
    # What Stripe charged (Payment.amount once paid), on the day the checkout was opened.
    revenue: dict[str, dict[dt.date, int]] = defaultdict(lambda: defaultdict(int))
    for payment in Payment.select(Payment.amount, Payment.currency, Payment.created_at).where(
            Payment.status == "paid", Payment.created_at >= since, Payment.created_at < until):
        revenue[payment.currency][payment.created_at.date()] += payment.amount
    seconds = sorted(latencies(since, until))
    return Dashboard(
        since=since, until=until, days=days, funnel=funnel(since, until),
        payments=dict(payments), payment_success=payments["paid"] / settled if settled else None,
        cancellations={name: dict(values) for name, values in cancellations.items()},
        refunded=dict(refunded), revenue={currency: dict(values) for currency, values in sorted(revenue.items())},
        latency_buckets=_bucketed(seconds),
        latency_median=statistics.median(seconds) if seconds else None,
        latency_p95=seconds[min(len(seconds) - 1, int(len(seconds) * 0.95))] if seconds else None,
    )
