"""The dashboard: its figures from the history, payments and deliveries, drawn as SVG on the server."""

from __future__ import annotations

import datetime as dt
import re

from models.db import utcnow
from models.states import State
from models.tables import Payment, ProviderEvent, Refund, Transition
from support.catalogue import make_session_type
from support.records import booking_in


def reached(booking, *states: State, at: dt.datetime) -> None:
    previous = None
    for number, state in enumerate(states):
        Transition.create(booking=booking.id, from_state=previous, state=state.value, trigger=f"t{number}",
                          cause=f"c{number}", at=at + dt.timedelta(seconds=number))
        previous = state.value


def test_the_dashboard_draws_conversion_payments_cancellations_revenue_per_currency_and_latency(
        operator, session_type, sandbox):
    now = utcnow() - dt.timedelta(minutes=1)  # everything a minute ago: the period ends when the page is read
    euros = make_session_type(sandbox.base, "euro-call", price=9000, currency="eur")
    confirmed = booking_in(session_type, State.BOOKING_CONFIRMED, created_at=now)
    reached(confirmed, State.CALENDLY_SCHEDULING, State.CALENDLY_SCHEDULED, State.PAYMENT_SUCCEEDED,
            State.BOOKING_CONFIRMED, at=now)
    scheduled_only = booking_in(session_type, State.PAYMENT_FAILED, created_at=now)
    reached(scheduled_only, State.CALENDLY_SCHEDULING, State.CALENDLY_WEBHOOK_RECEIVED, at=now)
    cancelled = booking_in(euros, State.REFUND_COMPLETED, created_at=now)
    reached(cancelled, State.CALENDLY_SCHEDULING, State.BOOKING_CANCELLED, at=now)
    Payment.create(booking=confirmed.id, attempt=1, checkout_session_id="cs_1", amount=12000, currency="usd",
                   status="paid", created_at=now)
    Payment.create(booking=scheduled_only.id, attempt=1, checkout_session_id="cs_2", amount=12000, currency="usd",
                   status="failed", created_at=now)
    Payment.create(booking=cancelled.id, attempt=1, checkout_session_id="cs_3", amount=9000, currency="eur",
                   status="paid", created_at=now)
    Refund.create(booking=cancelled.id, key="r", purpose="cancellation", payment_intent_id="pi", amount=4500,
                  currency="eur", status="succeeded", created_at=now)
    # A delivery received half a second before the transition it caused, marked processed just after.
    caused = Transition.get(Transition.booking == confirmed.id, Transition.state == "PAYMENT_SUCCEEDED")
    ProviderEvent.create(provider="stripe", event_id="evt_paid", type="checkout.session.completed", payload="{}",
                         booking=confirmed.id, received_at=caused.at - dt.timedelta(milliseconds=500),
                         processed_at=caused.at + dt.timedelta(milliseconds=5), outcome="advanced")

    html = operator.page("/?days=7")
    assert len(re.findall(r'<svg class="chart"', html)) == 6  # funnel, payments, cancellations, USD, EUR, latency
    assert "created 3 → scheduled 2 → paid 1 → confirmed 1" in html
    assert "66.7% of closed checkouts paid" in html  # 2 paid, 1 failed
    assert "Revenue in USD per day" in html and "Revenue in EUR per day" in html
    assert "$120.00" in html and "€90.00" in html and "210" not in html  # never summed across currencies
    assert "Refunded: €45.00" in html
    assert "median 0.50 s" in html
    assert "<script" not in html


def test_an_empty_dashboard_still_draws_and_says_there_is_nothing(operator):
    html = operator.page("/")
    assert html.count('<svg class="chart"') == 4
    assert "No payment in the period." in html and "no delivery changed a state" in html
