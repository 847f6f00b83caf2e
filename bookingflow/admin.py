"""Operator views and actions over bookings and events (`bookingflow bookings|events ...`)."""

from __future__ import annotations

from bookingflow.privacy import mask_email
from models.states import State
from models.tables import Booking, ProviderEvent, Transition


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def list_bookings(state: str | None, limit: int) -> int:
    query = Booking.select().order_by(Booking.created_at.desc()).limit(limit)
    if state:
        if state.upper() not in State.__members__:
            print(f"unknown state {state!r}; one of: {', '.join(State.__members__)}")
            return 2
        query = query.where(Booking.state == state.upper())
    for booking in query:
        print(f"{booking.id}  {booking.state:<26} {booking.amount:>8} {booking.currency}  "
              f"{_when(booking.state_changed_at)}  {mask_email(booking.email)}")
    return 0


def show_booking(booking_id: str) -> int:
    booking = Booking.get_or_none(Booking.id == booking_id)
    if booking is None:
        print(f"no booking {booking_id}")
        return 1
    print(f"booking {booking.id}: {booking.state} (since {_when(booking.state_changed_at)})")
    print(f"  session type {booking.session_type.slug}, {booking.amount} {booking.currency}, "
          f"paid {booking.amount_paid}, refunded {booking.amount_refunded}")
    print(f"  client {mask_email(booking.email)}; slot {_when(booking.scheduled_start)} - {_when(booking.scheduled_end)}")
    print(f"  calendly event {booking.calendly_event_uri or '-'}")
    print(f"  checkout {booking.checkout_session_id or '-'} (attempt {booking.payment_attempt}), "
          f"payment intent {booking.payment_intent_id or '-'}")
    print("history:")
    for row in Transition.select().where(Transition.booking == booking.id).order_by(Transition.at, Transition.id):
        print(f"  {_when(row.at)}  {row.from_state or '-':<26} -> {row.state:<26} {row.trigger} ({row.cause or '-'})")
    print("events:")
    for event in ProviderEvent.select().where(ProviderEvent.booking == booking.id).order_by(ProviderEvent.received_at):
        print(f"  {_when(event.received_at)}  {event.provider} {event.type} {event.event_id}: {event.outcome or 'pending'}")
    return 0


def retry_booking(booking_id: str) -> int:
    from jobs.flow import advance_booking

    if Booking.get_or_none(Booking.id == booking_id) is None:
        print(f"no booking {booking_id}")
        return 1
    advance_booking.send(booking_id)
    print(f"queued: advance booking {booking_id}")
    return 0


def list_events(unprocessed: bool, limit: int) -> int:
    query = ProviderEvent.select().order_by(ProviderEvent.received_at.desc()).limit(limit)
    if unprocessed:
        query = query.where(ProviderEvent.processed_at.is_null())
    for event in query:
        print(f"{event.id:>6}  {_when(event.received_at)}  {event.provider:<8} {event.type:<40} "
              f"{event.outcome or 'pending':<12} {event.event_id}")
    return 0


def _find_event(key: str) -> ProviderEvent | None:
    if key.isdigit():
        event = ProviderEvent.get_or_none(ProviderEvent.id == int(key))
        if event is not None:
            return event
    return ProviderEvent.get_or_none(ProviderEvent.event_id == key)


def replay_event(key: str) -> int:
    from jobs.events import process_event

    event = _find_event(key)
    if event is None:
        print(f"no event {key}")
        return 1
    ProviderEvent.update(processed_at=None, outcome=None, detail=None).where(ProviderEvent.id == event.id).execute()
    process_event.send(event.id)
    print(f"queued: replay of {event.provider} {event.type} {event.event_id}")
    return 0
