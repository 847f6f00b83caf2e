"""What the console's pages read: bookings filtered and paginated, one booking with everything about
it, and the deliveries that need a look. Reads only; actions are in console/actions.py."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import peewee

from bookingflow import settings as settings_module
from models.operations import email_matches, failed_events
from models.states import RESTING, State, timeout_for
from models.tables import (
    AuditEntry, Booking, Dispute, Outbox, Payment, ProviderEvent, Refund, SessionType, Transition,
)

PAGE_SIZE = 50
# The scheduler looks at a due booking within a sweep or two; a check overdue by more than this (or
# by three sweeps, when they are further apart) was missed.
OVERDUE_AFTER = dt.timedelta(minutes=5)


def overdue_after(sweep_interval_seconds: int) -> dt.timedelta:
    return max(OVERDUE_AFTER, dt.timedelta(seconds=3 * sweep_interval_seconds))


def stuck(now: dt.datetime) -> peewee.Expression:
    """A booking is stuck when its next check is overdue (the scheduler did not get to it) or when it
    has been in a non-resting state longer than that state's timeout."""
    current = settings_module.get()
    condition = Booking.next_check_at < now - overdue_after(current.sweep_interval_seconds)
    for state in State:
        if state not in RESTING:
            timeout = timeout_for(state, current.state_timeouts, current.payment_hold_minutes)
            condition |= (Booking.state == state.value) & (Booking.state_changed_at < now - timeout)
    return condition


@dataclass(frozen=True)
class Filters:
    state: str = ""
    flagged: bool = False
    stuck: bool = False
    email: str = ""

    def conditions(self, now: dt.datetime) -> list[peewee.Expression]:
        conditions = []
        if self.state in State.__members__:
            conditions.append(Booking.state == self.state)
        if self.flagged:
            conditions.append(Booking.flagged_at.is_null(False))
        if self.stuck:
            conditions.append(stuck(now))
        if self.email:
            conditions.append(email_matches(self.email))
        return conditions


@dataclass(frozen=True)
class Page:
    rows: list
    number: int
    has_next: bool


def bookings(filters: Filters, page: int, now: dt.datetime) -> Page:
    """Newest first, PAGE_SIZE a page (one more is read to know whether a next page exists)."""
    page = max(1, page)
    query = Booking.select(Booking, SessionType).join(SessionType, on=Booking.session_type).order_by(Booking.created_at.desc(), Booking.id)
    for condition in filters.conditions(now):
        query = query.where(condition)
    rows = list(query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1))
    return Page(rows[:PAGE_SIZE], page, len(rows) > PAGE_SIZE)


@dataclass
class BookingDetails:
    booking: Booking
    history: list = field(default_factory=list)
    payments: list = field(default_factory=list)
    refunds: list = field(default_factory=list)
    disputes: list = field(default_factory=list)
    emails: list = field(default_factory=list)
    deliveries: list = field(default_factory=list)
    audit: list = field(default_factory=list)


def booking_details(booking_id: str) -> BookingDetails | None:
    booking = Booking.by_id(booking_id)
    if booking is None:
        return None
    return BookingDetails(
        booking=booking,
        history=list(Transition.select().where(Transition.booking == booking.id).order_by(Transition.at, Transition.id)),
        payments=list(Payment.select().where(Payment.booking == booking.id).order_by(Payment.created_at, Payment.id)),
        refunds=list(Refund.select().where(Refund.booking == booking.id).order_by(Refund.created_at, Refund.id)),
        disputes=list(Dispute.select().where(Dispute.booking == booking.id).order_by(Dispute.created_at, Dispute.id)),
        emails=list(Outbox.select(Outbox.id, Outbox.kind, Outbox.subject, Outbox.created_at, Outbox.sent_at,
                                  Outbox.withheld_at, Outbox.withheld_reason, Outbox.attempts, Outbox.last_error)
                    .where(Outbox.booking == booking.id).order_by(Outbox.created_at, Outbox.id)),
        # The provider deliveries about the booking, and the client's and operators' requests (subject).
        deliveries=list(ProviderEvent.select(*DELIVERY_COLUMNS).where(
            (ProviderEvent.booking == booking.id) | (ProviderEvent.subject == booking.id))
            .order_by(ProviderEvent.received_at, ProviderEvent.id)),
        audit=list(AuditEntry.select().where(AuditEntry.booking_id == booking.id).order_by(AuditEntry.at, AuditEntry.id)),
    )


# Everything of a stored delivery but its body (personal data, and large): the pages never show it.
DELIVERY_COLUMNS = (ProviderEvent.id, ProviderEvent.provider, ProviderEvent.event_id, ProviderEvent.type,
                    ProviderEvent.subject, ProviderEvent.booking, ProviderEvent.received_at, ProviderEvent.processed_at,
                    ProviderEvent.outcome, ProviderEvent.detail, ProviderEvent.attempts,
                    ProviderEvent.payload.is_null(False).alias("replayable"))

DELIVERY_VIEWS = {"unprocessed": "not processed yet", "failed": "failed or did nothing useful"}


def deliveries(view: str, page: int) -> Page:
    page = max(1, page)
    query = ProviderEvent.select(*DELIVERY_COLUMNS).order_by(ProviderEvent.received_at.desc(), ProviderEvent.id.desc())
    query = query.where(ProviderEvent.processed_at.is_null() if view == "unprocessed" else failed_events())
    rows = list(query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1))
    return Page(rows[:PAGE_SIZE], page, len(rows) > PAGE_SIZE)


def flagged_bookings(limit: int = 200) -> list[Booking]:
    return list(Booking.select().where(Booking.flagged_at.is_null(False)).order_by(Booking.flagged_at.desc()).limit(limit))


def session_types() -> list[SessionType]:
    return list(SessionType.select().order_by(SessionType.slug))
