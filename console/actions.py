"""What an operator does from the console, each through the operator operations the command line uses
(models.operations, models.states.force, models.flags), each recorded in the audit with its reason.

Each action returns what the operator is told. Nothing here decides a booking's fate itself: retry and
replay hand the booking or the delivery back to the workers, cancel asks them, force is the one
transition outside the table, written by the state machine's own force().
"""

from __future__ import annotations

from bookingflow.providers.stripe_amounts import display
from console import audit
from models import flags, operations
from models.states import BookingNotFound, State, TransitionRefused, force
from models.tables import Booking, ProviderEvent

# States that say the client paid in full for its session: entering one by force is a promise that the
# money is there.
PAID_STATES = frozenset({State.PAYMENT_SUCCEEDED, State.BOOKING_CONFIRMED, State.BOOKING_RESCHEDULED})
# States that say money is on its way back: without money held, there is nothing to refund.
REFUNDING_STATES = frozenset({State.REFUND_PENDING, State.REFUND_COMPLETED})
# States from which the workers charge the client (again).
CHARGING_STATES = frozenset({State.PAYMENT_PENDING, State.PAYMENT_PROCESSING, State.PAYMENT_FAILED})


class ActionRefused(Exception):
    """The action cannot be done as asked; str() says why, for the operator."""


def _reason(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise ActionRefused("Say why: every action is recorded with its reason.")
    if len(text) > 500:
        raise ActionRefused("Keep the reason under 500 characters.")
    return text


def _booking(booking_id: str) -> Booking:
    booking = Booking.by_id(booking_id)
    if booking is None:
        raise ActionRefused(f"No booking {booking_id}.")
    return booking


def force_warnings(booking: Booking, target: State) -> list[str]:
    """What forcing `booking` to `target` would claim about money that is not so."""
    held = booking.amount_paid - booking.amount_refunded
    warnings = []
    if target in PAID_STATES and booking.amount > 0 and booking.amount_paid < booking.amount:
        warnings.append(f"{target.value} means the client paid, but this booking costs "
                        f"{display(booking.amount, booking.currency)} and has received "
                        f"{display(booking.amount_paid, booking.currency)}: the client would get a session "
                        f"that was never paid for.")
    if target in REFUNDING_STATES and held <= 0:
        warnings.append(f"{target.value} means money is going back, but this booking holds none "
                        f"(paid {display(booking.amount_paid, booking.currency)}, refunded "
                        f"{display(booking.amount_refunded, booking.currency)}).")
    if target in CHARGING_STATES and held > 0:
        warnings.append(f"{target.value} means the client is to pay, but this booking already holds "
                        f"{display(held, booking.currency)}: the workers may charge the client again.")
    if target == State.IDLE and held > 0:
        warnings.append(f"IDLE abandons the flow, and the {display(held, booking.currency)} this booking holds "
                        f"is then refunded in full as a late payment.")
    if booking.flagged_at:
        warnings.append(f"The booking is flagged ({booking.flag_reason}); forcing clears the flag.")
    return warnings


def target_state(text: str) -> State:
    if text not in State.__members__:
        raise ActionRefused(f"No state {text!r}.")
    return State(text)


def force_state(operator: str, booking_id: str, target: State, reason: str) -> str:
    reason, booking = _reason(reason), _booking(booking_id)
    try:
        forced = force(booking.id, target, reason, operator=f"console {operator}")
    except TransitionRefused:
        outcome = "refused: the booking changed while it was being forced; look again"
        audit.record(operator, "force", reason, outcome, booking.id, subject=f"{booking.state} -> {target.value}")
        raise ActionRefused("The booking changed while it was being forced: look at it again.") from None
    outcome = f"forced from {booking.state} to {forced.state}"
    audit.record(operator, "force", reason, outcome, booking.id, subject=f"{booking.state} -> {target.value}")
    return f"Booking forced to {forced.state}."


def retry(operator: str, booking_id: str, reason: str) -> str:
    reason = _reason(reason)
    try:
        booking = operations.retry(booking_id)
    except BookingNotFound:
        raise ActionRefused(f"No booking {booking_id}.") from None
    audit.record(operator, "retry", reason, f"queued the step of {booking.state}", booking.id, subject=booking.state)
    return f"Queued: the current step of the booking ({booking.state}) runs again now."


def replay(operator: str, event_pk: int, reason: str) -> tuple[str, str | None]:
    """Replay a stored delivery; (what to say, the booking it is about, if any)."""
    reason = _reason(reason)
    event = ProviderEvent.get_or_none(ProviderEvent.id == event_pk)
    if event is None or event.payload is None:
        raise ActionRefused("No such delivery, or its body was pruned: nothing to replay.")
    operations.replay(event)
    booking_id = event.booking_id or (event.subject if Booking.by_id(event.subject) else None)
    audit.record(operator, "replay", reason, f"queued {event.provider} {event.type} (was {event.outcome or 'pending'})",
                 booking_id, subject=f"delivery {event.id} {event.event_id}")
    return f"Queued: {event.provider} {event.type} {event.event_id} is processed again.", booking_id


def cancel(operator: str, booking_id: str, in_full: bool, reason: str) -> str:
    reason, booking = _reason(reason), _booking(booking_id)
    event = operations.cancel(booking.id, in_full=in_full, operator=f"console {operator}")
    how = "refunding in full" if in_full else "refunding by the policy"
    audit.record(operator, "cancel", reason, f"queued ({how}) from {booking.state}", booking.id,
                 subject=f"delivery {event.id}")
    return f"Queued: the booking is cancelled, {how}. Its state changes once a worker has done it."


def set_flag(operator: str, name: str, enabled: bool, reason: str) -> str:
    reason = _reason(reason)
    if name not in flags.KNOWN:
        raise ActionRefused(f"No flag {name!r}.")
    flags.set_enabled(flags.KNOWN[name], enabled, f"{operator}: {reason}"[:500])
    audit.record(operator, "flag", reason, f"{name} {'on' if enabled else 'off'}", subject=name)
    return f"{name} is {'on' if enabled else 'off'}."
