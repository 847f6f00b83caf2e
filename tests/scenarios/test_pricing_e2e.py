"""Pricing on real processes (gunicorn, the dramatiq CLI and the scheduler as the Procfile starts them,
against PostgreSQL and Redis), the sandbox's Stripe playing Checkout: a promotion code, Stripe Tax, an
invoice and a receipt, and a session type priced in several currencies. What the client paid is what
comes back; the receipt and the invoice are linked from the status and the e-mail."""

from __future__ import annotations

import pytest
import requests

from support.flows import Client, hours_from_now, sessions_of
from support.mail import Mailbox
from support.realstack import reached, running_service
from support.waiting import wait_until

pytestmark = pytest.mark.e2e

# Every price in minor units. `priced` is offered in euros (default), dollars, pounds and yen.
SESSION_TYPES = [
    {"slug": "discounted", "price": 10000, "promotion_codes": True,
     "refund_policy": {"full_before_hours": 48, "partial_before_hours": 24, "partial_percent": 50}},
    {"slug": "taxed", "price": 10000, "automatic_tax": True, "invoice": True},
    {"slug": "priced", "price": 12000, "currency": "eur", "prices": {"usd": 13000, "gbp": 10500, "jpy": 20000}},
]
TAX_RATE_PERCENT = 19


@pytest.fixture(scope="module")
def mailbox():
    box = Mailbox()
    box.start()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mailbox):
    with running_service(tmp_path_factory.mktemp("pricing-e2e"), session_types=SESSION_TYPES,
                         extra_env={"SMTP_URL": mailbox.url}) as running:
        yield running


@pytest.fixture
def frontend(stack):
    return Client(stack.base, stack.sandbox)


def booked_to_checkout(frontend: Client, stack, slug: str, hours: float = 72, **extra) -> dict:
    created = frontend.http.post(f"{frontend.base}/v1/bookings", json={
        "session_type": slug, "email": "ada@example.com", "name": "Ada Lovelace", **extra})
    assert created.status_code == 201, created.text
    slot = frontend.schedule_in_calendly(created.json()["scheduling_url"], start_time=hours_from_now(hours))
    assert frontend.report_scheduled(created.json()["id"], slot).status_code == 202
    view = reached(frontend, created.json()["id"], "PAYMENT_PROCESSING", stack)
    view["slot"] = slot
    return view


def pay(frontend: Client, checkout_url: str, **extra) -> dict:
    response = frontend.http.post(checkout_url + "/pay", json={"outcome": "paid", **extra})
    assert response.status_code == 200, response.text
    return response.json()


def cancel(frontend: Client, booking_id: str) -> None:
    answer = frontend.http.post(f"{frontend.base}/v1/bookings/{booking_id}/cancel", json={"reason": "plans changed"})
    assert answer.status_code == 202, answer.text


def refunded_at_stripe(stack, booking_id: str) -> int:
    intents = {s["payment_intent"] for s in sessions_of(stack.sandbox, booking_id) if s.get("payment_intent")}
    return sum(r["amount"] for r in stack.sandbox.objects("refund") if r["payment_intent"] in intents
               and r["status"] == "succeeded")


def mails_of(mailbox: Mailbox, booking_id: str, subject: str):
    """The e-mails about the booking (its status link names it) whose subject starts with `subject`."""
    return [m for m in mailbox.mails if booking_id in m.body and m.message["Subject"].startswith(subject)]


@pytest.fixture(autouse=True)
def stripe_controls(stack):
    yield stack.sandbox.stripe
    stack.sandbox.stripe.reset_controls()


# --- a promotion code ---------------------------------------------------------------------------------

@pytest.mark.abuse
def test_a_20_percent_off_payment_confirms_and_a_timely_cancellation_refunds_exactly_what_was_paid(stack, frontend, mailbox):
    view = booked_to_checkout(frontend, stack, "discounted", hours=72)
    session = pay(frontend, view["checkout_url"], promotion_code="SAVE20")
    assert (session["amount_subtotal"], session["total_details"]["amount_discount"], session["amount_total"]) == (10000, 2000, 8000)
    confirmed = reached(frontend, view["id"], "BOOKING_CONFIRMED", stack)
    (payment,) = confirmed["payments"]
    assert (payment["amount_subtotal"], payment["amount_discount"], payment["amount_tax"], payment["amount_total"]) == (
        10000, 2000, 0, 8000)
    assert confirmed["amount_paid"] == 8000
    cancel(frontend, view["id"])  # 72 hours ahead: a full refund under the policy, of what was paid
    done = reached(frontend, view["id"], "REFUND_COMPLETED", stack)
    assert done["amount_refunded"] == 8000
    assert refunded_at_stripe(stack, view["id"]) == 8000


def test_a_half_refund_under_the_policy_is_half_of_what_was_paid_after_the_discount(stack, frontend):
    view = booked_to_checkout(frontend, stack, "discounted", hours=30)
    pay(frontend, view["checkout_url"], promotion_code="SAVE20")
    reached(frontend, view["id"], "BOOKING_CONFIRMED", stack)
    cancel(frontend, view["id"])  # 30 hours ahead: half back
    done = reached(frontend, view["id"], "REFUND_COMPLETED", stack)
    assert done["amount_refunded"] == 4000 and refunded_at_stripe(stack, view["id"]) == 4000


@pytest.mark.abuse
def test_a_code_on_a_type_without_promotion_codes_is_refused_by_checkout_and_charges_the_price(stack, frontend):
    view = booked_to_checkout(frontend, stack, "taxed")
    refused = frontend.http.post(view["checkout_url"] + "/pay", json={"outcome": "paid", "promotion_code": "SAVE20"})
    assert refused.status_code == 400
    assert frontend.status(view["id"])["state"] == "PAYMENT_PROCESSING"


# --- tax, invoice and receipt -------------------------------------------------------------------------

def test_a_taxed_payment_confirms_links_its_receipt_and_invoice_and_a_host_cancellation_refunds_the_tax_too(
        stack, frontend, mailbox):
    stack.sandbox.stripe.set_tax_rate(TAX_RATE_PERCENT * 100)
    view = booked_to_checkout(frontend, stack, "taxed", hours=2)  # inside any policy's window: the host refunds all
    session = pay(frontend, view["checkout_url"])
    assert (session["amount_subtotal"], session["total_details"]["amount_tax"], session["amount_total"]) == (10000, 1900, 11900)
    confirmed = reached(frontend, view["id"], "BOOKING_CONFIRMED", stack)
    (payment,) = confirmed["payments"]
    assert (payment["amount_subtotal"], payment["amount_tax"], payment["amount_total"]) == (10000, 1900, 11900)
    # The client's documents, from Stripe's API: linked from the status and from the confirmation e-mail.
    (intent,) = [i for i in stack.sandbox.objects("payment_intent") if i["id"] == session["payment_intent"]]
    (charge,) = [c for c in stack.sandbox.objects("charge") if c["id"] == intent["latest_charge"]]
    (invoice,) = [i for i in stack.sandbox.objects("invoice") if i["id"] == session["invoice"]]
    assert payment["receipt_url"] == charge["receipt_url"] and payment["invoice_url"] == invoice["hosted_invoice_url"]
    assert requests.get(payment["invoice_url"], timeout=10).status_code == 200
    mail = wait_until(lambda: mails_of(mailbox, view["id"], "Booked:"), message="the confirmation e-mail")[0]
    assert f"Receipt: {charge['receipt_url']}" in mail.body and f"Invoice: {invoice['hosted_invoice_url']}" in mail.body
    # The host cancels in Calendly: the whole total comes back, tax included.
    answer = requests.post(f"{stack.sandbox.base}/calendly/_sandbox/cancel", timeout=10,
                           json={"invitee_uri": view["slot"]["invitee_uri"], "canceler_type": "host", "reason": "ill"})
    assert answer.status_code == 200, answer.text
    done = reached(frontend, view["id"], "REFUND_COMPLETED", stack)
    assert done["amount_refunded"] == 11900 and refunded_at_stripe(stack, view["id"]) == 11900


# --- a price per currency ----------------------------------------------------------------------------

@pytest.mark.parametrize("currency, price", [(None, (12000, "eur")), ("usd", (13000, "usd")), ("gbp", (10500, "gbp")),
                                             ("jpy", (20000, "jpy"))])
def test_each_offered_currency_books_and_charges_its_own_price(stack, frontend, mailbox, currency, price):
    view = booked_to_checkout(frontend, stack, "priced", **({"currency": currency} if currency else {}))
    assert (view["amount"], view["currency"]) == price
    session = pay(frontend, view["checkout_url"])
    assert (session["amount_total"], session["currency"]) == price
    confirmed = reached(frontend, view["id"], "BOOKING_CONFIRMED", stack)
    assert (confirmed["amount_paid"], confirmed["currency"]) == (price[0], price[1])
    assert confirmed["payments"][0]["receipt_url"]


def test_a_100_percent_code_confirms_with_nothing_charged_and_a_cancellation_refunds_nothing(stack, frontend):
    view = booked_to_checkout(frontend, stack, "discounted", hours=72)
    session = pay(frontend, view["checkout_url"], promotion_code="FREE")
    assert (session["payment_status"], session["amount_total"], session["payment_intent"]) == ("no_payment_required", 0, None)
    confirmed = reached(frontend, view["id"], "BOOKING_CONFIRMED", stack)
    (payment,) = confirmed["payments"]
    assert (payment["amount_subtotal"], payment["amount_discount"], payment["amount_total"]) == (10000, 10000, 0)
    assert (confirmed["amount_paid"], payment["receipt_url"]) == (0, None)  # no charge: no receipt
    cancel(frontend, view["id"])
    cancelled = reached(frontend, view["id"], "BOOKING_CANCELLED", stack)
    assert cancelled["amount_refunded"] == 0 and refunded_at_stripe(stack, view["id"]) == 0
    assert not [r for r in stack.sandbox.api_requests("stripe") if r["path"] == "/v1/refunds" and view["id"] in str(r["params"])]
