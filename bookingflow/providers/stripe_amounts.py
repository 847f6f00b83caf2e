"""Amounts as Stripe takes them: each currency's minor unit, the forms it refuses, its minimum charge,
and how an amount reads to people.

Every amount in bookingflow is an integer in the minor unit of Stripe's API for its currency
(docs.stripe.com/currencies, "Specify amounts in API requests"):
- two decimals unless listed below: 1000 is 10.00 USD. HUF and TWD are two-decimal for charges and
  refunds (Stripe treats them as zero-decimal for payouts only, which bookingflow never makes).
- zero decimals for Stripe's zero-decimal currencies: 500 is ¥500.
- ISK and UGX "transitioned to a zero-decimal currency, but backward compatibility requires you to
  represent it as a two-decimal value, where the decimal amount is always 00": 500 is 5 ISK, and 550
  is refused (no fractions of a króna). UGX is on Stripe's zero-decimal list as well; the special case
  says how it is sent, so here it is two-decimal.
- three decimals for BHD, JOD, KWD, OMR and TND, whose last digit must be 0 ("to ensure compatibility
  with Stripe's payments partners ... round amounts to the nearest ten": 5.124 KWD is sent as 5120).

Minimums: Stripe's table of "minimum charge amount by currency": a Checkout Session for less is
refused (`amount_too_small`). For a currency not listed, the minimum is the equivalent of the
settlement currency's minimum after conversion, which moves with the exchange rate: it is not checked
here, and Stripe's own refusal is handled where the session is created.
"""

from __future__ import annotations

# Stripe's published minimums, in the minor unit above. BGN is from the table's earlier edition
# (Bulgaria has since moved to the euro); a minimum Stripe no longer lists only refuses less than it did.
MINIMUM_CHARGE = {
    "usd": 50, "aed": 200, "ars": 50, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "cop": 50,
    "czk": 1500, "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "idr": 50, "ils": 50, "inr": 50,
    "jpy": 50, "krw": 50, "mxn": 1000, "myr": 200, "nok": 300, "nzd": 50, "php": 50, "pln": 200, "ron": 200,
    "rub": 50, "sek": 300, "sgd": 50, "thb": 1000, "zar": 50,
}
# Stripe's zero-decimal list, less UGX (sent with two decimals, see above).
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "vnd", "vuv",
                          "xaf", "xof", "xpf"})
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
# Two decimals on the wire, always 00: whole units only.
WHOLE_UNITS_ONLY = frozenset({"isk", "ugx"})

# A symbol only where it names one currency and no other; every other currency is written with its
# code after the number ("1,234.50 CHF"), the dollars other than the US one among them.
SYMBOLS = {
    "usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "krw": "₩", "inr": "₹", "ils": "₪", "vnd": "₫", "ngn": "₦",
    "php": "₱", "uah": "₴", "try": "₺",
}


def decimals(currency: str) -> int:
    """How many of an amount's last digits are the fraction, in Stripe's API: 0, 2 or 3."""
    code = currency.lower()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def _step(currency: str) -> int:
    """The amounts Stripe accepts in `currency` are the multiples of this."""
    code = currency.lower()
    if code in THREE_DECIMAL:
        return 10
    if code in WHOLE_UNITS_ONLY:
        return 100
    return 1


def valid_amount(amount: int, currency: str) -> str | None:
    """Why Stripe would refuse `amount` in `currency` for its form (not its size), or None."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        return f"{amount!r} is not a whole number of the currency's minor unit"
    if amount < 0:
        return f"{amount} is negative"
    code = currency.lower()
    if amount % _step(code):
        if code in THREE_DECIMAL:
            return (f"{display(amount, code)}: Stripe takes {code.upper()} amounts with a last digit of 0 "
                    f"(a multiple of 10 in thousandths; {display(round_down(amount, code), code)} would do)")
        return (f"{display(amount, code)}: Stripe charges {code.upper()} in whole units only, sent with two "
                f"decimals that are 00 (a multiple of 100; {display(round_down(amount, code), code)} would do)")
    return None


def round_down(amount: int, currency: str) -> int:
    """The largest amount <= `amount` that Stripe accepts in `currency`: a share of a payment rounded
    this way is never more than the share."""
    return amount - amount % _step(currency)


def minimum_charge(currency: str) -> int | None:
    """Stripe's minimum for `currency` in minor units; None when Stripe's table does not list it."""
    return MINIMUM_CHARGE.get(currency.lower())


def below_minimum(amount: int, currency: str) -> int | None:
    """The minimum `amount` falls short of, or None when Stripe would accept it (as far as we know)."""
    minimum = minimum_charge(currency)
    return minimum if minimum is not None and amount < minimum else None


def display(amount: int, currency: str) -> str:
    """An amount for people: "$1,234.50", "-€50.00", "¥5,000", "5.000 BHD", "1,234.50 CHF", "5 ISK"."""
    code = currency.lower()
    places = decimals(code)
    sign, magnitude = ("-" if amount < 0 else ""), abs(amount)
    whole, fraction = divmod(magnitude, 10 ** places) if places else (magnitude, 0)
    number = f"{whole:,}"
    # ISK and UGX carry two decimals that are always 00: written whole, unless an amount is not.
    if places and not (code in WHOLE_UNITS_ONLY and fraction == 0):
        number += f".{fraction:0{places}d}"
    symbol = SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code.upper()}"
