"""bookingflow/providers/stripe_amounts.py: each currency's minor unit as Stripe takes it, the amounts
it refuses for their form, rounding a share down to one it takes, its minimums, and amounts for people.
Pure functions: tested as a unit, against the rules of docs.stripe.com/currencies."""

from __future__ import annotations

import pytest

from bookingflow.providers.stripe_amounts import (below_minimum, decimals, display, minimum_charge, round_down,
                                                   valid_amount)


@pytest.mark.parametrize(("currency", "places"), [
    ("usd", 2), ("EUR", 2), ("gbp", 2), ("chf", 2),
    ("jpy", 0), ("KRW", 0), ("clp", 0), ("vnd", 0), ("xof", 0), ("bif", 0),
    ("bhd", 3), ("jod", 3), ("kwd", 3), ("omr", 3), ("TND", 3),
    # Stripe's special cases: ISK and UGX are sent with two decimals (always 00); HUF and TWD charge
    # two-decimal amounts (their zero-decimal rule is for payouts).
    ("isk", 2), ("ugx", 2), ("huf", 2), ("twd", 2),
])
def test_decimals_are_the_places_of_stripes_api_amount(currency, places):
    assert decimals(currency) == places


@pytest.mark.parametrize(("amount", "currency"), [
    (5120, "kwd"), (5000, "bhd"), (0, "omr"), (500, "isk"), (500000, "ugx"), (1045, "huf"), (80045, "twd"),
    (1, "usd"), (1, "jpy"), (999, "eur"),
])
def test_an_amount_of_a_form_stripe_takes_is_valid(amount, currency):
    assert valid_amount(amount, currency) is None


@pytest.mark.parametrize(("amount", "currency", "says"), [
    (5124, "kwd", "last digit of 0"),
    (5001, "BHD", "5.000 BHD would do"),
    (550, "isk", "whole units only"),
    (500001, "ugx", "5,000 UGX would do"),
    (-100, "usd", "negative"),
    (10.5, "usd", "not a whole number"),
    (True, "usd", "not a whole number"),
])
def test_an_amount_stripe_refuses_for_its_form_says_why(amount, currency, says):
    reason = valid_amount(amount, currency)
    assert reason is not None and says in reason


@pytest.mark.parametrize(("amount", "currency", "rounded"), [
    (5124, "kwd", 5120), (5129, "kwd", 5120), (5120, "kwd", 5120), (9, "tnd", 0),
    (1599, "isk", 1500), (1500, "isk", 1500), (99, "ugx", 0),
    (1999, "usd", 1999), (1999, "jpy", 1999), (1045, "huf", 1045),
    (-5, "bhd", -10),  # the largest valid amount <= -5
])
def test_round_down_gives_the_largest_amount_stripe_takes_not_above_the_amount(amount, currency, rounded):
    assert round_down(amount, currency) == rounded
    assert valid_amount(abs(rounded), currency) is None


def test_a_share_rounded_down_is_never_more_than_the_share():
    for paid in range(10_000, 10_400, 10):
        for percent in (1, 33, 50, 66, 99):
            share = paid * percent // 100
            for currency in ("kwd", "isk", "usd", "jpy"):
                refund = round_down(share, currency)
                assert refund <= share and valid_amount(refund, currency) is None
                assert share - refund < {"kwd": 10, "isk": 100}.get(currency, 1)


@pytest.mark.parametrize(("currency", "minimum"), [
    ("usd", 50), ("GBP", 30), ("jpy", 50), ("krw", 50), ("huf", 17500), ("thb", 1000), ("mxn", 1000),
    # listed by Stripe, missing from the table before
    ("ars", 50), ("cop", 50), ("idr", 50), ("ils", 50), ("php", 50), ("rub", 50), ("zar", 50),
])
def test_stripes_minimum_charge_per_currency(currency, minimum):
    assert minimum_charge(currency) == minimum
    assert below_minimum(minimum - 1, currency) == minimum
    assert below_minimum(minimum, currency) is None


@pytest.mark.parametrize("currency", ["kwd", "bhd", "isk", "ugx", "xof"])
def test_a_currency_stripes_table_does_not_list_has_no_minimum_checked_here(currency):
    assert minimum_charge(currency) is None and below_minimum(1, currency) is None


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    (13000, "usd", "$130.00"),
    (5000, "EUR", "€50.00"),
    (10500, "gbp", "£105.00"),
    (5000, "jpy", "¥5,000"),
    (5000, "krw", "₩5,000"),
    (5000, "bhd", "5.000 BHD"),
    (1234560, "kwd", "1,234.560 KWD"),
    (123450, "usd", "$1,234.50"),
    (123456789, "usd", "$1,234,567.89"),
    (123450, "chf", "1,234.50 CHF"),
    (123450, "cad", "1,234.50 CAD"),  # a dollar, but not the US one: the code, never a bare "$"
    (123450, "aud", "1,234.50 AUD"),
    (4999, "inr", "₹49.99"),
    (-5000, "usd", "-$50.00"),
    (-123450, "chf", "-1,234.50 CHF"),
    (-5, "bhd", "-0.005 BHD"),
    (-1000, "jpy", "-¥1,000"),
    (0, "usd", "$0.00"),
    (5, "eur", "€0.05"),
    (0, "jpy", "¥0"),
    (17500, "huf", "175.00 HUF"),
    (80045, "twd", "800.45 TWD"),
    (500, "isk", "5 ISK"),          # sent as 500: five krónur, shown whole
    (500000, "ugx", "5,000 UGX"),
    (550, "isk", "5.50 ISK"),       # a form Stripe refuses, shown as it is rather than hidden
    (1500, "xof", "1,500 XOF"),
])
def test_display_reads_as_people_write_money(amount, currency, shown):
    assert display(amount, currency) == shown
