"""The sandbox's Stripe prices Checkout as Stripe does: promotion codes, tax, invoices, receipts and the
currencies with zero or three decimals. Driven over HTTP, with stripe-python for the API."""

from __future__ import annotations

import re
import time

import pytest
import requests
import stripe

from sandbox import Sandbox, SandboxConfig, serve_in_thread

STRIPE_KEY = "sk_test_sandbox_pricing"


@pytest.fixture
def sandbox():
    sandbox = Sandbox(SandboxConfig(stripe_secret_key=STRIPE_KEY, stripe_webhook_secret="whsec_pricing",
                                    calendly_api_token="token", calendly_signing_key="key"))
    server, base = serve_in_thread(sandbox.app)
    sandbox.base = base
    sandbox.config.public_base = base
    yield sandbox
    sandbox.close()
    server.shutdown()


@pytest.fixture
def client(sandbox) -> stripe.StripeClient:
    return stripe.StripeClient(STRIPE_KEY, base_addresses={"api": sandbox.base + "/stripe"}, max_network_retries=0)


def line(amount: int = 5000, currency: str = "eur", **price) -> dict:
    return {"price_data": {"currency": currency, "unit_amount": amount, "product_data": {"name": "Coaching session"},
                           **price}, "quantity": 1}


def session_params(*lines: dict, **overrides) -> dict:
    return {"mode": "payment", "success_url": "https://shop.example/done?session={CHECKOUT_SESSION_ID}",
            "cancel_url": "https://shop.example/cancel", "client_reference_id": "booking_7",
            "line_items": list(lines) or [line()], "metadata": {"booking_id": "booking_7"},
            "expires_at": int(time.time()) + 3600, **overrides}


def create(client, *lines: dict, **overrides) -> stripe.checkout.Session:
    return client.v1.checkout.sessions.create(params=session_params(*lines, **overrides))


def pay(sandbox: Sandbox, session_id: str, outcome: str = "paid", **body) -> requests.Response:
    return requests.post(f"{sandbox.base}/stripe/checkout/{session_id}/pay", json={"outcome": outcome, **body},
                         timeout=10)


def paid(sandbox: Sandbox, session_id: str, **body) -> dict:
    response = pay(sandbox, session_id, **body)
    assert response.status_code == 200, response.text
    return response.json()


def control(sandbox: Sandbox, name: str, **body) -> requests.Response:
    return requests.post(f"{sandbox.base}/stripe/_sandbox/{name}", json=body, timeout=10)


def refused(call) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        call()
    return caught.value


def figure(page: str, key: str) -> str:
    found = re.search(rf'id="{key}">([^<]*)<', page)
    assert found, f"no {key} on the page"
    return found.group(1)


# --- creation ---------------------------------------------------------------------------------

def test_a_session_echoes_the_pricing_options_it_was_created_with(client):
    session = create(client, line(tax_behavior="exclusive"), allow_promotion_codes=True,
                     automatic_tax={"enabled": True}, billing_address_collection="required",
                     adaptive_pricing={"enabled": True},
                     invoice_creation={"enabled": True, "invoice_data": {"description": "Coaching, 1 hour",
                                                                         "metadata": {"booking_id": "booking_7"}}})

    assert session.allow_promotion_codes is True
    assert session.automatic_tax.to_dict() == {"enabled": True, "liability": {"type": "self"}, "provider": "stripe",
                                               "status": "requires_location_input"}
    assert session.invoice_creation.enabled is True
    assert session.invoice_creation.invoice_data.description == "Coaching, 1 hour"
    assert session.invoice_creation.invoice_data.metadata.to_dict() == {"booking_id": "booking_7"}
    assert (session.billing_address_collection, session.adaptive_pricing.enabled) == ("required", True)
    # Tax is unknown until the customer gives an address; no invoice before payment.
    assert (session.amount_subtotal, session.amount_total, session.invoice) == (5000, 5000, None)


def test_a_session_without_the_options_keeps_stripes_defaults(client):
    session = create(client)
    assert (session.allow_promotion_codes, session.automatic_tax.enabled, session.invoice_creation.enabled) == (
        None, False, False)
    assert session.discounts == [] and session.total_details.to_dict() == {
        "amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}


@pytest.mark.parametrize("overrides, param", [
    ({"allow_promotion_codes": True, "discounts": [{"coupon": "SAVE20"}]}, "allow_promotion_codes"),
    ({"line_items": [line(tax_behavior="sometimes")]}, "line_items[0][price_data][tax_behavior]"),
    ({"billing_address_collection": "always"}, "billing_address_collection"),
    ({"automatic_tax": {"enabled": "yes"}}, "automatic_tax[enabled]"),
    ({"invoice_creation": {"invoice_data": {"description": "x"}}}, "invoice_creation[enabled]"),
    ({"discounts": [{"promotion_code": "promo_unknown"}]}, "discounts[0][promotion_code]"),
    ({"line_items": [line(5005, "bhd")]}, "line_items[0][price_data][unit_amount]"),
])
def test_stripe_refuses_what_stripe_refuses(sandbox, client, overrides, param):
    error = refused(lambda: client.v1.checkout.sessions.create(params=session_params(**overrides)))
    assert (error.http_status, error.param) == (400, param)
    assert sandbox.objects("checkout.session") == []


def test_a_discount_given_at_creation_prices_the_session_at_once(sandbox, client):
    (save20,) = [c for c in sandbox.stripe.promotion_codes() if c["code"] == "SAVE20"]
    session = create(client, discounts=[{"promotion_code": save20["id"]}])

    assert (session.amount_subtotal, session.amount_total, session.total_details.amount_discount) == (5000, 4000, 1000)
    assert [d.to_dict() for d in session.discounts] == [{"coupon": save20["coupon"], "promotion_code": save20["id"]}]
    assert paid(sandbox, session.id)["amount_total"] == 4000


# --- promotion codes ----------------------------------------------------------------------------

def test_a_promotion_code_discounts_the_payment_and_bounds_its_refunds(sandbox, client):
    session = create(client, allow_promotion_codes=True)

    done = paid(sandbox, session.id, promotion_code="save20")  # codes are not case-sensitive

    assert (done["amount_subtotal"], done["total_details"]["amount_discount"], done["amount_total"]) == (5000, 1000, 4000)
    (discount,) = done["discounts"]
    assert discount["promotion_code"].startswith("promo_") and discount["coupon"]
    intent = client.v1.payment_intents.retrieve(done["payment_intent"], params={"expand": ["latest_charge"]})
    assert (intent.amount, intent.amount_received, intent.latest_charge.amount) == (4000, 4000, 4000)
    too_much = refused(lambda: client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 4001}))
    assert (too_much.param, too_much.code) == ("amount", "amount_too_large")
    assert client.v1.refunds.create(params={"payment_intent": intent.id}).amount == 4000


@pytest.mark.parametrize("code, amount, discount", [("HALF", 5000, 2500), ("FIVEOFF", 5000, 500),
                                                     ("FIVEOFF", 300, 300)])
def test_the_default_codes_take_off_what_they_say(sandbox, client, code, amount, discount):
    done = paid(sandbox, create(client, line(amount), allow_promotion_codes=True).id, promotion_code=code)
    assert (done["total_details"]["amount_discount"], done["amount_total"]) == (discount, amount - discount)


def test_a_code_is_refused_where_the_session_takes_none_and_when_unknown(sandbox, client):
    closed = create(client)
    not_taken = pay(sandbox, closed.id, promotion_code="SAVE20")
    unknown = pay(sandbox, create(client, allow_promotion_codes=True).id, promotion_code="NOPE")

    assert not_taken.status_code == 400 and not_taken.json()["error"]["param"] == "promotion_code"
    assert "allow_promotion_codes" in not_taken.json()["error"]["message"]
    assert unknown.status_code == 400 and "NOPE" in unknown.json()["error"]["message"]
    assert client.v1.checkout.sessions.retrieve(closed.id).status == "open"
    assert sandbox.objects("payment_intent") == [] and sandbox.objects("event") == []


def test_a_code_that_would_leave_less_than_stripes_minimum_is_refused(sandbox, client):
    response = pay(sandbox, create(client, line(520), allow_promotion_codes=True).id, promotion_code="FIVEOFF")
    assert response.status_code == 400 and response.json()["error"]["code"] == "amount_too_small"


def test_tests_add_codes_by_method_and_over_http(sandbox, client):
    sandbox.stripe.add_promotion_code("TENOFF", percent_off=10)
    added = control(sandbox, "promotion_codes", code="GBP3", amount_off=300, currency="gbp")
    assert added.status_code == 200 and added.json()["id"].startswith("promo_")
    assert control(sandbox, "promotion_codes", code="BOTH", percent_off=5, amount_off=5).status_code == 400

    tenth = paid(sandbox, create(client, allow_promotion_codes=True).id, promotion_code="TENOFF")
    pounds = paid(sandbox, create(client, line(2000, "gbp"), allow_promotion_codes=True).id, promotion_code="GBP3")
    wrong_currency = pay(sandbox, create(client, allow_promotion_codes=True).id, promotion_code="GBP3")

    assert (tenth["amount_total"], pounds["amount_total"], wrong_currency.status_code) == (4500, 1700, 400)
    listed = requests.get(f"{sandbox.base}/stripe/_sandbox/promotion_codes", timeout=10).json()["data"]
    assert {"SAVE20", "HALF", "FIVEOFF", "FREE", "TENOFF", "GBP3"} <= {c["code"] for c in listed}
    sandbox.stripe.reset_controls()
    assert "TENOFF" not in {c["code"] for c in sandbox.stripe.promotion_codes()}


# --- tax ----------------------------------------------------------------------------------------

def test_exclusive_tax_is_added_on_the_discounted_amount(sandbox, client):
    sandbox.stripe.set_tax_rate(1900)
    session = create(client, line(tax_behavior="exclusive"), allow_promotion_codes=True, automatic_tax={"enabled": True})

    done = paid(sandbox, session.id, promotion_code="SAVE20")

    assert done["total_details"] == {"amount_discount": 1000, "amount_shipping": 0, "amount_tax": 760}
    assert (done["amount_subtotal"], done["amount_total"]) == (5000, 4760)
    assert done["automatic_tax"]["status"] == "complete"
    assert done["customer_details"]["address"]["country"] == "DE"
    assert client.v1.payment_intents.retrieve(done["payment_intent"]).amount == 4760


def test_inclusive_tax_is_the_part_of_the_price_that_was_tax(sandbox, client):
    sandbox.stripe.set_tax_rate(1900)
    done = paid(sandbox, create(client, line(tax_behavior="inclusive"), automatic_tax={"enabled": True}).id)
    # 5000 * 19 / 119 = 798.3
    assert (done["total_details"]["amount_tax"], done["amount_total"]) == (798, 5000)


def test_tax_without_a_tax_behavior_is_added_and_rounded_half_up(sandbox, client):
    sandbox.stripe.set_tax_rate(1000)
    done = paid(sandbox, create(client, line(1005), automatic_tax={"enabled": True}).id)
    assert (done["total_details"]["amount_tax"], done["amount_total"]) == (101, 1106)  # 100.5 rounds up


def test_the_tax_control_sets_the_rate_and_the_customers_country_over_http(sandbox, client):
    answer = control(sandbox, "tax", basis_points=2000, country="fr")
    assert answer.status_code == 200 and answer.json() == {"basis_points": 2000, "country": "FR"}
    assert control(sandbox, "tax", basis_points=-1).status_code == 400

    done = paid(sandbox, create(client, automatic_tax={"enabled": True}).id)
    untaxed = paid(sandbox, create(client).id)

    assert (done["total_details"]["amount_tax"], done["customer_details"]["address"]["country"]) == (1000, "FR")
    assert (untaxed["total_details"]["amount_tax"], untaxed["customer_details"]["address"]) == (0, None)


# --- invoices and receipts ------------------------------------------------------------------------

def test_an_invoice_is_issued_for_a_paid_session_and_served(sandbox, client):
    sandbox.stripe.set_tax_rate(1900)
    session = create(client, allow_promotion_codes=True, automatic_tax={"enabled": True},
                     invoice_creation={"enabled": True, "invoice_data": {"metadata": {"booking_id": "booking_7"}}})
    done = paid(sandbox, session.id, promotion_code="SAVE20")

    invoice = client.v1.invoices.retrieve(done["invoice"], params={"expand": ["payments.data.payment.payment_intent"]})

    assert invoice.id.startswith("in_") and invoice.status == "paid"
    assert (invoice.subtotal, invoice.total, invoice.amount_paid, invoice.amount_remaining) == (5000, 4760, 4760, 0)
    assert invoice.total_discount_amounts[0].amount == 1000 and invoice.total_taxes[0].amount == 760
    assert invoice.metadata.to_dict() == {"booking_id": "booking_7"}
    assert invoice.payments.data[0].payment.payment_intent.id == done["payment_intent"]
    expanded = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["invoice"]})
    assert expanded.invoice.hosted_invoice_url == invoice.hosted_invoice_url
    for url in (invoice.hosted_invoice_url, invoice.invoice_pdf):
        page = requests.get(url, timeout=10)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert figure(page.text, "total") == "47.60 EUR" and figure(page.text, "tax") == "7.60 EUR"
    # The webhook sender does not filter by an endpoint's enabled events: no invoice.* event is sent.
    assert [e["type"] for e in sandbox.objects("event")] == ["checkout.session.completed"]


def test_no_invoice_without_invoice_creation_and_a_missing_one_is_stripes_404(sandbox, client):
    done = paid(sandbox, create(client).id)
    assert done["invoice"] is None and sandbox.objects("invoice") == []
    missing = refused(lambda: client.v1.invoices.retrieve("in_missing"))
    assert (missing.http_status, missing.param, missing.code) == (404, "invoice", "resource_missing")


def test_a_delayed_payment_gets_its_invoice_when_it_succeeds(sandbox, client):
    session = create(client, invoice_creation={"enabled": True})
    assert paid(sandbox, session.id, outcome="delayed")["invoice"] is None
    settled = requests.post(f"{sandbox.base}/stripe/checkout/{session.id}/settle", json={"outcome": "succeeded"},
                            timeout=10).json()
    assert settled["invoice"].startswith("in_") and settled["payment_status"] == "paid"


def test_every_charge_has_a_receipt_showing_amount_tax_and_discount(sandbox, client):
    sandbox.stripe.set_tax_rate(1900)
    done = paid(sandbox, create(client, allow_promotion_codes=True, automatic_tax={"enabled": True}).id,
                promotion_code="SAVE20")
    intent = client.v1.payment_intents.retrieve(done["payment_intent"], params={"expand": ["latest_charge"]})

    receipt = requests.get(intent.latest_charge.receipt_url, timeout=10)

    assert receipt.status_code == 200
    assert [figure(receipt.text, key) for key in ("subtotal", "discount", "tax", "amount")] == [
        "50.00 EUR", "-10.00 EUR", "7.60 EUR", "47.60 EUR"]
    assert requests.get(f"{sandbox.base}/stripe/receipts/ch_missing", timeout=10).status_code == 404


# --- a free order ---------------------------------------------------------------------------------

def test_a_hundred_percent_code_completes_without_payment(sandbox, client):
    session = create(client, allow_promotion_codes=True, invoice_creation={"enabled": True})

    done = paid(sandbox, session.id, promotion_code="FREE")

    assert (done["status"], done["payment_status"], done["payment_intent"]) == ("complete", "no_payment_required", None)
    assert (done["amount_subtotal"], done["total_details"]["amount_discount"], done["amount_total"]) == (5000, 5000, 0)
    assert sandbox.objects("payment_intent") == [] and sandbox.objects("charge") == []
    (event,) = sandbox.objects("event")
    assert event["type"] == "checkout.session.completed"
    assert event["data"]["object"]["payment_status"] == "no_payment_required"
    invoice = client.v1.invoices.retrieve(done["invoice"])
    assert (invoice.status, invoice.total, invoice.amount_paid, invoice.payments.data) == ("paid", 0, 0, [])


# --- currencies -----------------------------------------------------------------------------------

@pytest.mark.parametrize("currency, amount, shown", [("jpy", 5000, "¥5,000"), ("krw", 5000, "₩5,000"),
                                                     ("bhd", 5000, "5.000 BHD"), ("eur", 123450, "1,234.50 EUR")])
def test_amounts_are_written_as_their_currency_is(sandbox, client, currency, amount, shown):
    session = create(client, line(amount, currency))
    page = requests.get(session.url, timeout=10).text
    assert figure(page, "total") == shown


def test_three_decimal_amounts_stay_multiples_of_ten(sandbox, client):
    sandbox.stripe.set_tax_rate(1500)
    session = create(client, line(5550, "kwd"), allow_promotion_codes=True, automatic_tax={"enabled": True})

    done = paid(sandbox, session.id, promotion_code="HALF")

    # 2775 off rounds to 2780; tax is 15% of 2770, 415.5, rounded to 420.
    assert done["total_details"] == {"amount_discount": 2780, "amount_shipping": 0, "amount_tax": 420}
    assert done["amount_total"] == 3190
    odd = refused(lambda: client.v1.refunds.create(params={"payment_intent": done["payment_intent"], "amount": 1005}))
    assert odd.param == "amount"
    assert client.v1.refunds.create(params={"payment_intent": done["payment_intent"], "amount": 1010}).amount == 1010


# --- the checkout page ----------------------------------------------------------------------------

def test_the_page_offers_a_code_field_only_where_codes_are_allowed(sandbox, client):
    plain = requests.get(create(client).url, timeout=10).text
    with_codes = requests.get(create(client, allow_promotion_codes=True).url, timeout=10).text

    assert 'name="promotion_code"' not in plain and 'name="promotion_code"' in with_codes
    assert figure(plain, "subtotal") == figure(plain, "total") == "50.00 EUR"


def test_applying_a_code_on_the_page_shows_subtotal_discount_tax_and_total(sandbox, client):
    sandbox.stripe.set_tax_rate(1900)
    session = create(client, allow_promotion_codes=True, automatic_tax={"enabled": True})

    page = requests.get(session.url, params={"promotion_code": "SAVE20"}, timeout=10).text

    assert [figure(page, key) for key in ("subtotal", "discount", "tax", "total")] == [
        "50.00 EUR", "-10.00 EUR", "7.60 EUR", "47.60 EUR"]
    assert "Tax (19%)" in page and 'value="SAVE20"' in page


def test_paying_on_the_page_posts_the_code_and_a_refused_code_is_shown_on_the_page(sandbox, client):
    session = create(client, allow_promotion_codes=True)
    pay_url = f"{sandbox.base}/stripe/checkout/{session.id}/pay"

    bad = requests.post(pay_url, data={"via": "page", "outcome": "paid", "promotion_code": "NOPE"},
                        allow_redirects=False, timeout=10)
    assert bad.status_code == 400 and bad.headers["Content-Type"].startswith("text/html")
    assert "This code is invalid" in bad.text and '{"error"' not in bad.text
    assert figure(bad.text, "total") == "50.00 EUR"

    good = requests.post(pay_url, data={"via": "page", "outcome": "paid", "promotion_code": "SAVE20"},
                         allow_redirects=False, timeout=10)
    assert good.status_code == 303 and good.headers["Location"].endswith(f"session={session.id}")
    assert client.v1.checkout.sessions.retrieve(session.id).amount_total == 4000


def test_a_declined_card_on_the_page_keeps_the_code_entered(sandbox, client):
    session = create(client, allow_promotion_codes=True)
    declined = requests.post(f"{sandbox.base}/stripe/checkout/{session.id}/pay",
                             data={"via": "page", "outcome": "failed", "promotion_code": "HALF"}, timeout=10)
    assert "Your card was declined" in declined.text and figure(declined.text, "total") == "25.00 EUR"
