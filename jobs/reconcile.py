"""Reconciliation: the providers' APIs are the truth, webhooks only hints that may never come.

The scheduler claims bookings whose `next_check_at` is due and sends them here. For each state the
job asks Stripe or Calendly what really happened and moves the booking as the webhook would have;
a booking past its state's timeout that nothing moved goes to ERROR_RECOVERY, which re-runs the
state's entry action with backoff, and after the last attempt flags it for an operator.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import dramatiq

from bookingflow import broker
from bookingflow import settings as settings_module
from bookingflow.deliveries import CHECKOUT_EXPIRED
from bookingflow.error_classes import ErrorClass, failure, is_lasting
from bookingflow.providers import calendly_claims, calendly_client, stripe_client
from bookingflow.providers.calendly_payloads import parse_invitee_notice
from jobs import calendly_lasting, checkout, flow, ledger, payments, slots
from models.alerts import raise_alert
from models.db import utcnow
from models.states import (
    CLOSING,
    STUCK_WHEN_TIMED_OUT,
    State,
    TransitionRefused,
    Trigger,
    check_worked,
    schedule_check,
    timeout_for,
)
from models.tables import Booking

log = logging.getLogger(__name__)

MAX_RECOVERY_ATTEMPTS = 3
PAYMENT_POLL = dt.timedelta(minutes=10)
# Stripe expires a session on its own clock: give it a moment before we expire it ourselves.
EXPIRY_GRACE = dt.timedelta(minutes=1)
LAST_CHECK_BEFORE_START = dt.timedelta(hours=1)


def _age(booking: Booking, now: dt.datetime) -> dt.timedelta:
    return now - booking.state_changed_at


def _timed_out(booking: Booking, now: dt.datetime) -> bool:
    current = settings_module.get()
    timeout = timeout_for(State(booking.state), current.state_timeouts, current.payment_hold_minutes)
    return timeout is not None and _age(booking, now) >= timeout


def _notice_from_api(invitee: dict, event: dict | None = None):
    payload = dict(invitee)
    if event is not None:
        payload["scheduled_event"] = event
    kind = "invitee.canceled" if invitee.get("status") == "canceled" else "invitee.created"
    return parse_invitee_notice({"event": kind, "payload": payload})


# --- per-state checks: each may move the booking; returning leaves the timeout logic to decide ---

def _check_scheduling(booking: Booking, now: dt.datetime) -> None:
    """No report and no webhook: look for an invitee carrying our utm_content before giving up."""
    if not _timed_out(booking, now):
        return
    found = calendly_client.find_invitee_by_tracking(booking.email, booking.id, booking.created_at)
    if found is None:
        flow.cancel(booking.id, "scheduling-timeout", cancelled_by="system", cancel_reason="no slot was scheduled in time")
        return
    notice = _notice_from_api(*found)
    details = calendly_claims.event_details(notice)
    refusal = calendly_claims.type_refusal(details.event_type, booking.session_type)
    if refusal is not None:
        slots.refuse_stray(booking, notice, refusal)
        return
    flow.move(booking.id, Trigger.onCalendlyEventCreated, cause=f"reconciled-{notice.invitee_uri}",
              **slots.slot_fields(notice, details))
    _check_scheduled(Booking.get_by_id(booking.id), now, force=True)


def _check_scheduled(booking: Booking, now: dt.datetime, force: bool = False) -> None:
    """Reported by the client, never confirmed by a webhook: ask Calendly about the invitee."""
    if not (force or _timed_out(booking, now)):
        return
    try:
        invitee = calendly_client.get_invitee(booking.calendly_invitee_uri)
    except calendly_client.CalendlyNotFound:
        flow.move(booking.id, Trigger.onWebhookError, cause="invitee-not-found",
                  last_error="Calendly does not know the reported invitee",
                  failure=failure(ErrorClass.VALIDATION,
                                         "We could not find the slot you scheduled in Calendly; please schedule it again."))
        return
    notice = _notice_from_api(invitee)
    if notice.status == "canceled":
        flow.cancel(booking.id, f"reconciled-cancel-{notice.invitee_uri}", cancelled_by="invitee",
                    cancel_reason="cancelled in Calendly", **slots.invitee_fields(notice))
        return
    details = calendly_claims.event_details(notice)
    refusal = calendly_claims.type_refusal(details.event_type, booking.session_type)
    if refusal is not None or notice.utm_content != booking.id:
        flow.move(booking.id, Trigger.onWebhookError, cause=f"invitee-refused-{notice.invitee_uri}"[:255],
                  last_error="the reported invitee is not this booking's, or of another event type",
                  failure=failure(ErrorClass.VALIDATION, (refusal or calendly_claims.WRONG_TYPE).message))
        return
    flow.confirm_or_charge(booking, **slots.slot_fields(notice, details))


def _check_checkout(booking: Booking, now: dt.datetime) -> None:
    """PAYMENT_PROCESSING: was it paid, did it expire? (The webhook may be late, or lost.)"""
    session = stripe_client.retrieve_checkout_session(booking.checkout_session_id).to_dict()
    payment = ledger.payment_of_session(booking.checkout_session_id)
    if session.get("payment_status") in payments.PAID and payment is not None:
        payments.payment_received(payment, session)
        return
    expires = checkout.payable_until(session)  # ours, when sooner than Stripe's
    if session.get("status") == "open" and now >= expires + EXPIRY_GRACE:
        ledger.expire_open_sessions(booking)
        session = stripe_client.retrieve_checkout_session(booking.checkout_session_id).to_dict()
    if session.get("status") == "expired":
        ledger.mark_session(session["id"], "expired")
        payments.payment_failed(booking, session["id"], CHECKOUT_EXPIRED)
        return
    current = settings_module.get()
    poll = min(PAYMENT_POLL, timeout_for(State.PAYMENT_PROCESSING, current.state_timeouts))
    schedule_check(booking.id, min(now + poll, expires + EXPIRY_GRACE))


def _check_hold(booking: Booking, now: dt.datetime) -> None:
    if _timed_out(booking, now):
        flow.release_hold(booking.id)


def _check_refunds(booking: Booking, now: dt.datetime) -> None:
    """REFUND_PENDING: ask Stripe about each refund still pending, then settle."""
    flow.sync_refunds(booking, ask_stripe=True)


def _check_before_start(booking: Booking, now: dt.datetime) -> None:
    """Confirmed: is the slot still there in Calendly? A lost invitee.canceled would say otherwise."""
    invitee = calendly_client.get_invitee(booking.calendly_invitee_uri)
    notice = _notice_from_api(invitee)
    if notice.status == "canceled":
        if notice.rescheduled and notice.new_invitee:
            slots.cancel_half_of_reschedule(booking, notice)
        else:
            slots.invitee_cancelled(booking, notice, cause=f"reconciled-cancel-{notice.invitee_uri}")
        return
    last_look = booking.scheduled_start - LAST_CHECK_BEFORE_START if booking.scheduled_start else None
    schedule_check(booking.id, last_look if last_look and last_look > now else None)


def _finish_entry_action(booking: Booking, now: dt.datetime) -> None:
    flow.advance(booking.id)
    after = Booking.get_by_id(booking.id)
    if after.state in (State.IDLE.value, State.BOOKING_CANCELLED.value) and after.settled_at is not None:
        schedule_check(booking.id, None)  # closing work done: nothing more to look at


CHECKS: dict[State, Callable[[Booking, dt.datetime], None]] = {
    State.CALENDLY_SCHEDULING: _check_scheduling,
    State.CALENDLY_SCHEDULED: _check_scheduled,
    State.CALENDLY_WEBHOOK_RECEIVED: _finish_entry_action,
    State.PAYMENT_PENDING: _finish_entry_action,
    State.PAYMENT_PROCESSING: _check_checkout,
    State.PAYMENT_SUCCEEDED: _finish_entry_action,
    State.PAYMENT_FAILED: _check_hold,
    State.BOOKING_CONFIRMED: _check_before_start,
    State.BOOKING_RESCHEDULED: _finish_entry_action,
    State.BOOKING_CANCELLED: _finish_entry_action,
    State.IDLE: _finish_entry_action,
    State.REFUND_PENDING: _check_refunds,
}




# --- recovery ---------------------------------------------------------------------------------

def _recover(booking: Booking, now: dt.datetime) -> None:
    """ERROR_RECOVERY: back to the original state to run its entry action again, with backoff;
    after the last attempt, the appropriate error state, a flag and an alert."""
    if booking.recovery_attempts > MAX_RECOVERY_ATTEMPTS:
        flow.move(booking.id, Trigger.recoveryFailed, cause=f"recovery-failed-{booking.recovery_attempts}",
                  flagged_at=now, next_check_at=None, failure=failure(ErrorClass.SYSTEM),
                  flag_reason=f"stuck in {booking.error_origin} after {booking.recovery_attempts} recoveries")
        raise_alert(f"flagged:{booking.id}:{booking.recovery_attempts}", "flagged_booking",
                           f"booking {booking.id} is flagged: stuck in {booking.error_origin} after "
                           f"{booking.recovery_attempts} recovery attempts", booking.id)
        return
    current = settings_module.get()
    origin = State(booking.error_origin)
    timeout = timeout_for(origin, current.state_timeouts, current.payment_hold_minutes) or dt.timedelta(minutes=15)
    flow.move(booking.id, Trigger.recoverySucceeded, cause=f"recovery-{booking.recovery_attempts}",
              next_check_at=now + timeout * (2 ** booking.recovery_attempts))
    flow.advance(booking.id)


def _attempt_recovery(booking: Booking, now: dt.datetime) -> None:
    error_class = ErrorClass(booking.error_class) if booking.error_class else ErrorClass.TRANSIENT
    flow.move(booking.id, Trigger.attemptRecovery, cause=f"stuck-{booking.state}-{booking.state_changed_at.isoformat()}",
              recovery_attempts=booking.recovery_attempts + 1, failure=failure(error_class),
              last_error=f"stuck in {booking.state} for {int(_age(booking, now).total_seconds())}s")


def reconcile(booking_id: str, now: dt.datetime | None = None) -> State | None:
    now = now or utcnow()
    booking = Booking.by_id(booking_id)
    if booking is None or booking.flagged_at is not None:
        return None
    state = State(booking.state)
    check_failed = lasting = None
    try:
        if state == State.ERROR_RECOVERY:
            _recover(booking, now)
            return State(Booking.get_by_id(booking_id).state)
        check = CHECKS.get(state)
        if check is not None:
            check(booking, now)
            # A check that moved the booking leaves its next entry action to run, as a webhook's would.
            flow.advance(booking_id)
    except TransitionRefused:
        log.info("booking %s moved while being reconciled", booking_id)
    except Exception as exc:  # a provider down, a bug: the timeout below still applies
        if is_lasting(exc):
            # Asking again soon will not help: no job retry, no traceback; the sweep's next claim
            # asks again, its backoff counting this one (check_attempts, never reset here).
            if isinstance(exc, calendly_client.CalendlyNotFound) and calendly_lasting.gone(booking, exc):
                return State(Booking.get_by_id(booking_id).state)  # flagged
            if isinstance(exc, calendly_client.CalendlyRefused):
                calendly_lasting.refused(booking, exc)  # the token's problem: alerted once a day
            lasting = exc
        else:
            log.warning("booking %s: check in %s failed: %s", booking_id, state.value, exc.__class__.__name__)
            check_failed = exc
    booking = Booking.get_by_id(booking_id)
    # Nothing moved it and its time is up: stuck. (Error states only ever leave this way.)
    settled = state in CLOSING and booking.settled_at is not None
    if booking.state == state.value and state in STUCK_WHEN_TIMED_OUT and not settled and _timed_out(booking, now):
        try:
            _attempt_recovery(booking, now)
        except TransitionRefused:
            pass
    if check_failed is not None:
        raise check_failed  # the job's retry and log; the booking's next check is already scheduled
    if lasting is not None:
        return State(booking.state)  # the sweep's next claim asks again, its backoff counting this one
    # The check worked: the sweep's backoff counts checks that fail in a row, not checks. Otherwise a
    # checkout polled a few times would, if one later job were lost, wait 30 s × 2^polls to be seen.
    check_worked(booking_id)
    return State(Booking.get_by_id(booking_id).state)


@dramatiq.actor(actor_name=broker.RECONCILE_BOOKING, max_retries=3, min_backoff=5_000, max_backoff=120_000, max_age=3600_000, time_limit=300_000)
def reconcile_booking(booking_id: str, swept_at: str | None = None) -> None:
    # Judged at the sweep's time or later, never earlier (a retry runs later than its sweep).
    now = utcnow()
    if swept_at:
        now = max(now, dt.datetime.fromisoformat(swept_at))
    reconcile(booking_id, now)

