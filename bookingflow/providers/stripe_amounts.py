"""The smallest amount Stripe charges in each currency, in the currency's minor units.

Stripe's table of "minimum and maximum charge amounts" (docs.stripe.com/currencies): a Checkout
Session for less is refused (`amount_too_small`). JPY is a zero-decimal currency (50 means ¥50); HUF
amounts are sent with two decimals (17500 means 175.00 Ft). For a currency not listed, Stripe's
minimum is the equivalent of 0.50 USD in the account's settlement currency, which moves with the
exchange rate: it is not checked here, and Stripe's own refusal is handled where the session is created.
"""

from __future__ import annotations

MINIMUM_CHARGE = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500,
    "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000,
    "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
}
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd",
                          "vuv", "xaf", "xof", "xpf"})


def minimum_charge(currency: str) -> int | None:
    """Stripe's minimum for `currency` in minor units; None when Stripe's table does not list it."""
    return MINIMUM_CHARGE.get(currency.lower())


def below_minimum(amount: int, currency: str) -> int | None:
    """The minimum `amount` falls short of, or None when Stripe would accept it (as far as we know)."""
    minimum = minimum_charge(currency)
    return minimum if minimum is not None and amount < minimum else None


def display(amount: int, currency: str) -> str:
    """An amount for people: `0.30 USD`, `40 JPY`."""
    code = currency.upper()
    if currency.lower() in ZERO_DECIMAL:
        return f"{amount} {code}"
    return f"{amount // 100}.{amount % 100:02d} {code}"


THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def valid_amount(amount: int, currency: str) -> str | None:
    """Why Stripe would refuse `amount` in `currency` as written, or None: a three-decimal currency's
    amount must end in 0 (card networks carry two of its three decimals)."""
    if currency.lower() in THREE_DECIMAL and amount % 10:
        return f"{amount} is not a whole multiple of 10 minor units, which Stripe requires in {currency.upper()}"
    return None


def round_down(amount: int, currency: str) -> int:
    """The largest amount at most `amount` that Stripe accepts in `currency`."""
    return amount - amount % 10 if currency.lower() in THREE_DECIMAL else amount
