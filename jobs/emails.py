"""The client e-mails: which transition sends which, and their text.

Text a client wrote (the name, a cancellation's reason: typed into our API or into Calendly) reaches
someone's inbox from MAIL_FROM, so it goes in short and plain: no control character or line break, no
link, bounded in length."""

from __future__ import annotations

import re
import unicodedata

from bookingflow import settings as settings_module
from bookingflow.providers import stripe_amounts
from jobs.ledger import CLOSING_REFUNDS
from models.bookings import paid_payments
from models.states import State, Trigger
from models.tables import Booking, Refund


# How much client-written text an e-mail carries.
NAME_LIMIT = 100
REASON_LIMIT = 200
# A link in any form a mail client might make clickable: a scheme (with or without slashes, backslashes
# as browsers read them), or a host starting with www.
LINK = re.compile(r"(?i)(?<![a-z0-9])(?:[a-z][a-z0-9+.-]*:[/\\]+|(?:https?|ftp|file|mailto|javascript|data|tel|sms):|www\.)\S*")
LINK_REMOVED = "[link removed]"


def client_text(text: str | None, limit: int) -> str:
    """`text` fit to quote in an e-mail: compatibility forms folded (a full-width colon is a colon),
    every control, format or separator character a space, links replaced, spaces collapsed, and at
    most `limit` characters (cut with an ellipsis)."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(" " if unicodedata.category(char)[0] in "CZ" else char for char in text)
    text = LINK.sub(LINK_REMOVED, text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def greeting_name(booking: Booking) -> str:
    """Whom the e-mail greets: the invitee as Calendly reported them, else the name the client typed."""
    return client_text(booking.invitee_name, NAME_LIMIT) or client_text(booking.name, NAME_LIMIT) or "there"


def _when(booking: Booking) -> str:
    return booking.scheduled_start.strftime("%A %d %B %Y, %H:%M UTC") if booking.scheduled_start else "the time you chose"


def status_link(booking: Booking) -> str:
    # The status link is also the recovery link: the id is the only key to the booking.
    return f"{settings_module.get().public_url}/bookings/{booking.id}"


def _refunded_now(booking: Booking) -> int:
    """What the refunds closing the booking sent back, in the booking's currency."""
    rows = Refund.select().where(Refund.booking == booking.id, Refund.purpose.in_(CLOSING_REFUNDS),
                                 Refund.status == "succeeded", Refund.currency == booking.currency)
    return sum(row.amount for row in rows)


def refund_text(booking: Booking) -> str:
    """The refund e-mail's amounts: what came back now, of what the client paid (the total charged, after
    any discount, with any tax), and in all when earlier refunds (a cheaper reschedule's) came first."""
    def money(amount: int) -> str:
        return stripe_amounts.display(amount, booking.currency)

    now = _refunded_now(booking) or booking.amount_refunded
    text = f"we have refunded {money(now)} of the {money(booking.amount_paid)} you paid"
    if booking.amount_refunded > now:
        text += f" ({money(booking.amount_refunded)} in all, with {money(booking.amount_refunded - now)} refunded before)"
    return text


def _documents(booking: Booking) -> str:
    """The receipts and invoices Stripe has for the booking's payments, as links (the status page
    shows them too, and any that Stripe issues later)."""
    lines = []
    for payment in paid_payments(booking.id):
        if payment.receipt_url:
            lines.append(f"Receipt: {payment.receipt_url}")
        if payment.invoice_url:
            lines.append(f"Invoice: {payment.invoice_url}")
    return "\n\n" + "\n".join(lines) if lines else ""


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
    name, session = greeting_name(booking), booking.session_type.name
    reason = client_text(booking.cancel_reason, REASON_LIMIT)
    link = status_link(booking)
    if kind == "confirmation":
        paid = f" and paid ({stripe_amounts.display(booking.amount_paid, booking.currency)})" if booking.amount_paid else ""
        return (f"Booked: {session}", f"Hello {name},\n\nyour {session} on {_when(booking)} is confirmed{paid}."
                f"{_documents(booking)}\n\nSee, cancel or reschedule it here: {link}\n")
    if kind == "rescheduled":
        return (f"Rescheduled: {session}", f"Hello {name},\n\nyour {session} is now on {_when(booking)}.\n\n"
                f"Your booking: {link}\n")
    if kind == "payment_failed":
        return (f"Payment not completed: {session}", f"Hello {name},\n\nthe payment for your {session} on "
                f"{_when(booking)} did not go through ({booking.payment_failure or 'no payment'}). Your slot is held "
                f"for a while: retry the payment here: {link}\n")
    if kind == "cancelled":
        return (f"Cancelled: {session}", f"Hello {name},\n\nyour {session} on {_when(booking)} is cancelled"
                f"{' (' + reason + ')' if reason else ''}.\n\nDetails: {link}\n")
    if kind == "refunded":
        return (f"Refunded: {session}", f"Hello {name},\n\n{refund_text(booking)} for your {session}. It reaches "
                f"your account in 5 to 10 business days.\n\nDetails: {link}\n")
    raise ValueError(f"unknown e-mail kind {kind!r}")
