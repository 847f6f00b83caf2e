"""What may be shown of a client's personal data, and what of a payment card may be kept."""

from __future__ import annotations

import re

# A card's own details. No full number ever reaches us (Checkout takes it), but these identify the
# card all the same (a fingerprint follows it across merchants), and none of our work reads them.
CARD_DETAILS = frozenset({"exp_month", "exp_year", "last4", "dynamic_last4", "fingerprint", "iin"})
# Objects describing a card (in a charge's or a payment method's details): reduced to the brand.
CARD_OBJECTS = frozenset({"card", "card_present", "interac_present"})
# Whoever holds the card: name, e-mail, address and phone, as the card's issuer knows them.
CARDHOLDER_DETAILS = frozenset({"billing_details", "owner"})


def mask_email(email: str | None) -> str | None:
    """j***@example.com: enough for the client to recognise, too little to harvest."""
    if not email or "@" not in email:
        return None
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


# What without_card_data acts on, as it must appear in a payload's JSON text: one of those keys, or
# an object whose "object" is "card". Keys are plain letters, digits and underscores, which JSON can
# write only as themselves or as \u escapes; so a text with neither has nothing to remove.
_CARD_DATA_MARKERS = re.compile(
    r'"(?:%s)"\s*:|"object"\s*:\s*"card"' % "|".join(sorted(CARD_DETAILS | CARD_OBJECTS | CARDHOLDER_DETAILS)))


def may_hold_card_data(text: str) -> bool:
    """False when the JSON `text` certainly holds nothing without_card_data would remove: the common
    case, told from the text in a few microseconds instead of a walk of the parsed object."""
    return "\\u" in text or _CARD_DATA_MARKERS.search(text) is not None


def without_card_data(value):
    """A copy of a Stripe object (or event) with no card or cardholder details: a card is known by its
    brand alone, and the billing details are null. Everything else is kept as it was."""
    if isinstance(value, list):
        return [without_card_data(item) for item in value]
    if not isinstance(value, dict):
        return value
    if value.get("object") == "card":  # a legacy card source, or a card expanded in place
        return _brand_only(value)
    kept = {}
    for key, item in value.items():
        if key in CARD_DETAILS:
            continue
        if key in CARDHOLDER_DETAILS and isinstance(item, dict):
            kept[key] = None
        elif key in CARD_OBJECTS and isinstance(item, dict):
            kept[key] = _brand_only(item)
        else:
            kept[key] = without_card_data(item)
    return kept


def _brand_only(card: dict) -> dict:
    return {key: card[key] for key in ("object", "brand") if key in card}
