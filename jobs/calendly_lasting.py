"""Calendly answers that asking again will not change: a refusal (401/403: the token, its scopes or
its user's role) or a resource gone (404/410: deleted, e.g. by a data-deletion request). Retrying
such a call for ever only fills the logs with tracebacks; a person must act, so the booking is
flagged and operators alerted, once.

Slots: a release Calendly refuses leaves the slot held, and the booking says so (flagged, not
released). A release whose event is gone (404) is a release: nothing is held in Calendly any more,
and nobody could do more than that.
"""

from __future__ import annotations

import logging

from bookingflow.providers import calendly_client
from models.alerts import flag_booking, raise_alert
from models.db import utcnow
from models.tables import Booking

log = logging.getLogger(__name__)

# Checks in a row that find a booking's Calendly invitee or event gone before it is flagged: a
# resource Calendly lost for a moment comes back, a deleted one does not.
GONE_CHECKS = 3


def flag(booking_id: str, reason: str, kind: str, alert_key: str) -> None:
    """Automation stops for the booking (the sweep skips a flagged one) until `bookings retry`."""
    flag_booking(booking_id, reason, alert_key, kind, f"booking {booking_id} is flagged: {reason}",
                 next_check_at=None, last_error=reason[:500])


def release_slot(booking_id: str, event_uri: str, reason: str, *, held_by_booking: bool = True) -> bool:
    """Let the booking's Calendly event go. True when nothing is held any more (cancelled now, or
    already cancelled, over or deleted); False when Calendly refused and the event is still active:
    the booking is flagged (its own slot) or operators alerted (a stray slot it never held)."""
    try:
        calendly_client.release_scheduled_event(event_uri, reason)
        return True
    except calendly_client.CalendlyRefused as refused:
        text = f"the slot {event_uri} is still held in Calendly: {refused}"
        log.warning("booking %s: %s", booking_id, text)
        if held_by_booking:
            flag(booking_id, text, "calendly_refused", f"calendly_refused:{event_uri}")
        else:
            raise_alert(f"calendly_refused:{event_uri}"[:255], "calendly_refused",
                        f"booking {booking_id}: {text}", booking_id)
        return False


def refused(booking: Booking, exc: calendly_client.CalendlyRefused) -> None:
    """A check Calendly refused: the token is the problem, for every booking alike. Alerted once per
    status and day (not per booking: a revoked token would otherwise raise one per booking), logged
    without a traceback, and left to the sweep's backoff; the booking is not flagged, so fixing the
    token is all it takes."""
    log.warning("booking %s: Calendly refused the check in %s: %s", booking.id, booking.state, exc)
    raise_alert(f"calendly_refused:token:{exc.status}:{utcnow().date()}", "calendly_refused", str(exc), booking.id)


def gone(booking: Booking, exc: calendly_client.CalendlyNotFound) -> bool:
    """A check found the booking's Calendly invitee or event gone (404/410). Flagged once it has
    been so for GONE_CHECKS claims in a row (the sweep counts them on check_attempts, reset by a
    check that works); True when flagged."""
    subject = booking.calendly_invitee_uri or booking.calendly_event_uri or "its Calendly slot"
    if booking.check_attempts < GONE_CHECKS:
        log.warning("booking %s: Calendly answers %s for %s (check %d of %d before it is flagged)",
                    booking.id, exc.status, subject, booking.check_attempts, GONE_CHECKS)
        return False
    flag(booking.id, f"Calendly no longer has {subject} ({exc.status} on {booking.check_attempts} checks "
                     f"in {booking.state}): deleted in Calendly?", "calendly_gone", f"calendly_gone:{booking.id}")
    return True
