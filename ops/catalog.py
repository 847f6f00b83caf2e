"""Session types: validated and upserted by slug (`bookingflow session-types import FILE`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from bookingflow.providers import stripe_amounts
from models.db import utcnow, write_transaction
from models.tables import SessionType

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
CURRENCY = re.compile(r"^[A-Za-z]{3}$")
POLICY_KEYS = {"full_before_hours", "partial_before_hours", "partial_percent"}


class CatalogInvalid(ValueError):
    pass


@dataclass(frozen=True)
class ImportResult:
    created: int
    updated: int


def _require(item: dict, key: str, kind, where: str):
    value = item.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise CatalogInvalid(f"{where}: {key} is required")
    if not isinstance(value, kind) or isinstance(value, bool):
        wanted = "a whole number" if kind is int else "text"
        raise CatalogInvalid(f"{where}: {key} must be {wanted}, got {value!r}")
    return value.strip() if isinstance(value, str) else value


def _url(item: dict, key: str, where: str) -> str:
    value = _require(item, key, str, where)
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc or len(value) > 500:
        raise CatalogInvalid(f"{where}: {key} must be an http(s) URL")
    return value


def _refund_policy(item: dict, where: str) -> dict | None:
    policy = item.get("refund_policy")
    if policy is None:
        return None
    if not isinstance(policy, dict) or not set(policy) <= POLICY_KEYS:
        raise CatalogInvalid(f"{where}: refund_policy takes only {', '.join(sorted(POLICY_KEYS))}")
    for key, value in policy.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CatalogInvalid(f"{where}: refund_policy.{key} must be a whole number >= 0")
    if policy.get("partial_percent", 0) > 100:
        raise CatalogInvalid(f"{where}: refund_policy.partial_percent is at most 100")
    return policy


def _switches(item: dict, where: str) -> dict:
    """Optional `active` (offered for new bookings) and `collect_payment` (off: a free session)."""
    switches = {}
    for key in ("active", "collect_payment"):
        if key in item:
            if not isinstance(item[key], bool):
                raise CatalogInvalid(f"{where}: {key} must be true or false")
            switches[key] = item[key]
    return switches


PRICING_SWITCHES = ("promotion_codes", "automatic_tax", "invoice")


def _pricing(item: dict, where: str) -> dict:
    """The optional pricing keys, all off by default: Stripe Checkout's promotion codes, Stripe Tax
    and invoice creation, and prices in other currencies than the default one. The file says the
    whole of them: a key left out is off (there is no other way to set them)."""
    pricing = {}
    for key in PRICING_SWITCHES:
        value = item.get(key, False)
        if not isinstance(value, bool):
            raise CatalogInvalid(f"{where}: {key} must be true or false")
        pricing[key] = value
    prices = item.get("prices")
    if prices is not None and not isinstance(prices, dict):
        raise CatalogInvalid(f"{where}: prices must be an object of currency to price, e.g. {{\"usd\": 13000}}")
    pricing["prices"] = {}
    for currency, amount in (prices or {}).items():
        if not isinstance(currency, str) or not CURRENCY.match(currency):
            raise CatalogInvalid(f"{where}: prices: {currency!r} is not a 3-letter ISO currency code")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            raise CatalogInvalid(f"{where}: prices.{currency} must be a whole number >= 0 (minor units)")
        pricing["prices"][currency.lower()] = amount
    return pricing


def _chargeable(row: dict, where: str) -> None:
    """A paid session type must cost at least what Stripe charges in its currency (a free one, its
    payment collection off or its price 0, is never sent to Stripe). Without `collect_payment` in the
    file, an existing type keeps its own switch."""
    collect = row.get("collect_payment")
    if collect is None:
        existing = SessionType.select(SessionType.collect_payment).where(SessionType.slug == row["slug"]).first()
        collect = existing.collect_payment if existing is not None else True
    if not collect:
        return
    for currency, price in [(row["currency"], row["price"]), *row["prices"].items()]:
        key = "price" if currency == row["currency"] else f"prices.{currency}"
        if price == 0 and key == "price":
            continue  # a free session, never sent to Stripe
        minimum = stripe_amounts.below_minimum(price, currency)
        if minimum is not None or price == 0:
            raise CatalogInvalid(
                f"{where}: {key} {stripe_amounts.display(price, currency)} is below Stripe's minimum charge of "
                f"{stripe_amounts.display(minimum or 1, currency)}; raise the price, or set collect_payment to "
                "false for a free session")
        problem = stripe_amounts.valid_amount(price, currency)
        if problem is not None:
            raise CatalogInvalid(f"{where}: {key}: {problem}")


def set_switch(slug: str, **switch: bool) -> bool:
    """Flip `active` or `collect_payment` of one session type; False if there is no such slug."""
    return bool(SessionType.update(updated_at=utcnow(), **switch).where(SessionType.slug == slug).execute())


def validate(items) -> list[dict]:
    """Every item checked before anything is written: a bad file changes nothing."""
    if not isinstance(items, list):
        raise CatalogInvalid("the file must hold a JSON list of session types")
    rows, slugs = [], set()
    for index, item in enumerate(items):
        where = f"item {index}"
        if not isinstance(item, dict):
            raise CatalogInvalid(f"{where}: not an object")
        slug = _require(item, "slug", str, where)
        if not SLUG.match(slug):
            raise CatalogInvalid(f"{where}: slug must be lowercase letters, digits and dashes")
        if slug in slugs:
            raise CatalogInvalid(f"{where}: slug {slug!r} appears twice")
        slugs.add(slug)
        where = f"session type {slug!r}"
        duration = _require(item, "duration_minutes", int, where)
        price = _require(item, "price", int, where)
        currency = _require(item, "currency", str, where)
        if duration <= 0 or price < 0:
            raise CatalogInvalid(f"{where}: duration_minutes must be > 0 and price >= 0 (minor units)")
        if not CURRENCY.match(currency):
            raise CatalogInvalid(f"{where}: currency must be a 3-letter ISO code")
        rows.append({
            "slug": slug,
            "name": _require(item, "name", str, where)[:200],
            "duration_minutes": duration,
            "price": price,
            "currency": currency.lower(),
            "calendly_event_type": _url(item, "calendly_event_type", where),
            "scheduling_url": _url(item, "scheduling_url", where),
            "refund_policy": _refund_policy(item, where),
            **_switches(item, where),
            **_pricing(item, where),
        })
        default_currency, default_price = rows[-1]["currency"], rows[-1]["price"]
        if rows[-1]["prices"].get(default_currency, default_price) != default_price:
            raise CatalogInvalid(f"{where}: prices.{default_currency} differs from price, the price in {default_currency}")
        rows[-1]["prices"].pop(default_currency, None)
        _chargeable(rows[-1], where)
    return rows


def _free_slug(wanted: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", wanted.lower()).strip("-")[:90] or "session"
    slug, n = base, 1
    while SessionType.select().where(SessionType.slug == slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@dataclass(frozen=True)
class SyncResult:
    created: int
    updated: int
    deactivated: int


def sync_event_types(event_types: list[dict]) -> SyncResult:
    """Fill session types from Calendly's event types: name, duration, scheduling link, URI. The
    price, currency and refund policy are the operator's and are kept. An event type seen for the
    first time becomes a session type switched off, priced 0, until an import gives it a price;
    one that Calendly deactivated is switched off for new bookings."""
    created = updated = deactivated = 0
    with write_transaction():
        for event_type in event_types:
            uri, name = event_type.get("uri"), event_type.get("name")
            if not isinstance(uri, str) or not isinstance(name, str) or not isinstance(event_type.get("duration"), int):
                continue
            fields = {"name": name[:200], "duration_minutes": event_type["duration"],
                      "scheduling_url": str(event_type.get("scheduling_url") or "")[:500], "updated_at": utcnow()}
            existing = SessionType.get_or_none(SessionType.calendly_event_type == uri)
            if existing is None:
                SessionType.create(slug=_free_slug(str(event_type.get("slug") or name)), calendly_event_type=uri,
                                   price=0, currency="usd", active=False, **fields)
                created += 1
                continue
            if event_type.get("active") is False and existing.active:
                fields["active"] = False
                deactivated += 1
            SessionType.update(**fields).where(SessionType.id == existing.id).execute()
            updated += 1
    return SyncResult(created, updated, deactivated)


def import_session_types(items) -> ImportResult:
    rows = validate(items)
    created = updated = 0
    with write_transaction():
        for row in rows:
            existing = SessionType.get_or_none(SessionType.slug == row["slug"])
            if existing is None:
                SessionType.create(**row)
                created += 1
            else:
                SessionType.update(updated_at=utcnow(), **row).where(SessionType.id == existing.id).execute()
                updated += 1
    return ImportResult(created, updated)
