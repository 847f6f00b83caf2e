"""Client e-mails through a real SMTP server on a local port: which change sends which e-mail, to whom,
with the status link, exactly once (a job run again, an SMTP server down for a while), never with a
secret in it; and without SMTP_URL, kept in the outbox and sent to no one."""

from __future__ import annotations

import datetime as dt

import pytest
import requests

from bookingflow import settings as settings_module
from support.suite import CALENDLY_KEY, CALENDLY_TOKEN, STRIPE_KEY, STRIPE_WEBHOOK_SECRET
from support.waiting import wait_until
from support.flows import confirmed_booking, hours_from_now
from support.catalogue import POLICY, make_session_type
from support.mail import Mail, Mailbox, act, drain
from models.db import utcnow
from models.tables import Booking, Outbox

PUBLIC_URL = "https://frontend.example"


@pytest.fixture
def mailbox_not_configured(app):
    """An SMTP server that is running, with SMTP_URL unset: nothing should ever reach it."""
    box = Mailbox()
    box.start()
    current = settings_module.get()
    settings_module.configure(current.replace(smtp_url=""))
    yield box
    settings_module.configure(current)
    box.stop()


def status_link(booking_id: str) -> str:
    return f"{PUBLIC_URL}/bookings/{booking_id}"


def only(mails: list[Mail], kind: str) -> Mail:
    (mail,) = [m for m in mails if m.kind == kind]
    return mail


def test_a_confirmed_booking_sends_its_client_one_confirmation_carrying_the_status_link(mailbox, frontend, broker):
    view = confirmed_booking(frontend, "short-call")
    mailbox.wait_for(1)
    drain(broker)
    (mail,) = mailbox.mails
    address = Booking.get_by_id(view["id"]).email
    assert mail.kind == "confirmation"
    assert mail.recipients == (address,) and mail.message["To"] == address
    assert status_link(view["id"]) in mail.body
    assert "$50.00" in mail.body
    assert mailbox.greetings >= 1 and mailbox.logins == 1  # it talked to us, with the credentials of SMTP_URL
    assert Outbox.get(Outbox.booking == view["id"]).sent_at is not None


@pytest.mark.parametrize("failure, reason", [("async", "the payment failed"), ("expiry", "the checkout expired")])
def test_a_failed_payment_sends_one_payment_failure_email_with_the_link_to_retry(mailbox, frontend, sandbox, broker, failure, reason):
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    if failure == "async":
        frontend.pay(view["checkout_url"], outcome="delayed")
        frontend.settle(view["checkout_url"], "failed")
    else:
        session_id = view["checkout_url"].rsplit("/", 1)[1]
        response = requests.post(f"{sandbox.base}/stripe/v1/checkout/sessions/{session_id}/expire", timeout=10,
                                 headers={"Authorization": f"Bearer {sandbox.config.stripe_secret_key}"})
        assert response.status_code == 200
    frontend.wait_for_state(view["id"], "PAYMENT_FAILED")
    mailbox.wait_for(1)
    drain(broker)
    (mail,) = mailbox.mails
    assert mail.kind == "payment_failed"
    assert mail.recipients == (Booking.get_by_id(view["id"]).email,)
    assert status_link(view["id"]) in mail.body and reason in mail.body


def test_a_reschedule_in_calendly_sends_one_email_naming_the_new_time_and_no_cancellation(mailbox, frontend, sandbox, broker):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(50))
    invitee = Booking.get_by_id(view["id"]).calendly_invitee_uri
    new_start = hours_from_now(80)
    moved = requests.post(f"{sandbox.base}/calendly/_sandbox/reschedule", timeout=10,
                          json={"invitee_uri": invitee, "start_time": new_start, "order": "canceled_first"}).json()
    wait_until(lambda: Booking.get_by_id(view["id"]).calendly_invitee_uri == moved["invitee_uri"]
               and frontend.status(view["id"])["state"] == "BOOKING_CONFIRMED", message="the new slot confirmed")
    mails = mailbox.wait_for(2)
    sandbox.wait_deliveries_idle()
    drain(broker)
    mails = mailbox.mails
    assert sorted(m.kind for m in mails) == ["confirmation", "rescheduled"]
    rescheduled = only(mails, "rescheduled")
    when = dt.datetime.fromisoformat(new_start.replace("Z", "+00:00")).strftime("%A %d %B %Y, %H:%M UTC")
    assert when in rescheduled.body
    assert status_link(view["id"]) in rescheduled.body


def test_a_cancellation_and_its_completed_refund_each_send_one_email(mailbox, frontend, broker):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(30))
    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    mailbox.wait_for(3)
    drain(broker)
    mails = mailbox.mails
    # Each e-mail is its own job: the three may reach the mail server in any order.
    assert sorted(m.kind for m in mails) == ["cancelled", "confirmation", "refunded"]
    cancelled, refunded = only(mails, "cancelled"), only(mails, "refunded")
    assert "plans changed" in cancelled.body and status_link(view["id"]) in cancelled.body
    assert "$25.00" in refunded.body and status_link(view["id"]) in refunded.body  # half, 30 h before
    address = Booking.get_by_id(view["id"]).email
    assert all(m.recipients == (address,) for m in mails)


@pytest.mark.parametrize(("currency", "price", "paid", "refunded"), [
    ("jpy", 5001, "¥5,001", "¥2,500"),           # zero-decimal: 5001 is ¥5,001, and half rounds down
    ("krw", 120000, "₩120,000", "₩60,000"),
    ("bhd", 5000, "5.000 BHD", "2.500 BHD"),     # three-decimal: thousandths
    ("usd", 123450, "$1,234.50", "$617.25"),
    ("chf", 9990, "99.90 CHF", "49.95 CHF"),     # no symbol of its own: the code after the number
], ids=["jpy", "krw", "bhd", "usd", "chf"])
def test_emails_write_each_currencys_amounts_in_its_own_form_and_the_refund_says_what_came_back(
        mailbox, frontend, sandbox, broker, currency, price, paid, refunded):
    make_session_type(sandbox.base, f"call-{currency}", price=price, currency=currency, refund_policy=POLICY)
    view = confirmed_booking(frontend, f"call-{currency}", start_time=hours_from_now(30))
    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    mailbox.wait_for(3)
    drain(broker)
    mails = mailbox.mails
    confirmation, refund = only(mails, "confirmation"), only(mails, "refunded")
    assert f"is confirmed and paid ({paid})." in confirmation.body
    assert f"we have refunded {refunded} of the {paid} you paid for your Call {currency.title()}." in refund.body
    # What the e-mail says is what Stripe sent back.
    intent = Booking.get_by_id(view["id"]).payment_intent_id
    refunds = [r for r in sandbox.objects("refund") if r["payment_intent"] == intent]
    assert [(r["amount"], r["currency"]) for r in refunds] == [(price // 2, currency)]


def test_an_email_is_sent_once_even_when_its_job_runs_again(mailbox, frontend, broker):
    from jobs import outbox

    view = confirmed_booking(frontend, "short-call")
    mailbox.wait_for(1)
    row = wait_until(lambda: Outbox.get_or_none(Outbox.booking == view["id"], Outbox.sent_at.is_null(False)),
                     message="the e-mail marked sent")
    assert outbox.deliver(row.id) is False
    assert outbox.deliver(row.id) is False
    outbox.send_email.send(row.id)
    outbox.send_email.send(row.id)
    drain(broker)
    assert len(mailbox.mails) == 1
    assert Outbox.get_by_id(row.id).attempts == 1


def test_an_email_that_failed_while_the_smtp_server_was_down_is_sent_exactly_once_after_it_is_back(mailbox, frontend, broker):
    from jobs import outbox
    from scheduler import sweeps

    mailbox.stop()
    view = confirmed_booking(frontend, "short-call")
    row = wait_until(lambda: Outbox.get_or_none(Outbox.booking == view["id"], Outbox.last_error.is_null(False)),
                     message="the send to fail")
    assert row.sent_at is None
    mailbox.start()  # a new server on the same port
    assert sweeps.resend_unsent_emails(utcnow() + dt.timedelta(minutes=5)) == 1
    outbox.send_email.send(row.id)  # and, at the same time, another sender of the same row
    mailbox.wait_for(1)
    drain(broker)  # the failed job's own retry included
    (mail,) = mailbox.mails
    assert mail.kind == "confirmation" and status_link(view["id"]) in mail.body
    assert Outbox.get_by_id(row.id).sent_at is not None


def test_without_smtp_url_an_email_stays_in_the_outbox_marked_sent_and_no_server_is_contacted(
        mailbox_not_configured, frontend, broker):
    view = confirmed_booking(frontend, "short-call")
    row = wait_until(lambda: Outbox.get_or_none(Outbox.booking == view["id"], Outbox.sent_at.is_null(False)),
                     message="the e-mail marked sent")
    drain(broker)
    assert (row.kind, row.last_error) == ("confirmation", None)
    assert row.recipient == Booking.get_by_id(view["id"]).email
    assert status_link(view["id"]) in row.body
    assert mailbox_not_configured.mails == []
    assert mailbox_not_configured.greetings == 0


def test_no_email_carries_a_secret(mailbox, frontend, broker):
    view, _ = frontend.book_and_wait_for_checkout("short-call", start_time=hours_from_now(72))
    frontend.pay(view["checkout_url"], outcome="delayed")
    frontend.settle(view["checkout_url"], "failed")
    frontend.wait_for_state(view["id"], "PAYMENT_FAILED")
    assert act(frontend, view["id"], "retry-payment").status_code == 202
    again = frontend.wait_for_state(view["id"], "PAYMENT_PROCESSING")
    frontend.pay(again["checkout_url"])
    frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    mailbox.wait_for(4)
    drain(broker)
    mails = mailbox.mails
    assert sorted(m.kind for m in mails) == ["cancelled", "confirmation", "payment_failed", "refunded"]
    credentials = [STRIPE_KEY, STRIPE_WEBHOOK_SECRET, CALENDLY_TOKEN, CALENDLY_KEY, mailbox.password]
    for mail in mails:
        seen = mail.raw.decode("utf-8", "replace") + "\n" + mail.body
        for credential in credentials:
            assert credential not in seen, f"a secret in the {mail.kind} e-mail"
    for row in Outbox.select():
        assert not any(credential in row.body or credential in row.subject for credential in credentials)
