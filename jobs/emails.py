"""The client e-mails: which transition sends which, and their text."""

from __future__ import annotations

from bookingflow import settings as settings_module
from models.states import State, Trigger
from models.tables import Booking


# Stripe's zero-decimal currencies: their minor unit is the unit.
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}


def _money(amount: int, currency: str) -> str:
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount} {currency.upper()}"
    return f"{amount / 100:.2f} {currency.upper()}"


def _when(booking: Booking) -> str:
    return booking.scheduled_start.strftime("%A %d %B %Y, %H:%M UTC") if booking.scheduled_start else "the time you chose"


def status_link(booking: Booking) -> str:
    # The status link is also the recovery link: the id is the only key to the booking.
    return f"{settings_module.get().public_url}/bookings/{booking.id}"


def kind_for(booking: Booking, from_state: State, trigger: Trigger) -> str | None:
    if trigger == Trigger.confirmBooking:
        # From PAYMENT_SUCCEEDED after a reschedule, the payment was the price difference.
        rescheduled = from_state == State.BOOKING_RESCHEDULED or bool(booking.reschedule_invitee_uri)
        return "rescheduled" if rescheduled else "confirmation"
    return {
        Trigger.onPaymentFailed: "payment_failed",
        Trigger.cancelBooking: "cancelled",
        Trigger.cancelBookingProcess: "cancelled",
        Trigger.completeRefund: "refunded",
    }.get(trigger)


def render(kind: str, booking: Booking) -> tuple[str, str]:
    name, session = booking.name, booking.session_type.name
    link = status_link(booking)
    if kind == "confirmation":
        paid = f" and paid ({_money(booking.amount_paid, booking.currency)})" if booking.amount_paid else ""
        return (f"Booked: {session}", f"Hello {name},\n\nyour {session} on {_when(booking)} is confirmed{paid}."
                f"\n\nSee, cancel or reschedule it here: {link}\n")
    if kind == "rescheduled":
        return (f"Rescheduled: {session}", f"Hello {name},\n\nyour {session} is now on {_when(booking)}.\n\n"
                f"Your booking: {link}\n")
    if kind == "payment_failed":
        return (f"Payment not completed: {session}", f"Hello {name},\n\nthe payment for your {session} on "
                f"{_when(booking)} did not go through ({booking.payment_failure or 'no payment'}). Your slot is held "
                f"for a while: retry the payment here: {link}\n")
    if kind == "cancelled":
        return (f"Cancelled: {session}", f"Hello {name},\n\nyour {session} on {_when(booking)} is cancelled"
                f"{' (' + booking.cancel_reason + ')' if booking.cancel_reason else ''}.\n\nDetails: {link}\n")
    if kind == "refunded":
        return (f"Refunded: {session}", f"Hello {name},\n\nwe have refunded {_money(booking.amount_refunded, booking.currency)} "
                f"for your {session}. It reaches your account in 5 to 10 business days.\n\nDetails: {link}\n")
    raise ValueError(f"unknown e-mail kind {kind!r}")
