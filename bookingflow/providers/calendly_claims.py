"""What a Calendly claim must satisfy before a booking holds its slot, as Calendly's API tells it.

A client chooses which scheduling link to open and what to report, and a Calendly account carries
other event types than bookingflow's. So an invitee is taken for a booking only when Calendly itself
says it was made for that booking (its `utm_content`, or as the reschedule of the booking's own
invitee), for the event type the booking pays for, and is held by no other booking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

from bookingflow.providers import calendly_client
from bookingflow.providers.calendly_payloads import InviteeNotice, ScheduledEventInfo, scheduled_event_info


def same_resource(a: str | None, b: str | None) -> bool:
    """Two Calendly URIs name the same resource: compared by path, as calls go to CALENDLY_API_BASE
    plus the path whatever host a payload names."""
    if not a or not b:
        return False
    return urlsplit(a).path.rstrip("/") == urlsplit(b).path.rstrip("/")


def event_details(notice: InviteeNotice) -> ScheduledEventInfo:
    """The notice's scheduled event with its event type: embedded in newer payloads, else (the 2023
    shape, or an embedded object without its type) read from Calendly's API."""
    if notice.event is not None and notice.event.event_type:
        return notice.event
    return scheduled_event_info(calendly_client.get_scheduled_event(notice.event_uri))


@dataclass(frozen=True)
class Refusal:
    """Why a claim about a slot is not taken: a code and a message fit for the client."""

    code: str
    message: str


WRONG_TYPE = Refusal("wrong_event_type", "The slot was booked for another session type than this booking's. "
                                         "Please book it with the scheduling link of your booking.")


class OfAnEventType(Protocol):
    calendly_event_type: str  # a session type


def type_refusal(event_type: str | None, session_type: OfAnEventType) -> Refusal | None:
    return None if same_resource(event_type, session_type.calendly_event_type) else WRONG_TYPE


SLOT_TAKEN = Refusal("slot_taken", "That slot belongs to another booking.")


def invitee_refusal(booking_id: str, session_type: OfAnEventType, event_uri: str, invitee_uri: str) -> Refusal | None:
    """A client's report checked against Calendly's API: the invitee is of that event, active, carries
    the booking's id in utm_content, and its event is of the booking's event type. Raises
    CalendlyError (or RateLimited) when Calendly cannot say."""
    try:
        invitee = calendly_client.get_invitee(invitee_uri)
    except calendly_client.CalendlyNotFound:
        return Refusal("unknown_invitee", "Calendly does not know that invitee.")
    tracking = invitee.get("tracking") if isinstance(invitee.get("tracking"), dict) else {}
    if not same_resource(invitee.get("event"), event_uri):
        return Refusal("unknown_invitee", "That invitee is not of that event.")
    if tracking.get("utm_content") != booking_id:
        return Refusal("not_this_booking", "That slot was not scheduled with this booking's link.")
    if invitee.get("status") != "active":
        return Refusal("invitee_canceled", "That slot was cancelled in Calendly.")
    event = scheduled_event_info(calendly_client.get_scheduled_event(event_uri))
    return type_refusal(event.event_type, session_type)
