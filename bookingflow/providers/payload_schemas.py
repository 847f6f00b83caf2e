"""What bookingflow reads from each provider event, as JSON Schema, checked before anything changes.

Only the fields a handler reads are constrained (types, formats, lengths); everything else in the
payload is the provider's business and passes. An event that fails is stored with the reason and
never reaches its handler.
"""

from __future__ import annotations

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from bookingflow.providers.calendly_payloads import PayloadInvalid

URI = {"type": "string", "maxLength": 500, "pattern": "^https?://"}
OPTIONAL_URI = {"anyOf": [URI, {"type": "null"}]}
TEXT_OR_NULL = {"type": ["string", "null"]}
METADATA = {"type": ["object", "null"], "additionalProperties": {"type": "string", "maxLength": 500}}

# Stripe's ids, by shape, never by prefix: besides `re_`/`ch_` it issues `pyr_` refunds and `py_`
# charges (SEPA, ACH, currency conversion ...), and may add more. Its enums are open sets too (a new
# value is a backward-compatible change for Stripe): a value is a short token, what it means is the
# handler's business (jobs/stripe_events.py), and an unknown one never makes a delivery invalid.
STRIPE_ID_PATTERN = "^[A-Za-z0-9_]{1,255}$"
STRIPE_ID = {"type": "string", "pattern": STRIPE_ID_PATTERN}
STRIPE_ID_OR_NULL = {"anyOf": [STRIPE_ID, {"type": "null"}]}
STRIPE_ID_OR_OBJECT = {"anyOf": [STRIPE_ID, {"type": "object", "required": ["id"], "properties": {"id": STRIPE_ID}},
                                 {"type": "null"}]}
STRIPE_ENUM = {"type": "string", "pattern": "^[A-Za-z0-9_.]{1,60}$"}
STRIPE_ENUM_OR_NULL = {"anyOf": [STRIPE_ENUM, {"type": "null"}]}
AMOUNT = {"type": "integer", "minimum": 0}


def expandable_id(value) -> str | None:
    """An expandable field (STRIPE_ID_OR_OBJECT): the id, whether Stripe sent the id or, expanded, the
    object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None
CURRENCY = {"type": "string", "pattern": "^[A-Za-z]{3}$"}


def _stripe_event(object_schema: dict) -> dict:
    return {
        "type": "object",
        "required": ["id", "type", "data"],
        "properties": {
            "id": {"type": "string", "maxLength": 255},
            "type": {"type": "string", "maxLength": 100},
            "data": {"type": "object", "required": ["object"], "properties": {"object": object_schema}},
        },
    }


CHECKOUT_SESSION = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": STRIPE_ID,
        "client_reference_id": {"type": ["string", "null"], "maxLength": 255},
        "metadata": METADATA,
        "payment_status": STRIPE_ENUM_OR_NULL,
        "status": STRIPE_ENUM_OR_NULL,
        "amount_total": {"type": ["integer", "null"], "minimum": 0},
        "currency": {"type": ["string", "null"], "pattern": "^[A-Za-z]{3}$"},
        "payment_intent": STRIPE_ID_OR_OBJECT,
    },
}
REFUND = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": STRIPE_ID,
        "status": STRIPE_ENUM_OR_NULL,
        "amount": AMOUNT,
        "currency": CURRENCY,
        "payment_intent": STRIPE_ID_OR_NULL,
        "charge": STRIPE_ID_OR_OBJECT,
        "metadata": METADATA,
    },
}
CHARGE = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": STRIPE_ID,
        "payment_intent": STRIPE_ID_OR_NULL,
    },
}
DISPUTE = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": STRIPE_ID,
        "status": STRIPE_ENUM_OR_NULL,
        "reason": STRIPE_ENUM_OR_NULL,
        "amount": AMOUNT,
        "currency": CURRENCY,
        "charge": STRIPE_ID_OR_OBJECT,
        "payment_intent": STRIPE_ID_OR_OBJECT,
        "metadata": METADATA,
    },
}

# Calendly's: only what bookingflow reads is constrained, and only by type and shape. Enum fields
# (status, canceler_type) are any text: a value Calendly adds later is recorded, not refused
# (calendly_payloads.KNOWN_VALUES); a field it adds passes; one it stops sending may be null.
SCHEDULED_EVENT = {
    "type": ["object", "null"],
    "properties": {"uri": URI, "start_time": TEXT_OR_NULL, "end_time": TEXT_OR_NULL, "event_type": OPTIONAL_URI,
                   "status": TEXT_OR_NULL},
}
INVITEE_V2 = {
    "type": "object",
    "required": ["uri"],
    "properties": {
        "uri": URI,
        "event": {"anyOf": [URI, {"type": "null"}, {"type": "object", "properties": {"uri": URI}}]},
        "email": TEXT_OR_NULL,
        "name": TEXT_OR_NULL,
        "status": TEXT_OR_NULL,
        "rescheduled": {"type": ["boolean", "null"]},
        "old_invitee": OPTIONAL_URI,
        "new_invitee": OPTIONAL_URI,
        "cancel_url": OPTIONAL_URI,
        "reschedule_url": OPTIONAL_URI,
        "tracking": {"type": ["object", "null"], "properties": {"utm_content": {"type": ["string", "null"]}}},
        "cancellation": {"type": ["object", "null"]},
        "scheduled_event": SCHEDULED_EVENT,
    },
}
INVITEE_V1 = {
    "type": "object",
    "required": ["invitee", "event"],
    "properties": {
        "invitee": {"type": "object", "required": ["uuid"], "properties": {"uuid": {"type": "string", "maxLength": 100}}},
        "event": {"type": "object", "required": ["uuid"], "properties": {"uuid": {"type": "string", "maxLength": 100}}},
    },
}
CALENDLY_INVITEE = {
    "type": "object",
    "required": ["event", "payload"],
    # The legacy v1 shape carries an `invitee` object; the v2 shapes are the invitee itself.
    "properties": {"event": {"type": "string"},
                   "payload": {"if": {"required": ["invitee"]}, "then": INVITEE_V1, "else": INVITEE_V2}},
}

SCHEMAS = {
    ("stripe", "checkout.session.completed"): _stripe_event(CHECKOUT_SESSION),
    ("stripe", "checkout.session.async_payment_succeeded"): _stripe_event(CHECKOUT_SESSION),
    ("stripe", "checkout.session.async_payment_failed"): _stripe_event(CHECKOUT_SESSION),
    ("stripe", "checkout.session.expired"): _stripe_event(CHECKOUT_SESSION),
    ("stripe", "refund.created"): _stripe_event(REFUND),
    ("stripe", "refund.updated"): _stripe_event(REFUND),
    ("stripe", "refund.failed"): _stripe_event(REFUND),
    ("stripe", "charge.refunded"): _stripe_event(CHARGE),
    **{("stripe", f"charge.dispute.{change}"): _stripe_event(DISPUTE)
       for change in ("created", "updated", "closed", "funds_withdrawn", "funds_reinstated")},
    ("calendly", "invitee.created"): CALENDLY_INVITEE,
    ("calendly", "invitee.canceled"): CALENDLY_INVITEE,
}
VALIDATORS = {key: Draft202012Validator(schema) for key, schema in SCHEMAS.items()}


def check(provider: str, event_type: str, body: dict) -> None:
    """Raise PayloadInvalid naming the first field that does not hold, if any."""
    validator = VALIDATORS.get((provider, event_type))
    if validator is None:
        return
    error = best_match(validator.iter_errors(body))
    if error is not None:
        # The path and the rule broken, never the value: payloads carry the client's personal data.
        where = ".".join(str(part) for part in error.absolute_path) or "the body"
        raise PayloadInvalid(f"{where}: fails {error.validator} {str(error.validator_value)[:80]}")
