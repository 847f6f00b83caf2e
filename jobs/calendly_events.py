"""Calendly deliveries: an invitee scheduled (and, later, canceled or rescheduled)."""

from __future__ import annotations

import logging

from bookingflow.providers import calendly_client
from jobs import flow
from jobs.calendly_payloads import InviteeNotice, parse_invitee_notice, scheduled_event_info
from jobs.dispatch import Outcome, handles
from models.states import State, Trigger, TransitionRefused, apply
from models.tables import Booking, ProviderEvent

log = logging.getLogger(__name__)

AWAITING_INVITEE = (State.CALENDLY_SCHEDULING, State.CALENDLY_SCHEDULED)


def find_booking(notice: InviteeNotice) -> Booking | None:
    """Ours by the utm_content we put on the scheduling link, else by the URIs the client reported."""
    if notice.utm_content:
        booking = Booking.get_or_none(Booking.id == notice.utm_content)
        if booking is not None:
            return booking
    booking = Booking.get_or_none(Booking.calendly_invitee_uri == notice.invitee_uri)
    if booking is None:
        booking = Booking.get_or_none(
            (Booking.calendly_event_uri == notice.event_uri) & Booking.calendly_invitee_uri.is_null()
        )
    return booking


def _event_details(notice: InviteeNotice):
    # The 2023 payload shape does not embed the scheduled event: ask the API for its times.
    return notice.event or scheduled_event_info(calendly_client.get_scheduled_event(notice.event_uri))


def accept_invitee(booking: Booking, notice: InviteeNotice, cause: str) -> Outcome:
    if State(booking.state) not in AWAITING_INVITEE:
        same = booking.calendly_invitee_uri == notice.invitee_uri
        return Outcome("duplicate" if same else "stale", booking.id, None if same else f"booking is {booking.state}")
    if booking.calendly_invitee_uri and booking.calendly_invitee_uri != notice.invitee_uri:
        # The client reported one invitee and Calendly tells of another for the same booking.
        log.warning("booking %s: invitee %s differs from the reported one", booking.id, notice.invitee_uri)
        return Outcome("conflict", booking.id, "invitee differs from the one the client reported")
    details = _event_details(notice)
    if details.event_type and details.event_type != booking.session_type.calendly_event_type:
        log.warning("booking %s scheduled as event type %s, sold as %s", booking.id, details.event_type,
                    booking.session_type.calendly_event_type)
    try:
        apply(
            booking.id, Trigger.onCalendlyWebhookReceived, cause=cause,
            calendly_event_uri=notice.event_uri, calendly_invitee_uri=notice.invitee_uri,
            calendly_cancel_url=notice.cancel_url, calendly_reschedule_url=notice.reschedule_url,
            scheduled_start=details.start, scheduled_end=details.end,
        )
    except TransitionRefused as refused:
        return Outcome("stale", booking.id, str(refused))
    flow.advance(booking.id)
    return Outcome("advanced", booking.id)


@handles("calendly", "invitee.created")
def invitee_created(event: ProviderEvent, body: dict) -> Outcome:
    notice = parse_invitee_notice(body)
    booking = find_booking(notice)
    if booking is None:
        # Kept: the client's report of these URIs will match it (an early webhook without utm_content).
        return Outcome("unmatched", detail="no booking carries this invitee yet")
    return accept_invitee(booking, notice, cause=event.event_id)
