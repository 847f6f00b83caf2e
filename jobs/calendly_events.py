"""Calendly's deliveries: find the booking an invitee names, and hand it to the decision (jobs/slots.py)."""

from __future__ import annotations

import dataclasses

from bookingflow.providers.calendly_payloads import InviteeNotice, parse_invitee_notice
from jobs import slots
from jobs.outcomes import Outcome, Result
from models.tables import Booking, ProviderEvent


def find_booking(notice: InviteeNotice) -> Booking | None:
    """Ours by the utm_content we put on the scheduling link, else by the invitee URIs we know."""
    if notice.utm_content:
        booking = Booking.by_id(notice.utm_content)
        if booking is not None:
            return booking
    for field, uri in ((Booking.calendly_invitee_uri, notice.invitee_uri),
                       (Booking.reschedule_invitee_uri, notice.invitee_uri),
                       (Booking.calendly_invitee_uri, notice.old_invitee)):
        if uri:
            booking = Booking.get_or_none(field == uri)
            if booking is not None:
                return booking
    return Booking.get_or_none((Booking.calendly_event_uri == notice.event_uri) & Booking.calendly_invitee_uri.is_null())


def with_unknown_values(outcome: Outcome, notice: InviteeNotice) -> Outcome:
    """The delivery's outcome records the enum values it carried that bookingflow does not know."""
    if not notice.unknown_values:
        return outcome
    note = "unknown values: " + ", ".join(notice.unknown_values)
    return dataclasses.replace(outcome, detail=f"{outcome.detail}; {note}" if outcome.detail else note)


def invitee_created(event: ProviderEvent, body: dict) -> Outcome:
    notice = parse_invitee_notice(body)
    booking = find_booking(notice)
    if booking is None:
        # Kept: the client's report of these URIs will match it (an early webhook without utm_content).
        return with_unknown_values(Outcome(Result.UNMATCHED, detail="no booking carries this invitee yet"), notice)
    return with_unknown_values(slots.invitee_scheduled(booking, notice, cause=event.event_id), notice)


def invitee_canceled(event: ProviderEvent, body: dict) -> Outcome:
    notice = parse_invitee_notice(body)
    booking = find_booking(notice)
    if booking is None:
        return with_unknown_values(Outcome(Result.UNMATCHED, detail="no booking carries this invitee"), notice)
    if notice.rescheduled and notice.new_invitee:
        return with_unknown_values(slots.cancel_half_of_reschedule(booking, notice), notice)
    return with_unknown_values(slots.invitee_cancelled(booking, notice, cause=event.event_id), notice)
