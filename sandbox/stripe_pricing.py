"""Money on the sandbox's Checkout: how each currency is written, the promotion codes it knows, and the
totals Stripe reports for a paid session (subtotal, discount, tax, total).

Pure functions over integers in minor units; the fake (stripe_fake.py) owns state and errors.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from fractions import Fraction

# Stripe's zero-decimal currencies: an amount of 500 is ¥500.
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx",
                          "vnd", "vuv", "xaf", "xof", "xpf"})
# Three-decimal currencies: Stripe takes three decimals but requires the last digit to be 0 (its payment
# partners settle to the hundredth), so every amount it computes is rounded to the nearest ten.
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
SYMBOLS = {"jpy": "¥", "krw": "₩"}
TAX_BEHAVIORS = ("exclusive", "inclusive", "unspecified")
BASIS_POINTS = 10_000  # the tax rate's unit: 1900 is 19%


def decimals(currency: str) -> int:
    currency = currency.lower()
    return 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2


def format_amount(amount: int, currency: str) -> str:
    """As a customer reads it: "¥5,000", "5.000 BHD", "1,234.50 EUR"; a negative amount keeps its sign."""
    sign, amount = ("-" if amount < 0 else ""), abs(amount)
    places = decimals(currency)
    if places == 0:
        symbol = SYMBOLS.get(currency.lower())
        return f"{sign}{symbol}{amount:,}" if symbol else f"{sign}{amount:,} {currency.upper()}"
    major, minor = divmod(amount, 10 ** places)
    return f"{sign}{major:,}.{minor:0{places}d} {currency.upper()}"


def round_half_up(value: Fraction) -> int:
    """To the minor unit, halves away from zero (values here are never negative)."""
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


def to_payable(amount: Fraction | int, currency: str) -> int:
    """Rounded as Stripe charges it: to the minor unit, and to a ten in a three-decimal currency."""
    if currency.lower() in THREE_DECIMAL:
        return round_half_up(Fraction(amount) / 10) * 10
    return round_half_up(Fraction(amount))


def accepts_amount(amount: int, currency: str) -> bool:
    """Stripe's rule for three-decimal currencies: the least significant digit must be 0."""
    return currency.lower() not in THREE_DECIMAL or amount % 10 == 0


# --- promotion codes -------------------------------------------------------------------------

@dataclass(frozen=True)
class PromotionCode:
    """A customer-facing code over a coupon: `percent_off` (0 < p <= 100) or `amount_off` minor units,
    in `currency`, or in any currency when it is None (the sandbox's simplification of a coupon's
    currency_options)."""

    code: str
    id: str
    coupon: str
    percent_off: float | None = None
    amount_off: int | None = None
    currency: str | None = None

    def applies_to(self, currency: str) -> bool:
        return self.currency is None or self.currency == currency.lower()

    def discount_on(self, subtotal: int, currency: str) -> int:
        if self.percent_off is not None:
            return min(subtotal, to_payable(subtotal * Fraction(str(self.percent_off)) / 100, currency))
        return min(subtotal, int(self.amount_off or 0))

    def as_json(self) -> dict:
        return {"object": "promotion_code", **asdict(self)}


def promotion_code(code: str, *, percent_off: float | None = None, amount_off: int | None = None,
                   currency: str | None = None) -> PromotionCode:
    """A new code with fresh ids; exactly one of percent_off and amount_off. Raises ValueError."""
    code = code.strip()
    if not code or not all(c.isalnum() or c in "-_" for c in code):
        raise ValueError("code must be letters, digits, '-' or '_'")
    if (percent_off is None) == (amount_off is None):
        raise ValueError("give exactly one of percent_off and amount_off")
    if percent_off is not None and not 0 < float(percent_off) <= 100:
        raise ValueError("percent_off must be greater than 0 and at most 100")
    if amount_off is not None and int(amount_off) <= 0:
        raise ValueError("amount_off must be a positive integer (minor units)")
    coupon = code.upper() + "_" + secrets.token_hex(4)
    return PromotionCode(code, "promo_" + secrets.token_hex(12), coupon,
                         None if percent_off is None else float(percent_off),
                         None if amount_off is None else int(amount_off),
                         currency.lower() if currency else None)


def default_promotion_codes() -> dict[str, PromotionCode]:
    """What a fresh sandbox knows, by code (matched without regard to case, as Stripe does)."""
    codes = [promotion_code("SAVE20", percent_off=20), promotion_code("HALF", percent_off=50),
             promotion_code("FIVEOFF", amount_off=500), promotion_code("FREE", percent_off=100)]
    return {c.code.upper(): c for c in codes}


# --- totals ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Line:
    amount: int  # unit_amount * quantity
    tax_behavior: str  # exclusive, inclusive or unspecified (the account's default: exclusive)


@dataclass(frozen=True)
class Totals:
    subtotal: int
    discount: int
    tax: int
    total: int

    def total_details(self) -> dict:
        return {"amount_discount": self.discount, "amount_shipping": 0, "amount_tax": self.tax}


def totals(lines: list[Line], currency: str, code: PromotionCode | None, tax_basis_points: int | None) -> Totals:
    """Stripe's order: the discount comes off the list price, tax is computed on what remains (per
    line, the discount shared in proportion), exclusive tax is added on top and inclusive tax is the
    part of the price that was tax. `tax_basis_points` None: no automatic tax."""
    subtotal = sum(line.amount for line in lines)
    discount = code.discount_on(subtotal, currency) if code else 0
    shares = _shares(discount, [line.amount for line in lines])
    tax = added = 0
    for line, share in zip(lines, shares):
        taxable = line.amount - share
        if not tax_basis_points or taxable <= 0:
            continue
        rate = Fraction(tax_basis_points, BASIS_POINTS)
        if line.tax_behavior == "inclusive":
            tax += to_payable(taxable * rate / (1 + rate), currency)
        else:
            line_tax = to_payable(taxable * rate, currency)
            tax, added = tax + line_tax, added + line_tax
    return Totals(subtotal, discount, tax, subtotal - discount + added)


def _shares(discount: int, amounts: list[int]) -> list[int]:
    """The discount split over lines in proportion to their amounts; the last line takes the rest."""
    whole = sum(amounts)
    if not whole:
        return [0] * len(amounts)
    shares = [discount * amount // whole for amount in amounts[:-1]]
    return shares + [discount - sum(shares)]
