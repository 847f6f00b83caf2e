"""What a unit test starts from: a booking already in the state under test (fixture data, written
directly, as tests/test_states.py does), deliveries stored through the inbox as the intake stores
them, and slots and payments made at the provider sandbox the way a client makes them. Everything
after that goes through the module under test."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import types

import requests

from models import inbox
from models.states import State
from models.tables import Booking, ProviderEvent, SessionType

LONG_AGO = dt.datetime(2024, 1, 1, 9, 30, tzinfo=dt.timezone.utc)


def booking_in(session_type: SessionType, state: State = State.CALENDLY_SCHEDULING, **fields) -> Booking:
    """A booking of `session_type` resting in `state`, owing its price (amount_due) unless told."""
    values = dict(
        session_type=session_type, state=state.value, email="ada@example.com", name="Ada Lovelace",
        amount=session_type.price, amount_due=session_type.price, currency=session_type.currency,
        state_changed_at=LONG_AGO, created_at=LONG_AGO, updated_at=LONG_AGO,
    )
    values.update(fields)
    return Booking.create(**values)


def fresh(booking: Booking) -> Booking:
    """The booking as its row is now."""
    return Booking.get_by_id(booking.id)


def checkout(session_id: str | None = None):
    """What ledger.record_session reads of a Checkout Session Stripe created: its id."""
    return types.SimpleNamespace(id=session_id or f"cs_test_{secrets.token_hex(16)}")


def stored(provider: str, event_type: str, body: dict, subject: str | None = None,
           event_id: str | None = None) -> ProviderEvent:
    """A delivery stored in the inbox as the intake stores it (not yet processed)."""
    event, _ = inbox.store(provider, event_id or f"{event_type}:{secrets.token_hex(8)}", event_type, subject,
                           json.dumps(body))
    return event


def scheduled_slot(sandbox, booking: Booking, of_type: SessionType | None = None, **options) -> dict:
    """A slot the client booked in (fake) Calendly through the booking's link (or, `of_type`, through
    another session type's page with the booking's utm_content): the sandbox's answer, with
    event_uri and invitee_uri."""
    scheduling_url = f"{(of_type or booking.session_type).scheduling_url}?utm_content={booking.id}"
    response = requests.post(f"{sandbox.base}/calendly/_sandbox/schedule", timeout=10,
                             json={"scheduling_url": scheduling_url, **options})
    assert response.status_code == 201, response.text
    return response.json()


def paid_at_stripe(sandbox, booking: Booking, outcome: str = "paid") -> dict:
    """The booking's open checkout paid by the client at the (fake) Stripe; its session as Stripe now
    describes it, for a checkout.session.completed body."""
    booking = fresh(booking)
    response = requests.post(booking.checkout_url + "/pay", json={"outcome": outcome}, timeout=10)
    assert response.status_code == 200, response.text
    (session,) = [s for s in sandbox.objects("checkout.session") if s["id"] == booking.checkout_session_id]
    return session


def handled(event: ProviderEvent, handler):
    """The stored delivery run as a worker runs it: by the event processor (jobs.events.process), which
    calls its handler (the one the dispatch table names, checked here) and then advances the booking the
    handler moved. A delivery stored before is processed again, as `bookingflow events replay` does."""
    from jobs import dispatch, events

    assert dispatch.handler_for(event.provider, event.type) is handler, (event.provider, event.type)
    inbox.reopen_event(event.id)
    return events.process(event.id)
