"""The console's pages over HTTP: what an operator finds on each, and the headers every page carries."""

from __future__ import annotations

import datetime as dt
import re

from models.db import utcnow
from models.states import State
from models.tables import AuditEntry, Dispute, Outbox, Payment, ProviderEvent, Refund, Transition
from support.catalogue import make_session_type
from support.records import booking_in


def booking_ids(html: str) -> set[str]:
    return set(re.findall(r'href="/bookings/([A-Za-z0-9_-]+)"', html))


def test_the_bookings_list_filters_by_state_flag_and_stuck_and_pages_by_fifty(operator, session_type):
    now = utcnow()
    flagged = booking_in(session_type, State.ERROR_RECOVERY, flagged_at=now, flag_reason="gave up after 3 recoveries",
                         state_changed_at=now, created_at=now)
    overdue = booking_in(session_type, State.PAYMENT_PROCESSING, state_changed_at=now, created_at=now,
                         next_check_at=now - dt.timedelta(hours=1))
    timed_out = booking_in(session_type, State.PAYMENT_PENDING, created_at=now)  # since 2024: far past 5 minutes
    resting = booking_in(session_type, State.BOOKING_CONFIRMED, created_at=now, next_check_at=now + dt.timedelta(days=1))
    assert booking_ids(operator.page("/bookings?state=ERROR_RECOVERY")) == {flagged.id}
    assert booking_ids(operator.page("/bookings?flagged=1")) == {flagged.id}
    assert booking_ids(operator.page("/bookings?stuck=1")) == {overdue.id, timed_out.id}
    assert resting.id in booking_ids(operator.page("/bookings"))
    for _ in range(50):
        booking_in(session_type, State.IDLE)
    first, second = operator.page("/bookings"), operator.page("/bookings?page=2")
    assert len(booking_ids(first)) == 50 and "older →" in first
    assert len(booking_ids(second)) == 4 and not booking_ids(first) & booking_ids(second)


def test_the_bookings_list_finds_a_clients_bookings_by_e_mail(operator, session_type):
    ada = booking_in(session_type, email="Ada@Example.com")
    booking_in(session_type, email="grace@example.com")
    assert booking_ids(operator.page("/bookings?email=ada%40example.com")) == {ada.id}


def test_a_bookings_page_shows_its_timeline_money_e_mails_deliveries_and_audit(operator, session_type):
    booking = booking_in(session_type, State.REFUND_PENDING, amount_paid=12000, amount_refunded=0)
    Transition.create(booking=booking.id, from_state="BOOKING_CONFIRMED", state="BOOKING_CANCELLED",
                      trigger="cancelBooking", cause="client-x", at=utcnow())
    Payment.create(booking=booking.id, attempt=1, checkout_session_id="cs_test_shown", amount=11880, currency="usd",
                   status="paid", amount_subtotal=12000, amount_discount=2400, amount_tax=2280,
                   receipt_url="https://pay.stripe.com/receipts/r_1", invoice_url="https://invoice.stripe.com/i/inv_1")
    Refund.create(booking=booking.id, key="k1", purpose="cancellation", payment_intent_id="pi_1", amount=5940,
                  currency="usd", status="pending", stripe_refund_id="re_shown")
    Dispute.create(booking=booking.id, stripe_dispute_id="dp_shown", amount=11880, currency="usd",
                   status="needs_response", reason="fraudulent")
    Outbox.create(booking=booking.id, key="o1", kind="cancelled", recipient="ada@example.com",
                  subject="Your booking is cancelled", body="...", sent_at=utcnow())
    Outbox.create(booking=booking.id, key="o2", kind="refunded", recipient="a@x.com,b@y.com",
                  subject="Your refund", body="...", withheld_at=utcnow(), withheld_reason="not one plain address")
    ProviderEvent.create(provider="stripe", event_id="evt_shown", type="refund.created", booking=booking.id,
                         payload="{}", processed_at=utcnow(), outcome="recorded")
    AuditEntry.create(operator="grace", action="retry", booking_id=booking.id, reason="stuck since Monday",
                      outcome="queued")
    html = operator.page(f"/bookings/{booking.id}")
    for shown in ("BOOKING_CONFIRMED → <strong>BOOKING_CANCELLED</strong>", "cancelBooking", "cs_test_shown",
                  "$120.00", "$24.00", "$22.80", "$118.80", "https://pay.stripe.com/receipts/r_1",
                  "https://invoice.stripe.com/i/inv_1", "re_shown", "$59.40", "dp_shown", "needs_response",
                  "Your booking is cancelled", "sent ", "withheld: not one plain address", "evt_shown", "refund.created",
                  "stuck since Monday", "grace"):
        assert shown in html, shown


def test_an_unknown_booking_is_a_404_page(operator):
    assert operator.get("/bookings/nosuchbookingatall").status_code == 404


def test_the_deliveries_page_lists_unprocessed_and_failed_ones(operator, session_type):
    booking = booking_in(session_type)
    ProviderEvent.create(provider="stripe", event_id="evt_waiting", type="checkout.session.completed", payload="{}")
    ProviderEvent.create(provider="calendly", event_id="evt_unmatched", type="invitee.created", payload="{}",
                         processed_at=utcnow(), outcome="unmatched", booking=booking.id)
    ProviderEvent.create(provider="stripe", event_id="evt_fine", type="refund.created", payload="{}",
                         processed_at=utcnow(), outcome="recorded")
    unprocessed, failed = operator.page("/deliveries?view=unprocessed"), operator.page("/deliveries?view=failed")
    assert "evt_waiting" in unprocessed and "evt_unmatched" not in unprocessed
    assert "evt_unmatched" in failed and "evt_waiting" not in failed
    assert "evt_fine" not in unprocessed + failed


def test_the_session_types_page_shows_prices_per_currency_and_the_checkout_switches(operator, sandbox, app):
    make_session_type(sandbox.base, "strategy-hour", price=12000, currency="eur", prices={"usd": 13000, "jpy": 19000},
                      promotion_codes=True, automatic_tax=True, invoice=False)
    html = operator.page("/session-types")
    assert "€120.00 (default)" in html and "$130.00" in html and "¥19,000" in html
    row = html[html.index("strategy-hour"):]
    assert re.search(r"<td>yes</td><td>yes</td><td>no</td>", row)


def test_the_flags_page_lists_feature_flags_and_flagged_bookings(operator, session_type):
    flagged = booking_in(session_type, State.ERROR_PAYMENT, flagged_at=utcnow(), flag_reason="refund failed")
    html = operator.page("/flags")
    assert "bookings_open" in html and flagged.id in html and "refund failed" in html


def test_every_page_forbids_other_hosts_and_framing(operator, anonymous):
    pages = [(operator, path) for path in ("/", "/bookings", "/deliveries", "/flags", "/session-types", "/audit")]
    for browser, path in [*pages, (anonymous, "/sign-in")]:
        response = browser.get(path)
        assert response.status_code == 200, path
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert response.headers["X-Frame-Options"] == "DENY"
        html = response.get_data(as_text=True)
        # Nothing is loaded from another host: no script at all, every stylesheet and image our own.
        assert "<script" not in html
        assert not re.search(r'<(link|img)[^>]+(href|src)="(https?:)?//', html), path
