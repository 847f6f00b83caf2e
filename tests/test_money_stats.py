"""`bookingflow stats` and `bookings show` over bookings paid through the public path: Stripe's signed
`checkout.session.completed` for sessions bookingflow created, some with a promotion code's discount
and Stripe Tax's tax (`amount_subtotal` the price, `total_details`, `amount_total` what was charged),
in three currencies. Money is reported per currency, never summed across, and a refund gives back
what the client paid, which its e-mail says."""

from __future__ import annotations

import requests

from models.tables import Booking, Outbox
from support.catalogue import POLICY, make_session_type
from support.cli import suite_cli
from support.flows import confirmed_booking, hours_from_now
from support.mail import act
from support.providers import encode, stripe_event, stripe_signature
from support.suite import STRIPE_WEBHOOK_SECRET
from support.waiting import wait_until


def paid_with(frontend, sandbox, live_server, slug: str, *, discount: int = 0, tax: int = 0, hours: float = 100) -> dict:
    """A booking of `slug` paid at the sandbox, whose completion reaches bookingflow as Stripe sends it
    for a session where a promotion code took `discount` off and Stripe Tax added `tax`."""
    view, _ = frontend.book_and_wait_for_checkout(slug, start_time=hours_from_now(hours))
    sandbox.hold_deliveries("stripe", True)
    frontend.pay(view["checkout_url"])
    session_id = view["checkout_url"].rsplit("/", 1)[1]
    (session,) = [s for s in sandbox.objects("checkout.session") if s["id"] == session_id]
    sandbox.drop_pending_deliveries("stripe")
    sandbox.hold_deliveries("stripe", False)
    price = session["amount_subtotal"]
    session.update(amount_total=price - discount + tax,
                   total_details={"amount_discount": discount, "amount_shipping": 0, "amount_tax": tax})
    body = encode(stripe_event("checkout.session.completed", session))
    response = requests.post(f"{live_server}/webhooks/stripe", data=body, timeout=10, headers={
        "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, STRIPE_WEBHOOK_SECRET)})
    assert response.status_code == 200, response.text
    return frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")


def money_lines(stats: str) -> dict[str, str]:
    section = stats.split("money, per currency (never added up across currencies):\n", 1)[1]
    lines = [line for line in section.splitlines() if line.startswith("    ")]
    return {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in lines}


def test_stats_report_what_each_currency_charged_discounted_taxed_refunded_and_kept(frontend, sandbox, live_server):
    make_session_type(sandbox.base, "tea", price=5000, currency="jpy")
    make_session_type(sandbox.base, "majlis", price=5000, currency="bhd")
    discounted = paid_with(frontend, sandbox, live_server, "short-call", discount=1000, tax=400)  # $50.00 list
    paid_with(frontend, sandbox, live_server, "coaching-hour")                                       # $120.00
    paid_with(frontend, sandbox, live_server, "tea", tax=500)                                        # ¥5,000 + tax
    confirmed_booking(frontend, "majlis", start_time=hours_from_now(100))                            # 5.000 BHD

    # Cancelled in time: everything the client paid comes back, and no more: $44.00, not the $50.00 list price.
    assert act(frontend, discounted["id"], "cancel", {"reason": "plans changed"}).status_code == 202
    frontend.wait_for_state(discounted["id"], "REFUND_COMPLETED")

    stats = suite_cli("stats").stdout
    assert money_lines(stats) == {
        "BHD": "charged 5.000 BHD in 1 payment(s): prices 5.000 BHD, discounts given 0.000 BHD, tax collected "
               "0.000 BHD; refunded 0.000 BHD, lost in disputes 0.000 BHD; net 5.000 BHD",
        "JPY": "charged ¥5,500 in 1 payment(s): prices ¥5,000, discounts given ¥0, tax collected ¥500; refunded ¥0, "
               "lost in disputes ¥0; net ¥5,500",
        "USD": "charged $164.00 in 2 payment(s): prices $170.00, discounts given $10.00, tax collected $4.00; "
               "refunded $44.00, lost in disputes $0.00; net $120.00",
    }
    assert "refunds: 1 bookings (25.0%), $44.00\n" in stats

    shown = suite_cli("bookings", "show", discounted["id"]).stdout
    assert "session type short-call, $50.00, paid $44.00, refunded $44.00" in shown
    assert "attempt 1: $44.00 paid (price $50.00, discount -$10.00, tax $4.00)" in shown
    assert "cancellation: $44.00 succeeded" in shown

    refund_mail = wait_until(lambda: Outbox.get_or_none(Outbox.booking == discounted["id"], Outbox.kind == "refunded"),
                             message="the refund e-mail written")
    assert "we have refunded $44.00 of the $44.00 you paid for your Short Call." in refund_mail.body
    assert Booking.get_by_id(discounted["id"]).amount_refunded == 4400
