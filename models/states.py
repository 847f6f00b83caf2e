"""The booking state machine: one declarative table and the one function that applies it.

States and triggers are the seed's (seeds/001). The server owns the states from CALENDLY_SCHEDULING
on; SESSION_TYPE_SELECTION lives only in the client, and IDLE here means "flow abandoned before
confirmation, nothing held". A booking is created in CALENDLY_SCHEDULING by startCalendlyScheduling.

`apply()` is the only writer of `Booking.state`: a compare-and-set on the current state plus the
history row, in one transaction. A pair that is not in TRANSITIONS is refused and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass

import peewee

from bookingflow import settings as settings_module
from bookingflow.error_classes import Failure
from models.db import utcnow, write_transaction
from models.statements import RenderedInsert, RenderedUpdate
from models.tables import Booking, Transition


class State(str, enum.Enum):
    IDLE = "IDLE"
    CALENDLY_SCHEDULING = "CALENDLY_SCHEDULING"
    CALENDLY_SCHEDULED = "CALENDLY_SCHEDULED"
    CALENDLY_WEBHOOK_RECEIVED = "CALENDLY_WEBHOOK_RECEIVED"
    PAYMENT_PENDING = "PAYMENT_PENDING"
    PAYMENT_PROCESSING = "PAYMENT_PROCESSING"
    PAYMENT_SUCCEEDED = "PAYMENT_SUCCEEDED"
    PAYMENT_FAILED = "PAYMENT_FAILED"
    BOOKING_CONFIRMED = "BOOKING_CONFIRMED"
    BOOKING_CANCELLED = "BOOKING_CANCELLED"
    BOOKING_RESCHEDULED = "BOOKING_RESCHEDULED"
    REFUND_PENDING = "REFUND_PENDING"
    REFUND_COMPLETED = "REFUND_COMPLETED"
    ERROR_CALENDLY = "ERROR_CALENDLY"
    ERROR_PAYMENT = "ERROR_PAYMENT"
    ERROR_WEBHOOK = "ERROR_WEBHOOK"
    ERROR_RECOVERY = "ERROR_RECOVERY"


class Trigger(str, enum.Enum):
    # user-initiated
    startCalendlyScheduling = "startCalendlyScheduling"
    cancelBookingProcess = "cancelBookingProcess"
    cancelBooking = "cancelBooking"
    rescheduleBooking = "rescheduleBooking"
    retryPayment = "retryPayment"
    # system-initiated
    onCalendlyEventCreated = "onCalendlyEventCreated"
    onCalendlyWebhookReceived = "onCalendlyWebhookReceived"
    initiatePayment = "initiatePayment"
    onStripeSessionCreated = "onStripeSessionCreated"
    onPaymentSucceeded = "onPaymentSucceeded"
    onPaymentFailed = "onPaymentFailed"
    confirmBooking = "confirmBooking"
    initiateRefund = "initiateRefund"
    completeRefund = "completeRefund"
    # money that arrives for a flow already abandoned goes straight back
    onLatePayment = "onLatePayment"
    # the seed's "BOOKING_CANCELLED -> BOOKING_CONFIRMED (if cancellation is reversed)"
    reverseCancellation = "reverseCancellation"
    # error handling
    onCalendlyError = "onCalendlyError"
    onPaymentError = "onPaymentError"
    onWebhookError = "onWebhookError"
    attemptRecovery = "attemptRecovery"
    recoverySucceeded = "recoverySucceeded"
    recoveryFailed = "recoveryFailed"


S, T = State, Trigger

# Targets that depend on where the booking came from (ERROR_RECOVERY's "original state" and
# "appropriate error state"); resolved from Booking.error_origin.
ORIGIN = "<origin>"
ERROR_FOR_ORIGIN = "<error for origin>"

ERROR_STATES = frozenset({S.ERROR_CALENDLY, S.ERROR_PAYMENT, S.ERROR_WEBHOOK, S.ERROR_RECOVERY})

# Before BOOKING_CONFIRMED, the client may abandon the flow (cancelBookingProcess -> IDLE). Not from
# PAYMENT_SUCCEEDED: the money is in, and the booking is a moment away from confirmed.
ABANDONABLE = (
    S.CALENDLY_SCHEDULING, S.CALENDLY_SCHEDULED, S.CALENDLY_WEBHOOK_RECEIVED, S.PAYMENT_PENDING,
    S.PAYMENT_PROCESSING, S.PAYMENT_FAILED, S.ERROR_CALENDLY, S.ERROR_PAYMENT, S.ERROR_WEBHOOK,
    S.ERROR_RECOVERY,
)

# Every state that can get stuck goes to ERROR_RECOVERY when it outlives its timeout (attemptRecovery).
RECOVERABLE = (
    S.CALENDLY_SCHEDULED, S.CALENDLY_WEBHOOK_RECEIVED, S.PAYMENT_PENDING, S.PAYMENT_PROCESSING,
    S.PAYMENT_SUCCEEDED, S.PAYMENT_FAILED, S.BOOKING_CANCELLED, S.BOOKING_RESCHEDULED, S.REFUND_PENDING,
    S.ERROR_CALENDLY, S.ERROR_PAYMENT, S.ERROR_WEBHOOK,
)

TRANSITIONS: dict[tuple[State, Trigger], State | str] = {
    # scheduling
    (S.CALENDLY_SCHEDULING, T.onCalendlyEventCreated): S.CALENDLY_SCHEDULED,
    # early webhook: invitee.created before the client's report
    (S.CALENDLY_SCHEDULING, T.onCalendlyWebhookReceived): S.CALENDLY_WEBHOOK_RECEIVED,
    (S.CALENDLY_SCHEDULING, T.onCalendlyError): S.ERROR_CALENDLY,
    (S.CALENDLY_SCHEDULED, T.onCalendlyWebhookReceived): S.CALENDLY_WEBHOOK_RECEIVED,
    # missing webhook: the API confirmed the invitee instead
    (S.CALENDLY_SCHEDULED, T.initiatePayment): S.PAYMENT_PENDING,
    (S.CALENDLY_SCHEDULED, T.onWebhookError): S.ERROR_WEBHOOK,
    (S.CALENDLY_WEBHOOK_RECEIVED, T.initiatePayment): S.PAYMENT_PENDING,
    # a free session (payment collection off for its type) is confirmed once its slot is known
    (S.CALENDLY_WEBHOOK_RECEIVED, T.confirmBooking): S.BOOKING_CONFIRMED,
    (S.CALENDLY_SCHEDULED, T.confirmBooking): S.BOOKING_CONFIRMED,
    (S.CALENDLY_WEBHOOK_RECEIVED, T.cancelBooking): S.BOOKING_CANCELLED,
    (S.CALENDLY_WEBHOOK_RECEIVED, T.onWebhookError): S.ERROR_WEBHOOK,
    # payment
    (S.PAYMENT_PENDING, T.onStripeSessionCreated): S.PAYMENT_PROCESSING,
    # paid before the session was recorded (a worker died between Stripe's answer and our write)
    (S.PAYMENT_PENDING, T.onPaymentSucceeded): S.PAYMENT_SUCCEEDED,
    (S.PAYMENT_PENDING, T.onPaymentError): S.ERROR_PAYMENT,
    (S.PAYMENT_PROCESSING, T.onPaymentSucceeded): S.PAYMENT_SUCCEEDED,
    (S.PAYMENT_PROCESSING, T.onPaymentFailed): S.PAYMENT_FAILED,
    (S.PAYMENT_PROCESSING, T.onPaymentError): S.ERROR_PAYMENT,
    (S.PAYMENT_SUCCEEDED, T.confirmBooking): S.BOOKING_CONFIRMED,
    (S.PAYMENT_FAILED, T.retryPayment): S.PAYMENT_PENDING,
    # a delayed payment method, or an older session, settled after the failure was recorded
    (S.PAYMENT_FAILED, T.onPaymentSucceeded): S.PAYMENT_SUCCEEDED,
    (S.ERROR_PAYMENT, T.retryPayment): S.PAYMENT_PENDING,
    # booking management
    (S.BOOKING_CONFIRMED, T.cancelBooking): S.BOOKING_CANCELLED,
    (S.BOOKING_CONFIRMED, T.rescheduleBooking): S.BOOKING_RESCHEDULED,
    (S.BOOKING_RESCHEDULED, T.confirmBooking): S.BOOKING_CONFIRMED,
    (S.BOOKING_RESCHEDULED, T.cancelBooking): S.BOOKING_CANCELLED,
    # a reschedule to a dearer session type charges the difference
    (S.BOOKING_RESCHEDULED, T.initiatePayment): S.PAYMENT_PENDING,
    # a booking already paid (a reschedule's difference still open) is cancelled, not abandoned
    (S.PAYMENT_PENDING, T.cancelBooking): S.BOOKING_CANCELLED,
    (S.PAYMENT_PROCESSING, T.cancelBooking): S.BOOKING_CANCELLED,
    (S.PAYMENT_FAILED, T.cancelBooking): S.BOOKING_CANCELLED,
    (S.BOOKING_CANCELLED, T.initiateRefund): S.REFUND_PENDING,
    (S.BOOKING_CANCELLED, T.reverseCancellation): S.BOOKING_CONFIRMED,
    (S.REFUND_PENDING, T.completeRefund): S.REFUND_COMPLETED,
    (S.REFUND_PENDING, T.onPaymentError): S.ERROR_PAYMENT,
    (S.IDLE, T.onLatePayment): S.REFUND_PENDING,
    # errors
    (S.ERROR_CALENDLY, T.startCalendlyScheduling): S.CALENDLY_SCHEDULING,
    (S.ERROR_WEBHOOK, T.onCalendlyEventCreated): S.CALENDLY_SCHEDULED,
    (S.ERROR_RECOVERY, T.recoverySucceeded): ORIGIN,
    (S.ERROR_RECOVERY, T.recoveryFailed): ERROR_FOR_ORIGIN,
    **{(state, T.cancelBookingProcess): S.IDLE for state in ABANDONABLE},
    **{(state, T.attemptRecovery): S.ERROR_RECOVERY for state in RECOVERABLE},
}

# --- state groups: where the decisions (jobs/) and the views look the booking up -----------------

# Where a client's report of the slot it scheduled can move the booking.
REPORTABLE = frozenset({S.CALENDLY_SCHEDULING, S.ERROR_WEBHOOK})
# Waiting for Calendly's invitee: one that names the booking may be accepted.
AWAITING_INVITEE = frozenset({S.CALENDLY_SCHEDULING, S.CALENDLY_SCHEDULED})
# Not yet confirmed: a slot moved in Calendly simply follows.
BEFORE_CONFIRMATION = frozenset(ABANDONABLE) | {S.PAYMENT_SUCCEEDED}
# Where a payment is expected (or, in PAYMENT_FAILED, still welcome).
AWAITING_PAYMENT = frozenset({S.PAYMENT_PENDING, S.PAYMENT_PROCESSING, S.PAYMENT_FAILED})
# Where the status shows the open Checkout Session's URL.
CHECKOUT_OPEN = frozenset({S.PAYMENT_PROCESSING})
# States that must not last: a booking found resting in one of them was left by a dead worker.
TRANSIENT = frozenset({S.CALENDLY_WEBHOOK_RECEIVED, S.PAYMENT_PENDING, S.PAYMENT_SUCCEEDED, S.BOOKING_RESCHEDULED})
# States whose closing work (the slot released, the refund decided) is done once settled_at is set.
CLOSING = frozenset({S.IDLE, S.BOOKING_CANCELLED})
# States that only move on by our own action: outliving their timeout means something failed.
STUCK_WHEN_TIMED_OUT = (frozenset(ERROR_STATES - {S.ERROR_RECOVERY}) | TRANSIENT
                        | {S.BOOKING_CANCELLED, S.REFUND_PENDING})

# Guards: conditions on the booking, beyond its state, for a pair of the table to apply.
BEFORE_MONEY = frozenset({
    S.CALENDLY_SCHEDULING, S.CALENDLY_SCHEDULED, S.CALENDLY_WEBHOOK_RECEIVED,
    S.PAYMENT_PENDING, S.PAYMENT_PROCESSING, S.PAYMENT_FAILED,
})


def went_wrong_before_payment(booking) -> bool:
    """An error that struck before any money was taken. One that struck a refund (or anything after
    payment) must go back through recovery: never to a fresh checkout, never to IDLE."""
    return booking.error_origin is None or State(booking.error_origin) in BEFORE_MONEY


def nothing_paid(booking) -> bool:
    """Abandoning a flow is for bookings that never took money; one that did is cancelled, and its
    refund follows the policy."""
    return not booking.amount_paid


def something_paid(booking) -> bool:
    return not nothing_paid(booking)


def free(booking) -> bool:
    return booking.amount == 0


def not_free(booking) -> bool:
    return booking.amount != 0


GUARDS: dict[tuple[State, Trigger], Callable] = {
    (S.CALENDLY_WEBHOOK_RECEIVED, T.confirmBooking): free,
    (S.CALENDLY_SCHEDULED, T.confirmBooking): free,
    (S.CALENDLY_WEBHOOK_RECEIVED, T.initiatePayment): not_free,
    (S.CALENDLY_SCHEDULED, T.initiatePayment): not_free,
    (S.ERROR_PAYMENT, T.retryPayment): went_wrong_before_payment,
    **{(state, T.cancelBookingProcess): nothing_paid for state in ABANDONABLE},
    **{(state, T.cancelBookingProcess): lambda b: went_wrong_before_payment(b) and nothing_paid(b) for state in ERROR_STATES},
    **{(state, T.cancelBooking): something_paid for state in (S.PAYMENT_PENDING, S.PAYMENT_PROCESSING, S.PAYMENT_FAILED)},
}

# Where a failed recovery lands, by the state the booking was in when it went wrong.
ERROR_STATE_FOR = {
    S.CALENDLY_SCHEDULING: S.ERROR_CALENDLY,
    S.CALENDLY_SCHEDULED: S.ERROR_WEBHOOK,
    S.CALENDLY_WEBHOOK_RECEIVED: S.ERROR_WEBHOOK,
}
DEFAULT_ERROR_STATE = S.ERROR_PAYMENT

# States a booking rests in by design: nothing is pending, so no timeout applies.
RESTING = frozenset({S.IDLE, S.BOOKING_CONFIRMED, S.REFUND_COMPLETED})

# How long a booking may stay in each other state before the scheduler looks at it (seconds).
# Overridable with STATE_TIMEOUTS.
TIMEOUTS: dict[State, int] = {
    S.CALENDLY_SCHEDULING: 2 * 3600,  # the client is choosing a slot
    S.CALENDLY_SCHEDULED: 10 * 60,  # invitee.created normally follows within seconds
    S.CALENDLY_WEBHOOK_RECEIVED: 5 * 60,
    S.PAYMENT_PENDING: 5 * 60,
    S.PAYMENT_PROCESSING: 25 * 3600,  # past the longest Checkout lifetime (24 h)
    S.PAYMENT_SUCCEEDED: 5 * 60,
    S.PAYMENT_FAILED: 60 * 60,  # the payment hold: PAYMENT_HOLD_MINUTES when given
    S.BOOKING_CANCELLED: 15 * 60,
    S.BOOKING_RESCHEDULED: 60 * 60,
    S.REFUND_PENDING: 24 * 3600,
    S.ERROR_CALENDLY: 15 * 60,
    S.ERROR_PAYMENT: 15 * 60,
    S.ERROR_WEBHOOK: 15 * 60,
    S.ERROR_RECOVERY: 60 * 60,
}


def timeout_for(state: State, overrides: dict[str, int] | None = None,
                payment_hold_minutes: int | None = None) -> dt.timedelta | None:
    if state in RESTING:
        return None
    default = TIMEOUTS[state]
    if state == S.PAYMENT_FAILED and payment_hold_minutes is not None:
        default = payment_hold_minutes * 60
    return dt.timedelta(seconds=(overrides or {}).get(state.value, default))


# How soon the scheduler first looks at a booking that entered a state, when sooner than the state's
# timeout (seconds): to finish an entry action a dead worker left, or to ask a provider about a
# webhook that may never come. Other states are first looked at when their timeout runs out.
FIRST_LOOK: dict[State, int] = {
    S.CALENDLY_WEBHOOK_RECEIVED: 60,
    S.PAYMENT_PENDING: 60,
    S.PAYMENT_SUCCEEDED: 60,
    S.BOOKING_RESCHEDULED: 60,
    S.BOOKING_CANCELLED: 60,
    S.IDLE: 60,  # closing work of an abandoned booking: release the slot, refund a late payment
    S.ERROR_RECOVERY: 0,
    S.PAYMENT_PROCESSING: 10 * 60,
    S.REFUND_PENDING: 10 * 60,
}
# A confirmed booking is checked against Calendly this long before it starts (a lost cancellation).
PRESTART_CHECK = dt.timedelta(hours=24)


def first_check_at(state: State, now: dt.datetime, scheduled_start: dt.datetime | None = None,
                   overrides: dict[str, int] | None = None, payment_hold_minutes: int | None = None) -> dt.datetime | None:
    if state == S.REFUND_COMPLETED:
        return None
    if state == S.BOOKING_CONFIRMED:
        if scheduled_start is None or scheduled_start <= now:
            return None
        return max(now + dt.timedelta(minutes=10), scheduled_start - PRESTART_CHECK)
    timeout = timeout_for(state, overrides, payment_hold_minutes)
    candidates = [FIRST_LOOK.get(state), (overrides or {}).get(state.value), timeout and timeout.total_seconds()]
    return now + dt.timedelta(seconds=min(c for c in candidates if c is not None))


def _configured_check(state: State, now: dt.datetime, scheduled_start) -> dt.datetime | None:
    current = settings_module.get()  # the timeouts operators override
    return first_check_at(state, now, scheduled_start, current.state_timeouts, current.payment_hold_minutes)


class TransitionRefused(Exception):
    def __init__(self, booking_id: str, state: str, trigger: str):
        self.booking_id, self.state, self.trigger = booking_id, state, trigger
        super().__init__(f"booking {booking_id}: {trigger} is not allowed in {state}")


class BookingNotFound(Exception):
    pass


@dataclass(frozen=True)
class Applied:
    booking: Booking  # as it is after the transition (or as found, for a replay)
    changed: bool  # False when this exact (trigger, cause) had already been applied: a replay
    from_state: str | None = None  # the state the transition left (for a replay: the state found)
    effected: bool = False  # the transition's effects wrote something (an e-mail to send)

    @property
    def state(self) -> State:
        return State(self.booking.state)


def target_of(booking: Booking, trigger: Trigger) -> State:
    """Where `trigger` takes `booking`, or TransitionRefused."""
    current = State(booking.state)
    target = TRANSITIONS.get((current, trigger))
    guard = GUARDS.get((current, trigger))
    if target is None or (guard is not None and not guard(booking)):
        raise TransitionRefused(booking.id, current.value, trigger.value)
    if target == ORIGIN:
        if not booking.error_origin:
            raise TransitionRefused(booking.id, current.value, trigger.value)
        return State(booking.error_origin)
    if target == ERROR_FOR_ORIGIN:
        origin = State(booking.error_origin) if booking.error_origin else None
        return ERROR_STATE_FOR.get(origin, DEFAULT_ERROR_STATE)
    return target


def allowed(booking: Booking, trigger: Trigger) -> bool:
    """Whether `trigger` applies to the booking as it is now (its state and the guards)."""
    try:
        target_of(booking, trigger)
    except TransitionRefused:
        return False
    return True


def _already_applied(booking_id: str, trigger: Trigger, cause: str | None) -> bool:
    if cause is None:
        return False
    return (
        Transition.select()
        .where(Transition.booking == booking_id, Transition.trigger == trigger.value, Transition.cause == cause)
        .exists()
    )


def _error_origin_after(booking: Booking, target: State) -> str | None:
    current = State(booking.state)
    if target in ERROR_STATES:
        # Entering the error world: remember where we came from (unless already inside it).
        return booking.error_origin if current in ERROR_STATES else current.value
    return None


Effects = Callable[[Booking, State, Trigger], bool]


def apply(booking_id: str, trigger: Trigger, *, cause: str | None = None, effects: Effects | None = None,
          failure: Failure | None = None, read: Booking | None = None, **changes) -> Applied:
    """Apply `trigger` to the booking: compare-and-set on its state, plus the history row.

    `changes` are other booking fields written in the same statement. `effects(booking, from_state,
    trigger)` runs inside the same transaction with the booking as changed, for what must happen
    exactly once with the transition (an e-mail in the outbox); it returns whether it wrote anything.
    Replaying a (trigger, cause) already applied is a no-op (`changed=False`); any other pair not in
    the table raises TransitionRefused and changes nothing.

    `read` is the booking as the caller has just read it, decided on instead of reading it again: the
    compare-and-set is on its version, so a booking written since (its state or any other field) is
    read afresh and decided again.
    """
    trigger = Trigger(trigger)
    while True:
        booking, read = (read, None) if read is not None and read.id == booking_id else (Booking.by_id(booking_id), None)
        if booking is None:
            raise BookingNotFound(booking_id)
        try:
            target = target_of(booking, trigger)
        except TransitionRefused:
            # Not allowed from here: fine if it is a replay of what moved the booking here or beyond.
            if _already_applied(booking_id, trigger, cause):
                return Applied(booking, changed=False, from_state=booking.state)
            raise
        now = utcnow()
        start = changes.get("scheduled_start", booking.scheduled_start)
        schedule = {"next_check_at": _configured_check(target, now, start), "check_attempts": 0}
        # The booking shows its failure until a transition that is not itself a failure.
        schedule |= ({"error_class": failure.error_class, "error_message": failure.message[:300]} if failure
                     else {"error_class": None, "error_message": None})
        try:
            with write_transaction():
                after = _compare_and_set(booking, target, now, {**schedule, **changes})
                if after is None:
                    continue  # someone else moved it first: look again and decide again
                # A replay of an applied (trigger, cause) that the booking's state allows again fails
                # here, on the history's unique key, and the whole transition rolls back.
                _INSERT_TRANSITION.execute(
                    booking=booking_id, from_state=booking.state, state=target.value, trigger=trigger.value,
                    cause=cause, at=now, error_class=failure.error_class if failure else None,
                    error_message=failure.message[:300] if failure else None,
                )
                effected = bool(effects(after, State(booking.state), trigger)) if effects is not None else False
        except peewee.IntegrityError:
            # The same cause won a race against us on the unique history key: a replay.
            return Applied(Booking.get_by_id(booking_id), changed=False, from_state=booking.state)
        return Applied(after, changed=True, from_state=booking.state, effected=effected)


# Once per transition, on the workers' hot path: rendered once (models/statements.py).
_INSERT_TRANSITION = RenderedInsert(Transition, ("booking", "from_state", "state", "trigger", "cause", "at",
                                                 "error_class", "error_message"))


# A transition: the booking moved on if it is still the version it was read as (every write bumps the
# version, so its state and the fields the decision used are unchanged), returned as written. A write
# of other fields: its version bumped too, so pollers see it.
_TRANSITION = RenderedUpdate(Booking, Booking.id, guard=Booking.version, counter=Booking.version, returning=True)
_FIELDS = RenderedUpdate(Booking, Booking.id, counter=Booking.version)


def _compare_and_set(booking: Booking, target: State, now: dt.datetime, changes: dict) -> Booking | None:
    """Move `booking` to `target` if it is still as it was read (its version unchanged); the booking as
    written (None if it was written since). Where the database returns the written row, it is not read
    again."""
    return _TRANSITION.execute(booking.id, booking.version, state=target.value, state_changed_at=now, updated_at=now,
                               error_origin=_error_origin_after(booking, target), **changes)


def update_fields(booking_id: str, only_if: peewee.Expression | None = None, **changes) -> int:
    """Write non-state fields of a booking, bumping its version so pollers see the change; with
    `only_if`, a compare-and-set (0 when the condition no longer holds)."""
    if "state" in changes:
        raise ValueError("state is written by apply() alone")
    if only_if is None:
        return _FIELDS.execute(booking_id, updated_at=utcnow(), **changes)
    return (
        Booking.update(version=Booking.version + 1, updated_at=utcnow(), **changes)
        .where((Booking.id == booking_id) & only_if)
        .execute()
    )


def record_failure(booking_id: str, error_class: str, message: str, last_error: str | None = None) -> int:
    """A failure the client should see, without a transition: its class and message (shown until the
    next transition that is not itself a failure), and what operators read."""
    changes = {"error_class": error_class, "error_message": message[:300]}
    if last_error is not None:
        changes["last_error"] = last_error[:500]
    return update_fields(booking_id, **changes)


OPERATOR_OVERRIDE = "operatorOverride"  # the history's trigger for a forced transition


def force(booking_id: str, target: State, reason: str, operator: str) -> Booking:
    """An operator's transition outside the table: still a compare-and-set with its history row,
    recorded as the operator's, with the reason. The booking is unflagged and looked at again."""
    if not reason.strip():
        raise ValueError("a forced transition needs a reason")
    booking = Booking.by_id(booking_id)
    if booking is None:
        raise BookingNotFound(booking_id)
    now = utcnow()
    with write_transaction():
        updated = (
            Booking.update(state=target.value, version=Booking.version + 1, state_changed_at=now, updated_at=now,
                           flagged_at=None, flag_reason=None, recovery_attempts=0, check_attempts=0,
                           next_check_at=_configured_check(target, now, booking.scheduled_start),
                           settled_at=None, released_at=booking.released_at)
            .where(Booking.id == booking_id, Booking.state == booking.state)
            .execute()
        )
        if not updated:
            raise TransitionRefused(booking_id, booking.state, OPERATOR_OVERRIDE)
        Transition.create(booking=booking_id, from_state=booking.state, state=target.value,
                          trigger=OPERATOR_OVERRIDE, cause=f"{operator}: {reason.strip()}"[:255], at=now)
    return Booking.get_by_id(booking_id)


def schedule_check(booking_id: str, when: dt.datetime | None) -> None:
    """When the scheduler looks at the booking next. Not a change a client can see: no version bump."""
    Booking.update(next_check_at=when).where(Booking.id == booking_id).execute()


def claim_check(booking_id: str, seen_next_check: dt.datetime, until: dt.datetime) -> bool:
    """The scheduler's claim on a due booking: a compare-and-set on the next check it saw, pushed to
    `until` and counted, so a second scheduler finds it taken and a check that keeps failing backs off."""
    return bool(
        Booking.update(next_check_at=until, check_attempts=Booking.check_attempts + 1)
        .where(Booking.id == booking_id, Booking.next_check_at == seen_next_check)
        .execute()
    )


def check_worked(booking_id: str) -> None:
    """The backoff counts checks that fail in a row, not checks."""
    Booking.update(check_attempts=0).where(Booking.id == booking_id, Booking.check_attempts != 0).execute()


def unflag(booking_id: str) -> None:
    """An operator takes the booking back from the flag: automation looks at it again now."""
    Booking.update(flagged_at=None, flag_reason=None, recovery_attempts=0, check_attempts=0,
                   next_check_at=utcnow()).where(Booking.id == booking_id).execute()


def record_creation(booking: Booking, cause: str | None = None) -> None:
    """The first history row of a booking created in CALENDLY_SCHEDULING."""
    Transition.create(
        booking=booking.id, from_state=None, state=booking.state,
        trigger=Trigger.startCalendlyScheduling.value, cause=cause, at=booking.created_at,
    )
