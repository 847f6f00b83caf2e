"""Pricing per session type: prices in several currencies, and Stripe Checkout's promotion codes,
Stripe Tax and invoices turned on per type. Through the client API, the CLI's import, the worker and
the Stripe sandbox (what bookingflow asks Stripe for, as Stripe received it)."""

from __future__ import annotations

import pytest

from models.tables import Booking
from support.catalogue import make_session_type
from support.cli import catalog_env, import_session_types

PRICES = {"usd": 13000, "gbp": 10500, "jpy": 20000}


@pytest.fixture
def international(app, sandbox):
    """A session type priced 120.00 EUR by default, and in dollars, pounds and yen; every switch on."""
    return make_session_type(sandbox.base, "intl-call", price=12000, currency="eur", prices=PRICES,
                             promotion_codes=True, automatic_tax=True, invoice=True)


def new_booking(http, base: str, slug: str, **extra):
    return http.post(f"{base}/v1/bookings", json={"session_type": slug, "email": "ada@example.com",
                                                  "name": "Ada Lovelace", **extra})


# --- the catalogue, as the frontend reads it --------------------------------------------------------

def test_a_session_type_lists_its_price_in_every_currency_and_what_its_checkout_does(client, international, session_type):
    listed = {row["slug"]: row for row in client.get("/v1/session-types").get_json()}
    assert listed["intl-call"] == {
        "slug": "intl-call", "name": "Intl Call", "duration_minutes": 60, "price": 12000, "currency": "eur",
        "prices": {"eur": 12000, "gbp": 10500, "jpy": 20000, "usd": 13000},
        "promotion_codes": True, "automatic_tax": True, "invoice": True,
    }
    assert listed["coaching-hour"]["prices"] == {"usd": 12000}
    assert not any(listed["coaching-hour"][key] for key in ("promotion_codes", "automatic_tax", "invoice"))


# --- a booking in the client's currency --------------------------------------------------------------

@pytest.mark.parametrize("asked, amount, currency", [("gbp", 10500, "gbp"), ("JPY", 20000, "jpy"), (None, 12000, "eur"),
                                                     ("eur", 12000, "eur")])
def test_a_booking_costs_the_price_of_the_currency_it_chose(client, international, asked, amount, currency):
    extra = {} if asked is None else {"currency": asked}
    created = client.post("/v1/bookings", json={"session_type": "intl-call", "email": "ada@example.com",
                                                "name": "Ada Lovelace", **extra})
    assert created.status_code == 201, created.get_json()
    view = client.get(f"/v1/bookings/{created.get_json()['id']}").get_json()
    assert (view["amount"], view["currency"], view["amount_paid"], view["payments"]) == (amount, currency, 0, [])


@pytest.mark.parametrize("asked", ["chf", "usdx", "", 840, ["usd"], True])
@pytest.mark.abuse
def test_a_currency_the_type_is_not_offered_in_is_refused_naming_those_it_is_and_creates_nothing(client, international, asked):
    response = client.post("/v1/bookings", json={"session_type": "intl-call", "email": "ada@example.com",
                                                 "name": "Ada Lovelace", "currency": asked})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == ("currency_not_offered", "currency")
    assert "offered: eur, gbp, jpy, usd" in error["message"]
    assert Booking.select().count() == 0


# --- what bookingflow asks Stripe for ---------------------------------------------------------------

def checkout_request(sandbox, booking_id: str) -> dict:
    """The form bookingflow posted to create the booking's Checkout Session, as Stripe decoded it."""
    (made,) = [r for r in sandbox.api_requests("stripe") if r["method"] == "POST" and r["path"] == "/v1/checkout/sessions"
               and booking_id in (r["idempotency_key"] or "") and r["status"] == 200]
    return made["params"]


def booked_to_checkout(frontend, slug: str, **extra) -> dict:
    created = new_booking(frontend.http, frontend.base, slug, **extra)
    assert created.status_code == 201, created.text
    slot = frontend.schedule_in_calendly(created.json()["scheduling_url"])
    assert frontend.report_scheduled(created.json()["id"], slot).status_code == 202
    return frontend.wait_for_state(created.json()["id"], "PAYMENT_PROCESSING")


def test_checkout_charges_the_chosen_currencys_price_and_turns_on_the_types_codes_tax_and_invoice(
        frontend, sandbox, international):
    view = booked_to_checkout(frontend, "intl-call", currency="usd")
    params = checkout_request(sandbox, view["id"])
    (item,) = params["line_items"]
    assert item["price_data"]["currency"] == "usd" and item["price_data"]["unit_amount"] == "13000"
    assert item["price_data"]["tax_behavior"] == "exclusive"  # tax on top of the price
    assert params["allow_promotion_codes"] == "true"
    assert params["automatic_tax"] == {"enabled": "true"}
    assert params["invoice_creation"]["enabled"] == "true"
    assert params["invoice_creation"]["invoice_data"]["metadata"] == {"booking_id": view["id"]}
    # The client pays in the currency chosen, not one Stripe converts to.
    assert params["adaptive_pricing"] == {"enabled": "false"}


@pytest.mark.abuse
def test_checkout_of_a_type_with_every_switch_off_asks_for_none_of_them(frontend, sandbox):
    view = booked_to_checkout(frontend, "coaching-hour")
    params = checkout_request(sandbox, view["id"])
    assert not {"allow_promotion_codes", "automatic_tax", "invoice_creation"} & set(params)
    assert "tax_behavior" not in params["line_items"][0]["price_data"]
    assert params["line_items"][0]["price_data"]["unit_amount"] == "12000"


# --- the import -----------------------------------------------------------------------------------

@pytest.fixture
def cli_env(tmp_path):
    return catalog_env(tmp_path)


def import_types(env, tmp_path, *items):
    return import_session_types(env, tmp_path, *items, price=5000, currency="eur")


@pytest.mark.parametrize("pricing, shown", [
    ({"prices": {"gbp": 20}}, "prices.gbp"),  # below Stripe's minimum in pounds
    ({"prices": {"usd": 0}}, "prices.usd"),
    ({"prices": {"bhd": 5005}}, "multiple of 10"),  # a three-decimal currency's last digit
    ({"prices": {"dollars": 5000}}, "not a 3-letter ISO currency code"),
    ({"prices": {"usd": 50.5}}, "prices.usd must be a whole number"),
    ({"prices": [["usd", 5000]]}, "prices must be an object"),
    ({"prices": {"eur": 4000}}, "prices.eur differs from price"),
    ({"promotion_codes": "yes"}, "promotion_codes must be true or false"),
    ({"automatic_tax": 1}, "automatic_tax must be true or false"),
    ({"invoice": None}, "invoice must be true or false"),
])
def test_a_pricing_key_stripe_or_the_contract_would_refuse_is_refused_and_nothing_is_imported(cli_env, tmp_path, pricing, shown):
    result = import_types(cli_env, tmp_path, {"slug": "fine"}, {"slug": "priced", **pricing})
    assert result.returncode != 0
    assert "'priced'" in result.stderr and shown in result.stderr and "nothing imported" in result.stderr
    again = import_types(cli_env, tmp_path, {"slug": "fine"})
    assert "1 created" in again.stdout  # the refused file wrote nothing


def test_pricing_keys_left_out_of_a_later_import_are_off(client, sandbox):
    make_session_type(sandbox.base, "switched", prices={"gbp": 4000}, promotion_codes=True, automatic_tax=True, invoice=True)
    make_session_type(sandbox.base, "switched")
    (row,) = [row for row in client.get("/v1/session-types").get_json() if row["slug"] == "switched"]
    assert (row["prices"], row["promotion_codes"], row["automatic_tax"], row["invoice"]) == ({"usd": 5000}, False, False, False)


# --- a reschedule stays in the booking's currency ------------------------------------------------------

def test_a_reschedule_to_a_type_not_priced_in_the_bookings_currency_is_refused_naming_its_currencies(
        frontend, sandbox, international):
    make_session_type(sandbox.base, "dollars-only", price=9000, currency="usd")
    view = booked_to_checkout(frontend, "intl-call", currency="gbp")
    frontend.pay(view["checkout_url"])
    frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    refused = frontend.http.post(f"{frontend.base}/v1/bookings/{view['id']}/reschedule", json={"session_type": "dollars-only"})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "currency_mismatch" and "offered in usd" in refused.json()["error"]["message"]
    assert Booking.get_by_id(view["id"]).reschedule_session_type_id is None


@pytest.fixture
def pounds(app, sandbox):
    """Two types priced in dollars by default and in pounds; the dearer takes promotion codes."""
    make_session_type(sandbox.base, "small-call", price=5000, prices={"gbp": 4000})
    make_session_type(sandbox.base, "big-call", price=20000, prices={"gbp": 16000}, promotion_codes=True)


def reschedule(frontend, booking_id: str, slug: str) -> None:
    from support.flows import hours_from_now

    answer = frontend.http.post(f"{frontend.base}/v1/bookings/{booking_id}/reschedule", json={"session_type": slug})
    assert answer.status_code == 202, answer.text
    frontend.schedule_in_calendly(answer.json()["scheduling_url"], start_time=hours_from_now(120))


def test_a_reschedule_to_a_dearer_type_charges_the_difference_of_the_two_prices_in_the_bookings_currency(
        frontend, sandbox, pounds):
    view = booked_to_checkout(frontend, "small-call", currency="gbp")
    frontend.pay(view["checkout_url"])
    frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    reschedule(frontend, view["id"], "big-call")
    owing = frontend.wait_for_state(view["id"], "PAYMENT_PROCESSING")
    difference = [r["params"] for r in sandbox.api_requests("stripe") if r["method"] == "POST" and r["status"] == 200
                  and r["path"] == "/v1/checkout/sessions" and view["id"] in (r["idempotency_key"] or "")][-1]
    price_data = difference["line_items"][0]["price_data"]
    assert (price_data["unit_amount"], price_data["currency"]) == ("12000", "gbp")  # 160.00 - 40.00 pounds
    assert difference["allow_promotion_codes"] == "true"  # the new type's checkout
    frontend.pay(owing["checkout_url"])
    done = frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    assert (done["session_type"], done["amount"], done["currency"], done["amount_paid"]) == ("big-call", 16000, "gbp", 16000)


@pytest.mark.abuse
def test_a_downgrade_after_a_discount_gives_back_the_difference_as_it_was_paid_not_at_list_price(frontend, sandbox, pounds):
    from models.tables import Refund
    from support.waiting import wait_until

    view = booked_to_checkout(frontend, "big-call", currency="gbp")
    paid = frontend.http.post(view["checkout_url"] + "/pay", json={"outcome": "paid", "promotion_code": "SAVE20"})
    assert paid.status_code == 200 and paid.json()["amount_total"] == 12800, paid.text
    assert frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")["amount_paid"] == 12800
    reschedule(frontend, view["id"], "small-call")
    wait_until(lambda: (v := frontend.status(view["id"]))["session_type"] == "small-call" and v["amount_refunded"] and v,
               message="confirmed as the cheaper type, its difference refunded")
    (refund,) = Refund.select().where(Refund.booking == view["id"])
    # 120.00 of the 160.00 list price given up, paid at 80%: 96.00 back, never 120.00.
    assert (refund.amount, refund.currency, refund.purpose) == (9600, "gbp", "reschedule")
    booking = Booking.get_by_id(view["id"])
    assert (booking.amount, booking.amount_paid - booking.amount_refunded) == (4000, 3200)


def test_a_half_refund_of_a_downgrade_in_a_three_decimal_currency_is_an_amount_stripe_takes(frontend, sandbox):
    from models.tables import Refund
    from support.catalogue import POLICY
    from support.flows import hours_from_now
    from support.waiting import wait_until

    make_session_type(sandbox.base, "dinar-small", price=5000, currency="bhd", refund_policy=POLICY)
    make_session_type(sandbox.base, "dinar-big", price=15010, currency="bhd", refund_policy=POLICY)
    created = new_booking(frontend.http, frontend.base, "dinar-big")
    slot = frontend.schedule_in_calendly(created.json()["scheduling_url"], start_time=hours_from_now(30))
    assert frontend.report_scheduled(created.json()["id"], slot).status_code == 202
    view = frontend.wait_for_state(created.json()["id"], "PAYMENT_PROCESSING")
    frontend.pay(view["checkout_url"])
    frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    reschedule(frontend, view["id"], "dinar-small")  # 30 hours ahead: half of the 10.010 BHD difference
    done = wait_until(lambda: (v := frontend.status(view["id"]))["session_type"] == "dinar-small"
                      and v["amount_refunded"] and v, message="the downgrade's refund made")
    (refund,) = Refund.select().where(Refund.booking == view["id"])
    # 5.005 BHD is what half would be; Stripe takes three-decimal amounts ending in 0 only.
    assert (refund.amount, refund.status, done["amount_refunded"]) == (5000, "succeeded", 5000)


def test_a_receipt_stripe_did_not_have_yet_is_asked_for_again_by_the_sweep_once_per_interval(frontend, sandbox, broker):
    import datetime as dt

    from models.tables import Payment
    from scheduler.sweeps import DOCUMENTS_RECHECK, collect_missing_receipts
    from support.flows import confirmed_booking

    view = confirmed_booking(frontend, "coaching-hour")
    # As when Stripe had no receipt yet when the payment was recorded (or it was paid before receipts
    # were kept): nothing on record, asked once.
    asked_at = dt.datetime.now(dt.timezone.utc) - DOCUMENTS_RECHECK - dt.timedelta(seconds=1)
    Payment.update(receipt_url=None, documents_checked_at=asked_at).where(Payment.booking == view["id"]).execute()
    assert frontend.status(view["id"])["payments"][0]["receipt_url"] is None

    now = dt.datetime.now(dt.timezone.utc)
    assert collect_missing_receipts(now) == 1
    assert collect_missing_receipts(now) == 0  # claimed: a second scheduler finds nothing to send
    broker.join("default", timeout=30_000)

    (payment,) = frontend.status(view["id"])["payments"]
    (intent,) = [i for i in sandbox.objects("payment_intent") if i["id"] == Payment.get(Payment.booking == view["id"]).payment_intent_id]
    (charge,) = [c for c in sandbox.objects("charge") if c["id"] == intent["latest_charge"]]
    assert payment["receipt_url"] == charge["receipt_url"]
    assert collect_missing_receipts(now + DOCUMENTS_RECHECK * 2) == 0  # nothing missing any more
