"""`bookingflow dev`'s pages, through HTTP on a real `bookingflow dev`: the home page, the reference
client, the page Checkout returns to, a booking's control page driving the sandbox, the outbox, the
sandbox's own pages, and the access log."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest
import requests

from support.devserver import running_dev

CLIENT = Path(__file__).resolve().parents[1] / "ops" / "devsite" / "client"


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    with running_dev(tmp_path_factory.mktemp("dev")) as running:
        yield running


def get(dev, path: str, status: int = 200) -> str:
    response = requests.get(dev.base + path, timeout=10)
    assert response.status_code == status, f"GET {path}: {response.status_code} {response.text[:300]}"
    return response.text


def said(response: requests.Response) -> str:
    """What the control page said after a button was pressed."""
    found = re.search(r'role=status>(.*?)</p>', response.text)
    return unescape(found.group(1)) if found else ""


def scheduled_and_open(dev, **booking) -> dict:
    """A booking scheduled through its control page, its checkout open."""
    created = dev.create_booking(**booking)
    assert "answered 201" in said(dev.control(created["id"], "schedule"))
    return dev.wait_for_state(created["id"], "PAYMENT_PROCESSING")


# --- the home page ------------------------------------------------------------------------------


def test_the_home_page_links_the_client_the_bookings_the_outbox_and_says_where_things_are(dev):
    booking = dev.create_booking()

    home = get(dev, "/")

    for link in ('href="/client/"', 'href="/dev/bookings"', 'href="/dev/outbox"', 'href="/openapi.json"',
                 f'href="/dev/bookings/{booking["id"]}"', f'href="/bookings/{booking["id"]}"'):
        assert link in home
    assert str(dev.database) in home
    assert str(dev.database.with_name("bookingflow.sandbox.json")) in home
    assert "/console/" in home  # where the console is, or would be
    assert "/_sandbox/stripe/checkout/&lt;session&gt;/expire" in home  # the simulator, for curl


def test_dev_serves_the_operator_console_under_console_and_signing_in_stays_there(dev):
    home = get(dev, "/")
    assert 'href="/console/"' in home
    session = requests.Session()
    answer = session.get(dev.base + "/console/bookings?state=IDLE", timeout=10, allow_redirects=False)
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/console/sign-in")
    form = session.get(dev.base + answer.headers["Location"], timeout=10)
    assert form.status_code == 200 and 'name="password"' in form.text
    assert "next" in form.text and "/bookings?state=IDLE" in unescape(form.text)
    # An operator made from a terminal beside `dev`, on its database, signs in and lands where they were going.
    from support.realstack import base_environment, run_cli

    run_cli({**base_environment(), "DATABASE_URL": f"sqlite:///{dev.database}"}, "console", "add-user", "ada",
            "--password-stdin", stdin="a long enough passphrase\n")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    nxt = unescape(re.search(r'name="next" value="([^"]*)"', form.text).group(1))
    signed_in = session.post(dev.base + "/console/sign-in", timeout=10, allow_redirects=False, data={
        "csrf_token": token, "next": nxt, "name": "ada", "password": "a long enough passphrase"})
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/console/bookings?state=IDLE"



def test_the_bookings_page_lists_each_booking_with_its_state(dev):
    booking = dev.create_booking()

    listed = get(dev, "/dev/bookings")

    assert f'href="/dev/bookings/{booking["id"]}"' in listed
    assert "CALENDLY_SCHEDULING" in listed


# --- the reference client -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/client/", "/client/index.html", "/client/schedule.html", "/client/confirm.html",
                                  "/client/pay.html", "/client/booking.html", "/client/client.js", "/client/style.css"])
def test_each_page_of_the_reference_client_is_served(dev, path):
    assert get(dev, path)


def test_the_reference_client_calls_only_the_public_api():
    sources = {path.name: path.read_text() for path in CLIENT.iterdir()}
    script = sources["client.js"]
    called = re.findall(r'call\("(GET|POST)", `?"?([^`",]+)', script)
    assert {path.split("${")[0] for _, path in called} == {"/v1/session-types", "/v1/bookings", "/v1/bookings/"}
    for name, text in sources.items():
        assert "fetch(" not in text or name == "client.js", f"{name} calls the server itself"
        assert "/dev/" not in text and "/_sandbox" not in text, f"{name} reaches past the public API"


def test_an_unknown_file_of_the_client_is_not_found(dev):
    get(dev, "/client/nothing.html", status=404)
    get(dev, "/client/../dev.py", status=404)


# --- Checkout's return --------------------------------------------------------------------------


def test_checkout_returns_to_the_booking_page_after_paying(dev):
    view = scheduled_and_open(dev)

    paid = requests.post(view["checkout_url"] + "/pay", data={"via": "page", "outcome": "paid"}, timeout=10)

    assert paid.status_code == 200
    assert paid.url == f"{dev.base}/bookings/{view['id']}?checkout=success"
    assert "Your booking" in paid.text and "/client/client.js" in paid.text
    dev.wait_for_state(view["id"], "BOOKING_CONFIRMED")


def test_checkout_cancel_link_returns_to_the_booking_page(dev):
    view = scheduled_and_open(dev)
    page = get(dev, view["checkout_url"].removeprefix(dev.base))
    cancel = unescape(re.search(r'<a href="([^"]+)">Cancel</a>', page).group(1))

    assert cancel == f"{dev.base}/bookings/{view['id']}?checkout=cancel"
    assert "Your booking" in get(dev, cancel.removeprefix(dev.base))


def test_a_declined_card_keeps_checkout_open_and_says_so(dev):
    view = scheduled_and_open(dev)

    declined = requests.post(view["checkout_url"] + "/pay", data={"via": "page", "outcome": "failed"}, timeout=10)

    assert "Your card was declined" in declined.text and "sends no event" in declined.text
    assert "Let it expire now" in declined.text
    assert dev.booking(view["id"])["state"] == "PAYMENT_PROCESSING"


def test_letting_checkout_expire_from_its_page_needs_no_key_and_fails_the_payment(dev):
    view = scheduled_and_open(dev)

    expired = requests.post(view["checkout_url"] + "/expire", data={"via": "page"}, timeout=10)

    assert expired.status_code == 200 and "This checkout session is expired" in expired.text
    failed = dev.wait_for_state(view["id"], "PAYMENT_FAILED")
    assert failed["checkout_url"] is None


# --- the control page ---------------------------------------------------------------------------


def test_the_control_page_shows_the_booking_and_its_buttons(dev):
    booking = dev.create_booking()

    page = get(dev, f"/dev/bookings/{booking['id']}")

    assert 'id="state">CALENDLY_SCHEDULING' in page
    assert f'href="/bookings/{booking["id"]}"' in page
    for action in ("schedule", "reschedule", "cancel_invitee", "cancel_host", "pay", "decline", "pay_later",
                   "settle", "settle_failed", "expire"):
        assert f'id="{action}"' in page
    # Nothing to pay or cancel in Calendly yet: those buttons wait.
    assert re.search(r'id="pay" disabled', page) and re.search(r'id="cancel_host" disabled', page)


def test_a_button_without_its_object_says_so_and_changes_nothing(dev):
    booking = dev.create_booking()

    answer = dev.control(booking["id"], "pay")

    assert "nothing to do it on yet" in said(answer) and 'class="refused"' in answer.text
    assert dev.booking(booking["id"])["state"] == "CALENDLY_SCHEDULING"


def test_an_unknown_booking_or_button_is_refused(dev):
    booking = dev.create_booking()
    get(dev, "/dev/bookings/" + "x" * 32, status=404)
    assert dev.control(booking["id"], "launch").status_code == 400


def test_decline_then_expire_then_retry_then_pay(dev):
    view = scheduled_and_open(dev)

    assert "Stripe sends no event" in said(dev.control(view["id"], "decline"))
    assert dev.booking(view["id"])["state"] == "PAYMENT_PROCESSING"  # Stripe sends nothing for a decline
    assert "answered 200" in said(dev.control(view["id"], "expire"))
    dev.wait_for_state(view["id"], "PAYMENT_FAILED")
    assert requests.post(f"{dev.base}/v1/bookings/{view['id']}/retry-payment", timeout=10).status_code == 202
    dev.wait_for_state(view["id"], "PAYMENT_PROCESSING")
    dev.control(view["id"], "pay")

    confirmed = dev.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    assert confirmed["amount_paid"] == confirmed["amount"]


def test_pay_later_then_settle_failed_then_pay_later_then_settle(dev):
    view = scheduled_and_open(dev)

    dev.control(view["id"], "pay_later")
    assert "answered 200" in said(dev.control(view["id"], "settle_failed"))
    dev.wait_for_state(view["id"], "PAYMENT_FAILED")
    requests.post(f"{dev.base}/v1/bookings/{view['id']}/retry-payment", timeout=10)
    dev.wait_for_state(view["id"], "PAYMENT_PROCESSING")
    dev.control(view["id"], "pay_later")
    dev.control(view["id"], "settle")

    dev.wait_for_state(view["id"], "BOOKING_CONFIRMED")


def test_reschedule_in_calendly_then_cancel_as_the_invitee(dev):
    view = scheduled_and_open(dev)
    dev.control(view["id"], "pay")
    before = dev.wait_for_state(view["id"], "BOOKING_CONFIRMED")

    answer = dev.control(view["id"], "reschedule", start_time="2031-01-02T10:00:00Z")
    assert "answered 201" in said(answer), said(answer)

    moved = wait_for_slot(dev, view["id"], "2031-01-02T10:00:00Z")
    assert moved["amount_refunded"] == 0 and moved["scheduled_start"] != before["scheduled_start"]
    dev.control(view["id"], "cancel_invitee")
    refunded = dev.wait_for_state(view["id"], "REFUND_COMPLETED")
    assert refunded["amount_refunded"] == refunded["amount_paid"]  # more than a day ahead: in full


def test_cancel_as_the_host_refunds_in_full(dev):
    view = scheduled_and_open(dev, session_type="deep-dive", currency="jpy")
    dev.control(view["id"], "pay")
    dev.wait_for_state(view["id"], "BOOKING_CONFIRMED")

    dev.control(view["id"], "cancel_host")

    refunded = dev.wait_for_state(view["id"], "REFUND_COMPLETED")
    # The whole total, with the 19% tax dev's sandbox adds to the deep dive: ¥22,000 + ¥4,180.
    assert (refunded["amount_refunded"], refunded["currency"]) == (26180, "jpy")
    (payment,) = refunded["payments"]
    assert (payment["amount_subtotal"], payment["amount_tax"], payment["amount_total"]) == (22000, 4180, 26180)
    assert payment["receipt_url"] and payment["invoice_url"]


def wait_for_slot(dev, booking_id: str, start: str) -> dict:
    from support.waiting import wait_until

    def moved():
        view = dev.booking(booking_id)
        return view if view["state"] == "BOOKING_CONFIRMED" and view["scheduled_start"] == start else None
    return wait_until(moved, timeout=30, interval=0.1, message=f"{booking_id} confirmed at {start}")


# --- the client's reschedule link ---------------------------------------------------------------


def test_reschedule_gives_the_sandbox_s_reschedule_page_which_moves_the_slot(dev):
    view = scheduled_and_open(dev)
    dev.control(view["id"], "pay")
    dev.wait_for_state(view["id"], "BOOKING_CONFIRMED")

    link = requests.post(f"{dev.base}/v1/bookings/{view['id']}/reschedule", json={}, timeout=10).json()["scheduling_url"]
    assert link.startswith(f"{dev.base}/_sandbox/calendly/reschedulings/")
    page = get(dev, link.removeprefix(dev.base))
    action = unescape(re.search(r'<form method="post" action="([^"]+)"', page).group(1))
    invitee = unescape(re.search(r'name="invitee_uri" value="([^"]+)"', page).group(1))
    done = requests.post(dev.base + action, data={"via": "page", "invitee_uri": invitee,
                                                  "start_time": "2031-03-04T09:00:00Z"}, timeout=10)

    assert "calendly.event_scheduled" in done.text  # as the embed tells its parent window
    wait_for_slot(dev, view["id"], "2031-03-04T09:00:00Z")


def test_the_invitee_s_cancel_link_is_the_sandbox_s_page_and_cancels(dev):
    view = scheduled_and_open(dev)
    dev.control(view["id"], "pay")
    dev.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    events = requests.get(f"{dev.base}/dev/bookings/{view['id']}", timeout=10).text
    invitee = re.search(r"invitees/([0-9a-f-]{36})", events).group(1)

    page = get(dev, f"/_sandbox/calendly/cancellations/{invitee}")
    action = unescape(re.search(r'<form method="post" action="([^"]+)"', page).group(1))
    requests.post(dev.base + action, data={"via": "page", "invitee_uri": unescape(
        re.search(r'name="invitee_uri" value="([^"]+)"', page).group(1))}, timeout=10)

    dev.wait_for_state(view["id"], "REFUND_COMPLETED")
    get(dev, f"/_sandbox/calendly/cancellations/{invitee}", status=404)


# --- the outbox ---------------------------------------------------------------------------------


def test_the_outbox_page_shows_the_e_mails_dev_would_have_sent(dev):
    view = scheduled_and_open(dev)
    dev.control(view["id"], "pay")
    dev.wait_for_state(view["id"], "BOOKING_CONFIRMED")

    from support.waiting import wait_until
    outbox = wait_until(lambda: (lambda text: text if "Booked: Intro call" in text else None)(get(dev, "/dev/outbox")),
                        timeout=20, interval=0.1, message="the confirmation in the outbox")

    assert "ada@example.com" in outbox and "not sent: SMTP_URL is unset" in outbox
    row = re.search(r'href="/dev/outbox/(\d+)">Booked: Intro call', outbox).group(1)
    email = get(dev, f"/dev/outbox/{row}")
    assert f"/bookings/{view['id']}" in email  # the e-mail links the booking's page, which dev serves
    get(dev, "/dev/outbox/999999", status=404)


# --- the log ------------------------------------------------------------------------------------


def test_the_log_has_one_plain_line_per_request_without_booking_ids(dev):
    booking = dev.create_booking()
    dev.booking(booking["id"])
    requests.get(f"{dev.base}/dev/bookings/{booking['id']}", timeout=10)

    log = dev.output()
    access = [line for line in log.splitlines() if " dev.access " in line]
    assert "\x1b[" not in log
    assert not [line for line in log.splitlines() if booking["id"] in line and " dev.access " in line]
    assert any("GET /v1/bookings/<id> 200" in line for line in access)
    assert any("GET /dev/bookings/<id> 200" in line for line in access)
    # One line per request: the web app's own access line and werkzeug's are not written as well.
    assert " intake POST /v1/bookings" not in log and '"POST /v1/bookings HTTP/1.1"' not in log


def test_bookingflow_demo_drives_one_booking_through_a_running_dev_to_confirmed(dev):
    from support.realstack import base_environment, run_cli

    out = run_cli({**base_environment(), "DATABASE_URL": f"sqlite:///{dev.database}"}, "demo", dev.base).stdout
    assert "state: BOOKING_CONFIRMED" in out
    # Money as people read it, the price offered and what was paid, never "5000 usd minor units".
    assert "session type: Intro call (sandbox) ($50.00)" in out and "minor units" not in out
    assert out.rstrip().splitlines()[-1].endswith("paid $50.00")
