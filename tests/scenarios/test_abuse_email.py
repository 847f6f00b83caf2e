"""Business-logic abuse, e-mail (issue 12, item 7): POST /v1/bookings takes any address and any name, and
cancelling takes any reason. Nothing of that may turn bookingflow into a relay of a stranger's text,
from MAIL_FROM, to a stranger's inbox.

- E-mails go only to the invitee Calendly reported for the booking, never to the address typed into our
  API; a booking Calendly never confirmed an invitee for sends nothing.
- One recipient per e-mail: what Calendly reports is read as one plain address, else the e-mail is
  kept in the outbox, withheld with the reason; the API refuses a typed list with a clear 422.
- Client-written text in an e-mail is short and plain, without links; the greeting uses the name
  Calendly reported.
- At most MAIL_PER_ADDRESS_PER_HOUR e-mails to one address in an hour; the rest are kept, withheld.

Driven through the client API over HTTP, the Calendly and Stripe sandboxes (signed deliveries), the
workers, and a real SMTP server (the `mailbox` fixture).
"""

from __future__ import annotations

import logging
import re

import pytest
from cryptography.fernet import Fernet

from bookingflow import settings as settings_module
from bookingflow.settings import SettingsError
from support.waiting import wait_until
from support.flows import hours_from_now
from models.tables import Booking, Outbox
from support.cli import suite_cli
from support.mail import act, drain

pytestmark = pytest.mark.abuse

TYPED = "victim@example.org"  # what the client typed into POST /v1/bookings
INVITEE = "invitee@example.com"  # what the invitee entered in Calendly


@pytest.fixture
def mail_settings(app):
    """Change the in-process service's settings for one test; they are put back after it."""
    original = settings_module.get()

    def change(**changes) -> None:
        settings_module.configure(settings_module.get().replace(**changes))

    yield change
    settings_module.configure(original)


def quiet(sandbox, broker) -> None:
    """Every delivery sent and every job (e-mails included) run."""
    sandbox.wait_deliveries_idle()
    drain(broker)
    sandbox.wait_deliveries_idle()
    drain(broker)


def confirmed_through_calendly(frontend, *, typed: str = TYPED, invitee: str = INVITEE, invitee_name: str = "Grace Hopper",
                               typed_name: str = "Ada Lovelace", hours: float = 72) -> dict:
    """A booking made with `typed` at our API, scheduled in Calendly by `invitee`, paid and confirmed."""
    booking = frontend.create_booking("short-call", email=typed, name=typed_name)
    slot = frontend.schedule_in_calendly(booking["scheduling_url"], email=invitee, name=invitee_name,
                                         start_time=hours_from_now(hours))
    assert frontend.report_scheduled(booking["id"], slot).status_code == 202
    view = frontend.wait_for_state(booking["id"], "PAYMENT_PROCESSING")
    frontend.pay(view["checkout_url"])
    return frontend.wait_for_state(booking["id"], "BOOKING_CONFIRMED")


def outbox_of(booking_id: str) -> list[Outbox]:
    return list(Outbox.select().where(Outbox.booking == booking_id).order_by(Outbox.id))


# --- only Calendly's invitee, and only once there is one ------------------------------------------

def test_a_booking_cancelled_before_calendly_reported_an_invitee_sends_nothing_to_the_typed_address(
        mailbox, frontend, sandbox, broker):
    booking = frontend.create_booking("short-call", email=TYPED, name="Read this http://evil.example")
    assert act(frontend, booking["id"], "cancel", {"reason": "Claim your prize at https://evil.example"}).status_code == 202
    frontend.wait_for_state(booking["id"], "IDLE")
    quiet(sandbox, broker)

    assert mailbox.mails == [] and mailbox.greetings == 0
    assert outbox_of(booking["id"]) == []


def test_an_invitee_only_the_client_reported_is_no_invitee_a_cancellation_e_mails_no_one(mailbox, frontend, sandbox, broker):
    # The client's report of the URIs is not Calendly's word: Calendly's own delivery is held back.
    sandbox.hold_deliveries("calendly")
    booking = frontend.create_booking("short-call", email=TYPED)
    slot = frontend.schedule_in_calendly(booking["scheduling_url"], email=INVITEE)
    assert frontend.report_scheduled(booking["id"], slot).status_code == 202
    frontend.wait_for_state(booking["id"], "CALENDLY_SCHEDULED")
    assert act(frontend, booking["id"], "cancel", {"reason": "spam text"}).status_code == 202
    frontend.wait_for_state(booking["id"], "IDLE")
    drain(broker)

    assert mailbox.mails == []
    assert outbox_of(booking["id"]) == []
    assert Booking.get_by_id(booking["id"]).invitee_email is None


def test_emails_go_to_the_invitee_calendly_reported_and_greet_the_name_it_reported(mailbox, frontend, sandbox, broker):
    view = confirmed_through_calendly(frontend, typed_name="Ada Lovelace")
    (mail,) = mailbox.wait_for(1)
    quiet(sandbox, broker)

    assert [m.recipients for m in mailbox.mails] == [(INVITEE,)]
    assert mail.message["To"] == INVITEE
    assert "Hello Grace Hopper," in mail.body and "Ada" not in mail.body
    booking = Booking.get_by_id(view["id"])
    assert (booking.invitee_email, booking.invitee_name, booking.email) == (INVITEE, "Grace Hopper", TYPED)


def test_after_a_cancellation_in_calendly_its_email_goes_to_the_invitee_not_the_typed_address(mailbox, frontend, sandbox, broker):
    import requests

    view = confirmed_through_calendly(frontend)
    invitee_uri = Booking.get_by_id(view["id"]).calendly_invitee_uri
    response = requests.post(f"{sandbox.base}/calendly/_sandbox/cancel", timeout=10,
                             json={"invitee_uri": invitee_uri, "canceler_type": "invitee", "reason": "sick"})
    assert response.status_code == 200
    frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    mailbox.wait_for(3)
    quiet(sandbox, broker)

    assert sorted(m.kind for m in mailbox.mails) == ["cancelled", "confirmation", "refunded"]
    assert {m.recipients for m in mailbox.mails} == {(INVITEE,)}


# --- one recipient ----------------------------------------------------------------------------------

@pytest.mark.parametrize("reported", [
    "someone,victim@example.org",
    "a@example.com;victim@example.org",
    "Friendly Name <victim@example.org>",
    '"quoted,list"@example.org',
    "victim@example.org\r\nBcc: many@example.net",
], ids=["comma-list", "semicolon-list", "display-name", "quoted", "header-injection"])
def test_an_invitee_address_that_is_not_one_plain_address_gets_no_email_and_the_outbox_says_why(
        mailbox, frontend, sandbox, broker, reported):
    view = confirmed_through_calendly(frontend, invitee=reported)
    (row,) = wait_until(lambda: outbox_of(view["id"]) or None, message="the confirmation in the outbox")
    quiet(sandbox, broker)

    row = Outbox.get_by_id(row.id)
    assert row.kind == "confirmation" and row.sent_at is None and row.withheld_at is not None
    assert row.withheld_reason.startswith("recipient refused: ")
    assert "victim" not in row.withheld_reason
    assert mailbox.mails == [] and mailbox.greetings == 0


def test_an_email_left_in_the_outbox_by_an_older_release_to_an_address_list_is_withheld_when_its_job_runs(
        mailbox, frontend, sandbox, broker):
    from jobs import outbox

    view = confirmed_through_calendly(frontend)
    mailbox.wait_for(1)
    quiet(sandbox, broker)
    # As the previous release wrote it: to the address typed at the API, which could be a list.
    row = Outbox.create(booking=view["id"], key="older-release-mail", kind="cancelled", recipient="x,victim@example.org",
                        subject="Cancelled: Short Call", body="Hello,\n\nyour Short Call is cancelled.\n")
    outbox.send_email.send(row.id)
    drain(broker)

    row = Outbox.get_by_id(row.id)
    assert row.sent_at is None and row.withheld_reason.startswith("recipient refused: ")
    assert len(mailbox.mails) == 1  # the confirmation only


@pytest.mark.parametrize("typed", [
    "a@x.com,b@y.com",
    "someone,victim@example.org",
    "a;victim@example.org",
    "Victim <victim@example.org>",
    '"a,b"@example.org',
    "victim(comment)@example.org",
])
def test_an_address_list_or_display_name_typed_at_the_api_is_a_422_that_says_so(client, session_type, typed):
    response = client.post("/v1/bookings", json={"session_type": "coaching-hour", "email": typed, "name": "Ada"})

    assert response.status_code == 422
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == ("invalid_field", "email")
    assert "one address" in error["message"]
    assert Booking.select().count() == 0


# --- the text a client wrote --------------------------------------------------------------------------

def test_client_written_text_reaches_an_email_short_plain_and_without_links(mailbox, frontend, sandbox, broker):
    long_name = "Grace\r\nHopper\u202e visit https://evil.example/login now " + "x" * 300
    view = confirmed_through_calendly(frontend, invitee_name=long_name, typed_name="Ada http://typed.example")
    reason = ("Your refund is ready:\r\nBcc: other@example.net\thttps://evil.example/claim "
              "or HTTP\uff1a//evil.example or www.evil.example " + "y" * 300)
    assert act(frontend, view["id"], "cancel", {"reason": reason}).status_code == 202
    frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    mailbox.wait_for(3)
    quiet(sandbox, broker)

    for mail in mailbox.mails:
        body = mail.body.replace("\r\n", "\n")  # SMTP's line ends
        # The only links: our status page, and the receipt Stripe (here its sandbox) keeps for the charge.
        assert "evil.example" not in body and "typed.example" not in body and "://" not in body.replace(
            "https://frontend.example", "").replace(f"{sandbox.base}/stripe/receipts/", "")
        assert "\u202e" not in body and "\r" not in body
        (greeting,) = [line for line in body.splitlines() if line.startswith("Hello ")]
        name = greeting[len("Hello "):-1]
        assert greeting.endswith(",") and name.startswith("Grace Hopper") and len(name) <= 100
    cancelled = next(m for m in mailbox.mails if m.kind == "cancelled")
    (quoted,) = re.findall(r"is cancelled \((.*)\)\.", cancelled.body)
    assert quoted.startswith("Your refund is ready: Bcc: other@example.net [link removed]")
    assert len(quoted) <= 200 and "\n" not in quoted
    assert not any(line.lower().startswith("bcc:") for line in cancelled.body.splitlines())


# --- the hourly cap per address -------------------------------------------------------------------------

@pytest.mark.parametrize("keys", [(), (Fernet.generate_key().decode(),)], ids=["no key", "encrypted at rest"])
def test_an_address_gets_at_most_its_hourly_share_and_the_rest_is_kept_withheld_and_logged_without_it(
        mailbox, mail_settings, frontend, sandbox, broker, caplog, keys):
    mail_settings(mail_per_address_per_hour=2, data_encryption_keys=keys)
    caplog.set_level(logging.INFO)
    # Three bookings by one invitee (however the address is capitalised), each confirmed: three e-mails.
    views = [confirmed_through_calendly(frontend, invitee=address, typed=f"typed-{n}@example.org")
             for n, address in enumerate(["cap@example.com", "CAP@Example.com ", "cap@example.com"])]
    rows = wait_until(lambda: (lambda found: found if len(found) == 3 else None)(
        [row for view in views for row in outbox_of(view["id"])]), message="three confirmations in the outbox")
    mailbox.wait_for(2)
    quiet(sandbox, broker)

    assert len(mailbox.mails) == 2
    rows = [Outbox.get_by_id(row.id) for row in rows]
    sent, withheld = [r for r in rows if r.sent_at], [r for r in rows if r.withheld_at]
    assert len(sent) == 2 and len(withheld) == 1
    (held,) = withheld
    assert held.booking_id == views[2]["id"] and held.sent_at is None
    assert "MAIL_PER_ADDRESS_PER_HOUR" in held.withheld_reason and "cap@" not in held.withheld_reason.lower()
    # bookingflow's own records (the test's SMTP server logs what it receives, as any mail server would)
    logged = [record.getMessage() for record in caplog.records if not record.name.startswith("mail.log")]
    assert any("withheld" in line and views[2]["id"] in line for line in logged)
    assert not any("cap@example.com" in line.lower() for line in logged)
    # Operators see it, with the reason, where they look at a booking.
    shown = suite_cli("bookings", "show", views[2]["id"], keys=keys).stdout
    assert "confirmation: WITHHELD, never sent: over MAIL_PER_ADDRESS_PER_HOUR" in shown
    assert "cap@example.com" not in shown.lower() and "invitee in Calendly c***@example.com" in shown


def test_withheld_emails_are_never_sent_by_the_outbox_sweep(mailbox, mail_settings, frontend, sandbox, broker):
    import datetime as dt

    from models.db import utcnow
    from scheduler import sweeps

    mail_settings(mail_per_address_per_hour=1)
    view = confirmed_through_calendly(frontend, hours=72)
    assert act(frontend, view["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    mailbox.wait_for(1)
    quiet(sandbox, broker)

    assert [row.kind for row in outbox_of(view["id"]) if row.withheld_at] == ["cancelled", "refunded"]
    assert sweeps.resend_unsent_emails(utcnow() + dt.timedelta(hours=2)) == 0
    drain(broker)
    assert [m.kind for m in mailbox.mails] == ["confirmation"]


def test_the_hourly_cap_is_ten_by_default_and_read_from_mail_per_address_per_hour():
    assert settings_module.load({}).mail_per_address_per_hour == 10
    assert settings_module.load({"MAIL_PER_ADDRESS_PER_HOUR": " 25 "}).mail_per_address_per_hour == 25


@pytest.mark.parametrize("value", ["ten", "0", "-3", "2.5", "100001"])
def test_a_malformed_hourly_cap_stops_with_one_line_naming_it(value):
    with pytest.raises(SettingsError) as error:
        settings_module.load({"MAIL_PER_ADDRESS_PER_HOUR": value})

    assert "MAIL_PER_ADDRESS_PER_HOUR" in str(error.value) and "\n" not in str(error.value)
