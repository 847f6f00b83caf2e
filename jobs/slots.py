"""What Calendly's invitees mean for a booking: a slot accepted (of the right event type only), moved,
rescheduled (two deliveries, any order), cancelled, or refused. Called by the webhook handlers
(jobs/calendly_events.py) and the sweep's reconciliation (jobs/reconcile.py) alike.

A reschedule arrives as `invitee.canceled` with `rescheduled: true` and `new_invitee`, and
`invitee.created` with `old_invitee`. Both halves apply the same rescheduleBooking with the same cause,
so whichever comes first moves the booking and the other finds it done; the cancel half never refunds.
"""

from __future__ import annotations

import logging

from bookingflow.error_classes import ErrorClass
from bookingflow.providers import calendly_client
from bookingflow.providers.calendly_claims import Refusal, event_details, type_refusal
from bookingflow.providers.calendly_payloads import InviteeNotice, invitee_identity
from jobs import calendly_lasting, flow
from jobs.outcomes import Outcome, Result
from models.alerts import raise_alert
from models.bookings import reschedule_request_open
from models.db import utcnow
from models.states import AWAITING_INVITEE, BEFORE_CONFIRMATION, State, TransitionRefused, Trigger, update_fields
from models.tables import Booking, SessionType

log = logging.getLogger(__name__)



def invitee_fields(notice: InviteeNotice) -> dict:
    return invitee_identity(notice.email, notice.name)


def slot_fields(notice: InviteeNotice, details=None) -> dict:
    details = details or event_details(notice)
    return dict(
        calendly_event_uri=notice.event_uri, calendly_invitee_uri=notice.invitee_uri,
        calendly_cancel_url=notice.cancel_url, calendly_reschedule_url=notice.reschedule_url,
        scheduled_start=details.start, scheduled_end=details.end, **invitee_fields(notice),
    )


def reschedule_cause(old_invitee: str, new_invitee: str) -> str:
    return f"reschedule-{old_invitee}->{new_invitee}"[:255]


def refuse_stray(booking: Booking, notice: InviteeNotice, refusal: Refusal) -> Outcome:
    """An invitee that names the booking but may not hold a slot for it (another event type, or a
    second slot nobody asked for): the booking keeps what it had and says why, the stray slot is let
    go when it was made with this booking's link, and operators are told. Unless Calendly says the
    invitee is no longer active: a delivery that comes late (the booking's own first invitee, say,
    after the booking was rescheduled away from it) holds no slot, and there is nothing to refuse."""
    try:
        active = calendly_client.get_invitee(notice.invitee_uri).get("status") == "active"
    except calendly_client.CalendlyNotFound:
        active = False  # deleted in Calendly: it holds nothing either
    if not active:
        return Outcome(Result.STALE, booking.id, f"invitee {notice.invitee_uri} is no longer active in Calendly")
    released = False
    made_for_this_booking = notice.utm_content == booking.id or notice.old_invitee == booking.calendly_invitee_uri
    held = Booking.get_or_none(Booking.calendly_event_uri == notice.event_uri)
    if made_for_this_booking and held is None:
        released = calendly_lasting.release_slot(booking.id, notice.event_uri, refusal.message, held_by_booking=False)
    update_fields(booking.id, error_class=ErrorClass.VALIDATION.value, error_message=refusal.message[:300],
                  last_error=f"{refusal.code}: invitee {notice.invitee_uri}"[:500])
    raise_alert(f"{refusal.code}:{notice.invitee_uri}"[:255], refusal.code,
                f"booking {booking.id}: invitee {notice.invitee_uri} refused ({refusal.code}); "
                f"its event {'was released' if released else 'was left as it is'}", booking.id)
    log.warning("booking %s: invitee %s refused: %s", booking.id, notice.invitee_uri, refusal.code)
    return Outcome(Result(refusal.code), booking.id, f"{refusal.message} (event {'released' if released else 'kept'})")


def accept_invitee(booking: Booking, notice: InviteeNotice, cause: str) -> Outcome:
    """A first invitee for a booking that awaits one."""
    if booking.calendly_invitee_uri and booking.calendly_invitee_uri != notice.invitee_uri:
        # The client reported one invitee and Calendly tells of another for the same booking.
        log.warning("booking %s: invitee %s differs from the reported one", booking.id, notice.invitee_uri)
        return Outcome(Result.CONFLICT, booking.id, "invitee differs from the one the client reported")
    details = event_details(notice)
    refusal = type_refusal(details.event_type, booking.session_type)
    if refusal is not None:
        return refuse_stray(booking, notice, refusal)
    try:
        flow.move(booking.id, Trigger.onCalendlyWebhookReceived, cause=cause, read=booking, **slot_fields(notice, details))
    except TransitionRefused as refused:
        return Outcome(Result.STALE, booking.id, str(refused))
    return Outcome(Result.ADVANCED, booking.id)


NO_REQUEST = Refusal("unrequested_slot", "A second slot was booked for this booking without a reschedule "
                                         "request; it was not taken. Ask to reschedule first.")


def reschedule_target(booking: Booking, notice: InviteeNotice) -> SessionType | Refusal:
    """The session type a new invitee of a confirmed booking would move it to, or why it may not.
    Calendly's own reschedule (old_invitee is the booking's) keeps the booking's type; a fresh link
    needs an open request, and the slot must be of the type requested. The price follows the type
    of the event actually booked, never the request alone."""
    if notice.old_invitee:
        if notice.old_invitee != booking.calendly_invitee_uri:
            return Refusal("stale", "not a reschedule of the booking's current invitee")
        return booking.session_type
    if not reschedule_request_open(booking, utcnow()):
        return NO_REQUEST
    return booking.reschedule_session_type


def new_slot_for_confirmed(booking: Booking, notice: InviteeNotice) -> Outcome:
    """A new invitee for a confirmed booking: Calendly's reschedule (old_invitee is ours), or the
    client's move to another slot or session type through a fresh link (utm_content is ours)."""
    target = reschedule_target(booking, notice)
    if isinstance(target, Refusal):
        if target.code == "stale":
            return Outcome(Result.STALE, booking.id, target.message)
        return refuse_stray(booking, notice, target)
    details = event_details(notice)
    refusal = type_refusal(details.event_type, target)
    if refusal is not None:
        return refuse_stray(booking, notice, refusal)
    old = notice.old_invitee or booking.calendly_invitee_uri
    fields = slot_fields(notice, details)
    # A client's move through a fresh link leaves the old event for us to cancel; Calendly's own
    # reschedule cancels it itself.
    fields["replaced_event_uri"] = None if notice.old_invitee else booking.calendly_event_uri
    try:
        flow.move(booking.id, Trigger.rescheduleBooking, cause=reschedule_cause(old, notice.invitee_uri),
                  reschedule_invitee_uri=notice.invitee_uri, rescheduled_from_start=booking.scheduled_start,
                  reschedule_session_type=None if target.id == booking.session_type_id else target.id, **fields)
    except TransitionRefused as refused:
        return Outcome(Result.STALE, booking.id, str(refused))
    return Outcome(Result.RESCHEDULED, booking.id)


def invitee_scheduled(booking: Booking, notice: InviteeNotice, cause: str) -> Outcome:
    """Calendly tells of an invitee that names the booking: what that means depends on where the
    booking stands."""
    state = State(booking.state)
    if booking.calendly_invitee_uri == notice.invitee_uri and state not in AWAITING_INVITEE:
        return Outcome(Result.DUPLICATE, booking.id)
    if state in AWAITING_INVITEE:
        return accept_invitee(booking, notice, cause)
    if state == State.BOOKING_CONFIRMED:
        return new_slot_for_confirmed(booking, notice)
    if state == State.BOOKING_RESCHEDULED and booking.reschedule_invitee_uri == notice.invitee_uri:
        # The cancel half came first; now we know the new slot without asking the API. It is of the
        # type the reschedule is priced by (the booking's own, for Calendly's reschedule).
        details = event_details(notice)
        refusal = type_refusal(details.event_type, booking.reschedule_session_type or booking.session_type)
        if refusal is not None:
            return refuse_stray(booking, notice, refusal)
        update_fields(booking.id, **slot_fields(notice, details))
        return Outcome(Result.RESCHEDULED, booking.id)
    if state == State.IDLE:
        # Scheduled after the flow was abandoned: nothing may be held for an IDLE booking.
        if notice.utm_content == booking.id or notice.old_invitee == booking.calendly_invitee_uri:
            calendly_lasting.release_slot(booking.id, notice.event_uri, "The booking was abandoned before this slot was chosen",
                                          held_by_booking=False)
        return Outcome(Result.RELEASED, booking.id, "slot scheduled after the booking was abandoned")
    if state in BEFORE_CONFIRMATION and notice.old_invitee and notice.old_invitee == booking.calendly_invitee_uri:
        # Rescheduled in Calendly before paying: the booking simply follows the new slot, of its type.
        details = event_details(notice)
        refusal = type_refusal(details.event_type, booking.session_type)
        if refusal is not None:
            return refuse_stray(booking, notice, refusal)
        update_fields(booking.id, **slot_fields(notice, details))
        return Outcome(Result.SLOT_MOVED, booking.id)
    return Outcome(Result.STALE, booking.id, f"booking is {booking.state}")




def cancel_half_of_reschedule(booking: Booking, notice: InviteeNotice) -> Outcome:
    state = State(booking.state)
    if booking.calendly_invitee_uri == notice.new_invitee or booking.reschedule_invitee_uri == notice.new_invitee:
        return Outcome(Result.DUPLICATE, booking.id, "the reschedule is already applied")
    if booking.calendly_invitee_uri != notice.invitee_uri:
        return Outcome(Result.STALE, booking.id, "not the booking's current invitee")
    if state == State.BOOKING_CONFIRMED:
        # Calendly's own reschedule keeps the event type: the booking's type, whatever the client had
        # asked for through a fresh link (that request is dropped, and priced nothing).
        try:
            flow.move(booking.id, Trigger.rescheduleBooking, cause=reschedule_cause(notice.invitee_uri, notice.new_invitee),
                      reschedule_invitee_uri=notice.new_invitee, replaced_event_uri=None, reschedule_session_type=None,
                      rescheduled_from_start=booking.scheduled_start)
        except TransitionRefused as refused:
            return Outcome(Result.STALE, booking.id, str(refused))
        return Outcome(Result.RESCHEDULED, booking.id)
    if state in BEFORE_CONFIRMATION:
        # Moved in Calendly before paying: the created half carries the new slot; no state changes.
        return Outcome(Result.SLOT_MOVING, booking.id)
    return Outcome(Result.STALE, booking.id, f"booking is {booking.state}")


def invitee_cancelled(booking: Booking, notice: InviteeNotice, cause: str) -> Outcome:
    if booking.calendly_invitee_uri != notice.invitee_uri:
        # An invitee the booking has moved away from (a replaced slot we cancelled ourselves).
        return Outcome(Result.STALE, booking.id, "not the booking's current invitee")
    cancelled_by = "host" if notice.canceler_type == "host" else "invitee"
    reason = notice.cancel_reason or f"cancelled in Calendly by the {cancelled_by}"
    # Paid: cancelled, refunded by policy. Never paid: the flow is abandoned.
    # Calendly names the invitee here too: a booking whose invitee only the client had reported so far
    # learns who it is before the cancellation e-mail is written.
    if flow.cancel(booking.id, cause, cancelled_by=cancelled_by, cancel_reason=reason, **invitee_fields(notice)) is None:
        return Outcome(Result.DUPLICATE, booking.id, f"booking already {Booking.get_by_id(booking.id).state}")
    return Outcome(Result.CANCELLED, booking.id)
