"""A paid payment's documents for the client: the receipt Stripe keeps for its charge (`receipt_url`)
and, for a session type with `invoice`, the invoice Stripe issued (`hosted_invoice_url`).

Neither is in the webhook that reports the payment: they are read from Stripe's API, by the id of the
PaymentIntent and of the invoice that our own recorded session carries. They are read once the money
is recorded, before the booking is confirmed, so the confirmation e-mail can link them; what Stripe
does not have yet (an invoice still being finalized) or could not tell (an outage) the scheduler's
sweep asks for again (`collect_receipts`), every few minutes for a few days. A link is shown only as Stripe's API gave it, and
only an https (or, in the sandbox, http) URL."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import dramatiq
import stripe

from bookingflow import broker
from bookingflow.providers import stripe_client
from models.db import utcnow
from models.states import update_fields
from models.tables import Payment

log = logging.getLogger(__name__)


def _link(value) -> str | None:
    if not isinstance(value, str) or len(value) > 2000:
        return None
    parts = urlsplit(value)
    return value if parts.scheme in ("https", "http") and parts.netloc else None


def _receipt_url(payment: Payment) -> str | None:
    intent = stripe_client.retrieve_payment_intent(payment.payment_intent_id, expand=["latest_charge"])
    charge = intent.get("latest_charge")
    if isinstance(charge, str):  # not expanded after all
        charge = stripe_client.retrieve_charge(charge)
    return _link(charge.get("receipt_url")) if isinstance(charge, dict) else None


def _invoice_url(payment: Payment) -> str | None:
    invoice = stripe_client.retrieve_invoice(payment.invoice_id)
    return _link(invoice.get("hosted_invoice_url"))


def collect(payment_id: int) -> bool:
    """Read from Stripe the documents the paid payment lacks and record them (the booking's version
    moves, so its pollers see them). True once nothing is missing."""
    payment = Payment.get_or_none(Payment.id == payment_id)
    if payment is None or payment.status != "paid":
        return True
    changes = {}
    if payment.receipt_url is None and payment.payment_intent_id:
        changes["receipt_url"] = _receipt_url(payment)
    if payment.invoice_url is None and payment.invoice_id:
        changes["invoice_url"] = _invoice_url(payment)
    found = {name: url for name, url in changes.items() if url}
    Payment.update(documents_checked_at=utcnow(), **found).where(Payment.id == payment.id).execute()
    if found:
        update_fields(payment.booking_id)
    return len(found) == len(changes)


def collect_now(payment_id: int) -> None:
    """Collect while the payment is being recorded. Whatever is missing, or an error, is left to the
    sweep (scheduler/sweeps.py asks again later): it must never hold up the booking's confirmation."""
    try:
        collect(payment_id)
    except stripe.StripeError as exc:
        log.info("payment %s: receipts not read yet (%s); the sweep asks again", payment_id, exc)


@dramatiq.actor(actor_name=broker.COLLECT_RECEIPTS, max_retries=2, min_backoff=15_000, time_limit=60_000)
def collect_receipts(payment_id: int) -> None:
    """The sweep's request: ask Stripe again (what it still lacks, the sweep asks for later)."""
    collect(payment_id)
