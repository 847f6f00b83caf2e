"""A booking's own rules that are not its state: its creation, who holds a slot, whether a client's
report about a slot is true, whether a reschedule request is still open."""

from __future__ import annotations

import datetime as dt

from bookingflow import settings as settings_module
from bookingflow.providers.calendly_claims import SLOT_TAKEN, Refusal, invitee_refusal
from bookingflow.deliveries import CLIENT, CREATE
from models.db import write_transaction
from models.inbox import store_answered, stored
from models.states import State, first_check_at, record_creation
from models.statements import RenderedByKey
from models.tables import Booking, Payment, SessionType


def create(session_type: SessionType, email: str, name: str, now: dt.datetime, currency: str | None = None,
           request_key: str | None = None) -> Booking:
    """A new booking, scheduling, priced in `currency` (one the type offers; its default if None): the
    first history row is written with it. A session type whose payment collection is off is free:
    the booking costs nothing. With `request_key` (the client's Idempotency-Key) the request is stored
    in the inbox in the same transaction: a second creation under the key raises
    peewee.IntegrityError and leaves nothing (`created_with` then finds the first)."""
    currency = (currency or session_type.currency).lower()
    price = session_type.price_in(currency)
    if price is None:
        raise ValueError(f"session type {session_type.slug!r} is not offered in {currency}")
    with write_transaction():
        booking = Booking.create(
            session_type=session_type, state=State.CALENDLY_SCHEDULING.value, email=email, name=name,
            amount=price if session_type.collect_payment else 0, currency=currency,
            state_changed_at=now, created_at=now, updated_at=now,
            next_check_at=first_check_at(State.CALENDLY_SCHEDULING, now,
                                         overrides=settings_module.get().state_timeouts),
        )
        record_creation(booking, cause="client")
        if request_key:
            store_answered(CLIENT, creation_request_id(request_key), CREATE, booking.id, "created")
    return booking


def creation_request_id(key: str) -> str:
    return f"{CREATE}:{key}"


def created_with(key: str) -> tuple[bool, Booking | None]:
    """(whether a creation was stored under the Idempotency-Key `key`, the booking it made: None if that
    booking is gone)."""
    request = stored(CLIENT, creation_request_id(key))
    if request is None:
        return False, None
    return True, Booking.by_id(request.booking_id) if request.booking_id else None


def same_request(booking: Booking, slug: str, email: str, name: str, currency: str) -> bool:
    """Whether a creation request asks for what `booking` was made from: a repeat, not another booking
    under a reused key."""
    return (booking.session_type.slug, booking.email, booking.name, booking.currency) == (slug, email, name, currency)


def reschedule_request_open(booking: Booking, now: dt.datetime) -> bool:
    """The client asked to move to another slot or type, and not too long ago."""
    if booking.reschedule_session_type_id is None or booking.reschedule_requested_at is None:
        return False
    lifetime = dt.timedelta(minutes=settings_module.get().reschedule_request_minutes)
    return now - booking.reschedule_requested_at <= lifetime


def held_by_another(booking: Booking, event_uri: str, invitee_uri: str) -> Booking | None:
    """Another booking that already holds this event or invitee."""
    return Booking.get_or_none(
        (Booking.id != booking.id)
        & ((Booking.calendly_invitee_uri == invitee_uri) | (Booking.reschedule_invitee_uri == invitee_uri)
           | (Booking.calendly_event_uri == event_uri))
    )


def report_refusal(booking: Booking, event_uri: str, invitee_uri: str) -> Refusal | None:
    """Why a client's report of the slot it scheduled is not true, or None: no other booking holds
    either URI, and Calendly's API confirms the invitee is this booking's (calendly_claims). Raises
    CalendlyError when Calendly cannot say."""
    if held_by_another(booking, event_uri, invitee_uri) is not None:
        return SLOT_TAKEN
    return invitee_refusal(booking.id, booking.session_type, event_uri, invitee_uri)


def paid_payments(booking_id: str) -> list[Payment]:
    """The booking's paid payments, oldest first: what the client paid, and its receipts and invoices."""
    return list(Payment.select().where(Payment.booking == booking_id, Payment.status == "paid").order_by(Payment.id))


# Read by every status poll that sends its ETag: rendered once (models/statements.py).
_VERSION = RenderedByKey(Booking, Booking.id, (Booking.version,))


def version_of(booking_id: str) -> int | None:
    """The booking's version, which is its status ETag; None if there is no such booking."""
    row = _VERSION.get(booking_id)
    return None if row is None else row.version
