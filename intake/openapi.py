"""The OpenAPI 3.1 document of the HTTP surface (client API, provider webhooks, operations), served at
`GET /openapi.json`. Plain data, written by hand from what `intake/` validates and answers; the
schemathesis run in `tests/test_openapi.py` keeps the two in step.

The API trims `session_type`, `email` and `name` before checking them, so it also takes a value whose
surrounding whitespace pushes it past `maxLength`; the document promises only what always holds.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from models.states import OPERATOR_OVERRIDE, State, Trigger

bp = Blueprint("openapi", __name__)

JSON = "application/json"
MAX_BODY = "256 KiB"

BOOKING_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
# intake.api.EMAIL, applied to the trimmed value.
EMAIL_PATTERN = r'^[^@\s\x00-\x1f\x7f-\x9f,;<>"()\[\]\\]{1,64}@[^@\s\x00-\x1f\x7f-\x9f,;<>"()\[\]\\]{1,255}\.[^@\s\x00-\x1f\x7f-\x9f,;<>"()\[\]\\]{2,63}$'
# Text the service stores: not blank, and no NUL (no database here stores it; the API answers 422).
# \x1c-\x1f and \x85 are blank to Python's str.strip() (what the code checks) but not to \S here.
TEXT_PATTERN = r"^[^\x00]*[^\s\x00\x1c-\x1f\x85][^\x00]*$"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,99}$"
CURRENCY_PATTERN = r"^[a-z]{3}$"
# A Calendly resource URI as bookingflow.providers.calendly_payloads reads it: http(s), any host (printable ASCII,
# no brackets), then the resource path; a query or fragment is ignored.
_HOST = r'[!-"$-.0->@-Z\\^-~]*'
_UUID = r"[A-Za-z0-9_-]{1,100}"
_TAIL = r"(?:[?#][\s\S]*)?$"
EVENT_URI_PATTERN = rf"^https?://{_HOST}/scheduled_events/{_UUID}{_TAIL}"
INVITEE_URI_PATTERN = rf"^https?://{_HOST}/scheduled_events/{_UUID}/invitees/{_UUID}/?{_TAIL}"

STATES = [state.value for state in State]
TRIGGERS = [trigger.value for trigger in Trigger] + [OPERATOR_OVERRIDE]


def _ref(kind: str, name: str) -> dict:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict, description: str, headers: dict | None = None) -> dict:
    response = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str, codes: list[str], *, required: tuple[str, ...] = (), fields: list[str] | None = None) -> dict:
    """An error answer: the shared error body, its `code` narrowed to `codes`, its extras required."""
    inner: dict = {"properties": {"code": {"enum": codes}}}
    if required:
        inner["required"] = list(required)
    if fields:
        inner["properties"]["field"] = {"enum": fields}
    schema = {"allOf": [_ref("schemas", "Error"), {"properties": {"error": inner}}]}
    return _json(schema, description)


def _unprocessable(fields: list[str], codes: tuple[str, ...] = ("invalid_field",)) -> dict:
    return _error(
        "A field is missing or invalid; `error.field` names it. Nothing was stored.",
        list(codes), required=("field",), fields=fields,
    )


# Why Calendly's API does not confirm a client's scheduling report (jobs/calendly_trust.py).
REPORT_REFUSALS = ("invalid_field", "unknown_invitee", "not_this_booking", "wrong_event_type", "slot_taken",
                   "invitee_canceled")
BAD_JSON = _error("The body is not a JSON object.", ["invalid_json"])
BAD_ACTION = _error("The body is not a JSON object, or the Idempotency-Key header holds characters that are not "
                    "text.", ["invalid_json", "invalid_header"])
BAD_IDEMPOTENCY_KEY = _error("The Idempotency-Key header holds characters that are not text.", ["invalid_header"])
TOO_LARGE = _error(f"The body is larger than {MAX_BODY}.", ["payload_too_large"])
NOT_FOUND = _ref("responses", "NotFound")
WRONG_STATE = _ref("responses", "WrongState")
UNAVAILABLE = _ref("responses", "Unavailable")
RATE_LIMITED = _ref("responses", "RateLimited")

ACCEPTED = {
    "type": "object",
    "required": ["id", "state"],
    "additionalProperties": False,
    "properties": {
        "id": _ref("schemas", "BookingId"),
        "state": {**_ref("schemas", "State"), "description": "The state when the request was accepted."},
    },
}


def _action(summary: str, description: str, operation_id: str, body: dict | None, accepted: dict,
            unprocessable: dict | None, *, conflict: str) -> dict:
    """A POST on a booking: stored, queued, answered 202; the state machine decides for good later."""
    operation = {
        "tags": ["client"],
        "operationId": operation_id,
        "summary": summary,
        "description": description,
        "parameters": [_ref("parameters", "BookingId"), _ref("parameters", "IdempotencyKey")],
        "responses": {
            "202": accepted,
            "400": BAD_IDEMPOTENCY_KEY,
            "404": NOT_FOUND,
            "409": {**WRONG_STATE, "description": conflict},
            "429": RATE_LIMITED,
            "503": UNAVAILABLE,
        },
    }
    if body is not None:
        operation["requestBody"] = body
        operation["responses"]["400"] = BAD_ACTION
        operation["responses"]["413"] = TOO_LARGE
    if unprocessable is not None:
        operation["responses"]["422"] = unprocessable
    return operation


def _webhook(provider: str, header: str, body_schema: dict, description: str, example: dict) -> dict:
    return {
        "tags": ["webhooks"],
        "operationId": f"{provider.lower()}Webhook",
        "summary": f"A {provider} webhook delivery",
        "description": description,
        "parameters": [_ref("parameters", header.replace("-", ""))],
        "requestBody": {
            "required": True,
            "description": f"The delivery exactly as {provider} sent it (at most {MAX_BODY}).",
            "content": {JSON: {"schema": body_schema, "example": example}},
        },
        "responses": {
            "200": _json(_ref("schemas", "WebhookReceipt"),
                         "Verified and stored (or already stored): the work happens later, in a worker."),
            "400": _error(
                "Missing or bad signature, timestamp outside the tolerance, body not a JSON object, or no "
                "usable event id or type.",
                ["invalid_signature", "invalid_json", "invalid_event"],
            ),
            "403": _error(
                f"The delivery came from an address outside `{provider.upper()}_WEBHOOK_SOURCE_NETWORKS` "
                "(when that is set). Nothing was read or stored.",
                ["source_not_allowed"],
            ),
            "413": TOO_LARGE,
            "503": UNAVAILABLE,
        },
    }


DOCUMENT: dict = {
    "openapi": "3.1.0",
    "info": {
        "title": "bookingflow",
        "version": "1",
        "summary": "Paid sessions booked through Calendly and paid through Stripe.",
        "description": (
            "The client API a frontend calls and polls, the webhooks Stripe and Calendly deliver to, and "
            "the operations endpoints. All bodies are JSON. Errors are `{\"error\": {\"code\", \"message\"}}` "
            "with a 4xx or 5xx status, never a stack trace. Money is an integer in minor units of a "
            "lowercase ISO 4217 currency. A booking id is the only key to its booking: keep it secret. "
            "The client API is rate limited per client address: `429` with `Retry-After` when over."
        ),
    },
    "tags": [
        {"name": "client", "description": "What the frontend calls."},
        {"name": "webhooks", "description": "What Stripe and Calendly call; signed."},
        {"name": "operations", "description": "Health, readiness, metrics, this document."},
    ],
    "paths": {
        "/v1/session-types": {
            "get": {
                "tags": ["client"],
                "operationId": "listSessionTypes",
                "summary": "The session types on offer, cheapest first",
                "responses": {
                    "200": _json({"type": "array", "items": _ref("schemas", "SessionType")},
                                 "Every active session type, by price then slug."),
                    "429": RATE_LIMITED,
                    "503": UNAVAILABLE,
                },
            },
        },
        "/v1/bookings": {
            "post": {
                "tags": ["client"],
                "operationId": "createBooking",
                "summary": "Start a booking",
                "description": (
                    "Creates a booking in `CALENDLY_SCHEDULING` and answers the Calendly link to schedule it "
                    "with: the session type's link with `utm_content=<id>` and the client's name and e-mail "
                    "prefilled. Surrounding whitespace of each field is ignored."
                ),
                "requestBody": {
                    "required": True,
                    "content": {JSON: {
                        "schema": _ref("schemas", "NewBooking"),
                        "example": {"session_type": "coaching-hour", "email": "ada@example.com", "name": "Ada Lovelace"},
                    }},
                },
                "responses": {
                    "201": _json(_ref("schemas", "CreatedBooking"), "Created.", headers={
                        "Location": {"required": True, "description": "The booking's status URL.",
                                     "schema": {"type": "string", "format": "uri"}},
                    }),
                    "400": BAD_JSON,
                    "413": TOO_LARGE,
                    "422": _unprocessable(["session_type", "email", "name", "currency"],
                                          ("invalid_field", "unknown_session_type", "currency_not_offered")),
                    "429": RATE_LIMITED,
                    "503": UNAVAILABLE,
                },
            },
        },
        "/v1/bookings/{booking_id}": {
            "get": {
                "tags": ["client"],
                "operationId": "getBooking",
                "summary": "A booking's status",
                "description": (
                    "Cheap enough to poll every 2 s from every open tab: send the last `ETag` in "
                    "`If-None-Match` and an unchanged booking answers `304` with no body."
                ),
                "parameters": [
                    _ref("parameters", "BookingId"),
                    {
                        "name": "If-None-Match", "in": "header", "required": False,
                        "description": "The `ETag` of the last answer (or `*`).",
                        "schema": {"type": "string"}, "example": '"v1"',
                    },
                ],
                "responses": {
                    "200": _json(_ref("schemas", "Booking"), "The booking.", headers={
                        "ETag": _ref("headers", "ETag"), "Cache-Control": _ref("headers", "CacheControl"),
                    }),
                    "304": {
                        "description": "Unchanged since the `ETag` sent in `If-None-Match`.",
                        "headers": {"ETag": _ref("headers", "ETag"), "Cache-Control": _ref("headers", "CacheControl")},
                    },
                    "404": NOT_FOUND,
                    "429": RATE_LIMITED,
                    "503": UNAVAILABLE,
                },
            },
        },
        "/v1/bookings/{booking_id}/scheduled": {
            "post": _action(
                "Report the slot scheduled in Calendly",
                "What Calendly's embed reported in its `event_scheduled` message. While the booking waits "
                "for its slot, the report is checked with Calendly's API: the invitee must be of that "
                "event, active, scheduled with this booking's link (`utm_content`), of the booking's "
                "event type, and held by no other booking; otherwise `422` says which, and nothing is "
                "stored. Refused with `409` once the booking was abandoned (`IDLE`).",
                "reportScheduled",
                {
                    "required": True,
                    "content": {JSON: {
                        "schema": _ref("schemas", "ScheduledReport"),
                        "example": {
                            "event_uri": "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2",
                            "invitee_uri": "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2/invitees/AAAAAAAAAAAAAAAA",
                        },
                    }},
                },
                _json(ACCEPTED, "Accepted."),
                _unprocessable(["event_uri", "invitee_uri"], REPORT_REFUSALS),
                conflict="The booking was abandoned (`IDLE`); `error.state` is its state.",
            ),
        },
        "/v1/bookings/{booking_id}/cancel": {
            "post": _action(
                "Cancel",
                "Before confirmation the flow is abandoned (slot released, open checkout expired); after "
                "it the Calendly event is cancelled and the payment refunded by the session type's "
                "policy. The body may be empty.",
                "cancelBooking",
                {
                    "required": False,
                    "content": {JSON: {"schema": _ref("schemas", "Cancellation"), "example": {"reason": "I am ill"}}},
                },
                _json(ACCEPTED, "Accepted."),
                _unprocessable(["reason"]),
                conflict="The booking cannot be cancelled in its state; `error.state` is that state.",
            ),
        },
        "/v1/bookings/{booking_id}/retry-payment": {
            "post": _action(
                "Pay again after a failed payment",
                "From `PAYMENT_FAILED` (or a payment error before any money was taken): a fresh Checkout "
                "Session, whose `checkout_url` the status shows once it is open. No body.",
                "retryPayment",
                None,
                _json(ACCEPTED, "Accepted."),
                None,
                conflict="There is no failed payment to retry; `error.state` is the booking's state.",
            ),
        },
        "/v1/bookings/{booking_id}/reschedule": {
            "post": _action(
                "Pick a new slot",
                "From `BOOKING_CONFIRMED`: where the client picks the new slot, Calendly's reschedule "
                "page, or a fresh link when `session_type` names another session type (the price "
                "difference is charged or refunded). The body may be empty.",
                "rescheduleBooking",
                {
                    "required": False,
                    "content": {JSON: {"schema": _ref("schemas", "Reschedule"), "example": {"session_type": "coaching-hour"}}},
                },
                _json({
                    "type": "object",
                    "required": ["id", "state", "scheduling_url"],
                    "additionalProperties": False,
                    "properties": {
                        **ACCEPTED["properties"],
                        "scheduling_url": {"type": "string", "format": "uri",
                                           "description": "Where the client picks the new slot."},
                    },
                }, "Accepted."),
                _unprocessable(["session_type"], ("invalid_field", "unknown_session_type", "currency_mismatch")),
                conflict="The booking is not confirmed; `error.state` is its state.",
            ),
        },
        "/webhooks/stripe": {
            "post": _webhook(
                "Stripe", "Stripe-Signature",
                _ref("schemas", "StripeEvent"),
                "Verified with `STRIPE_WEBHOOK_SECRET` (any of its comma-separated secrets) within 300 s, "
                "stored once by event id, acknowledged. Unknown event types are accepted and ignored.",
                {"id": "evt_1Pgc76B7WZ01zgkWwyRHS12y", "type": "checkout.session.completed",
                 "data": {"object": {"id": "cs_test_a1", "object": "checkout.session"}}},
            ),
        },
        "/webhooks/calendly": {
            "post": _webhook(
                "Calendly", "Calendly-Webhook-Signature",
                _ref("schemas", "CalendlyDelivery"),
                "Verified with `CALENDLY_WEBHOOK_SIGNING_KEY` (any of its comma-separated keys) within "
                "180 s, stored once per event and invitee, acknowledged. Unknown events are accepted and "
                "ignored.",
                {"event": "invitee.created", "created_at": "2026-01-01T10:00:00.000000Z",
                 "payload": {"uri": "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2/invitees/AAAAAAAAAAAAAAAA",
                             "event": "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2"}},
            ),
        },
        "/healthz": {
            "get": {
                "tags": ["operations"],
                "operationId": "healthz",
                "summary": "The process is up",
                "responses": {"200": _json({
                    "type": "object", "required": ["status"], "additionalProperties": False,
                    "properties": {"status": {"const": "ok"}},
                }, "Up.")},
            },
        },
        "/readyz": {
            "get": {
                "tags": ["operations"],
                "operationId": "readyz",
                "summary": "The database and the broker are reachable",
                "responses": {
                    "200": _json(_ref("schemas", "Readiness"), "Ready."),
                    "503": _json(_ref("schemas", "Readiness"), "Not ready: `checks` says what is unreachable."),
                },
            },
        },
        "/metrics": {
            "get": {
                "tags": ["operations"],
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                # No `security` here: without METRICS_TOKEN the route is absent (404), not refusing (401).
                "description": "For the operators' scraper only: `Authorization: Bearer <METRICS_TOKEN>` "
                               "(the `MetricsToken` scheme). Without `METRICS_TOKEN` set, the route answers 404 "
                               "like any unknown one.",
                "responses": {
                    "200": {"description": "The Prometheus text exposition format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "401": _error("No token, or not `METRICS_TOKEN`.", ["unauthorized"]),
                    "404": _error("`METRICS_TOKEN` is not set: the metrics are not served.", ["not_found"]),
                },
            },
        },
        "/openapi.json": {
            "get": {
                "tags": ["operations"],
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": _json({
                        "type": "object", "required": ["openapi", "info", "paths"],
                        "properties": {"openapi": {"const": "3.1.0"}},
                    }, "The OpenAPI 3.1 document."),
                },
            },
        },
    },
    "components": {
        "schemas": {
            "BookingId": {
                "type": "string", "pattern": BOOKING_ID_PATTERN,
                "description": "192 random bits, url-safe base64; the only key to a booking.",
                "examples": ["Ny4bLw0cS3Ibe0TmMSZ8TZXdDq1pGZ0C"],
            },
            "State": {"type": "string", "enum": STATES, "description": "A state of the booking state machine."},
            "Money": {"type": "integer", "minimum": 0, "description": "Minor units of `currency` (cents for usd)."},
            "Currency": {"type": "string", "pattern": CURRENCY_PATTERN, "description": "ISO 4217, lowercase.",
                         "examples": ["usd"]},
            "Error": {
                "type": "object",
                "required": ["error"],
                "additionalProperties": False,
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "additionalProperties": False,
                        "properties": {
                            "code": {"type": "string", "minLength": 1, "description": "Stable, for programs."},
                            "message": {"type": "string", "description": "For people."},
                            "field": {"type": "string", "description": "The request field at fault (422)."},
                            "state": {**_ref("schemas", "State"),
                                      "description": "The booking's current state (409)."},
                        },
                    },
                },
            },
            "SessionType": {
                "type": "object",
                "required": ["slug", "name", "duration_minutes", "price", "currency", "prices", "promotion_codes",
                             "automatic_tax", "invoice"],
                "additionalProperties": False,
                "properties": {
                    "slug": {"type": "string", "pattern": SLUG_PATTERN},
                    "name": {"type": "string", "minLength": 1, "maxLength": 200},
                    "duration_minutes": {"type": "integer", "minimum": 1},
                    "price": {**_ref("schemas", "Money"), "description": "In the default `currency`."},
                    "currency": {**_ref("schemas", "Currency"), "description": "The default currency."},
                    "prices": {
                        "type": "object", "minProperties": 1,
                        "propertyNames": {"pattern": CURRENCY_PATTERN},
                        "additionalProperties": _ref("schemas", "Money"),
                        "description": "The price in every currency the type is offered in, the default "
                                       "included: `POST /v1/bookings` takes any of them as `currency`.",
                        "examples": [{"eur": 12000, "usd": 13000, "gbp": 10500}],
                    },
                    "promotion_codes": {"type": "boolean",
                                        "description": "Checkout takes Stripe promotion codes."},
                    "automatic_tax": {"type": "boolean",
                                      "description": "Stripe Tax adds tax at Checkout, on top of the price."},
                    "invoice": {"type": "boolean", "description": "Stripe issues an invoice for the payment."},
                },
            },
            "NewBooking": {
                "type": "object",
                "required": ["session_type", "email", "name"],
                "properties": {
                    "session_type": {
                        "type": "string", "minLength": 1, "maxLength": 100, "pattern": TEXT_PATTERN,
                        "description": "The slug of a session type on offer (else 422 `unknown_session_type`).",
                    },
                    "email": {
                        "type": "string", "maxLength": 320, "pattern": EMAIL_PATTERN,
                        "description": "One address, `local@domain.tld`: no spaces, no list (`,` `;`), display name or "
                                       "comment (`<>\"()[]\\`).",
                    },
                    "name": {
                        "type": "string", "minLength": 1, "maxLength": 200, "pattern": TEXT_PATTERN,
                        "description": "Not blank.",
                    },
                    "currency": {
                        "type": ["string", "null"], "pattern": "^[A-Za-z]{3}$",
                        "description": "One of the session type's `prices` (else 422 `currency_not_offered`, "
                                       "naming those offered); its default `currency` when left out or null.",
                    },
                },
            },
            "CreatedBooking": {
                "type": "object",
                "required": ["id", "state", "scheduling_url", "status_url"],
                "additionalProperties": False,
                "properties": {
                    "id": _ref("schemas", "BookingId"),
                    "state": {"const": State.CALENDLY_SCHEDULING.value},
                    "scheduling_url": {"type": "string", "format": "uri",
                                       "description": "The session type's Calendly link with `utm_content=<id>`, "
                                                      "`name` and `email`."},
                    "status_url": {"type": "string", "format": "uri",
                                   "description": "`GET` it for the booking's status."},
                },
            },
            "BookingError": {
                "type": ["object", "null"],
                "required": ["class", "message"],
                "additionalProperties": False,
                "properties": {
                    "class": {"type": "string", "enum": ["transient", "validation", "payment", "integration", "system"]},
                    "message": {"type": "string", "description": "Safe to show the client."},
                },
            },
            "Booking": {
                "type": "object",
                "required": ["id", "state", "session_type", "email", "scheduled_start", "scheduled_end", "amount",
                             "currency", "amount_paid", "amount_refunded", "payments", "checkout_url", "updated_at",
                             "error", "history", "disputes"],
                "additionalProperties": False,
                "properties": {
                    "id": _ref("schemas", "BookingId"),
                    "state": _ref("schemas", "State"),
                    "session_type": {"type": "string", "pattern": SLUG_PATTERN},
                    "email": {"type": "string", "pattern": r"^[^@\s]\*\*\*@[^@\s]+$",
                              "description": "Masked: the first character of the local part only.",
                              "examples": ["a***@example.com"]},
                    "scheduled_start": {"type": ["string", "null"], "format": "date-time"},
                    "scheduled_end": {"type": ["string", "null"], "format": "date-time"},
                    "amount": {**_ref("schemas", "Money"), "description": "What the booking costs."},
                    "currency": _ref("schemas", "Currency"),
                    "amount_paid": {**_ref("schemas", "Money"),
                                    "description": "Paid so far: the totals charged, after discounts, with tax."},
                    "amount_refunded": {**_ref("schemas", "Money"), "description": "Refunded so far."},
                    "payments": {
                        "type": "array",
                        "description": "The booking's payments, oldest first (a reschedule's difference is a payment "
                                       "of its own), with Stripe's receipt and invoice once Stripe has them.",
                        "items": {
                            "type": "object",
                            "required": ["amount_subtotal", "amount_discount", "amount_tax", "amount_total", "currency",
                                         "receipt_url", "invoice_url"],
                            "additionalProperties": False,
                            "properties": {
                                "amount_subtotal": {**_ref("schemas", "Money"), "description": "The price."},
                                "amount_discount": {**_ref("schemas", "Money"),
                                                    "description": "What a promotion code took off."},
                                "amount_tax": {**_ref("schemas", "Money"), "description": "Tax added by Stripe Tax."},
                                "amount_total": {**_ref("schemas", "Money"), "description": "What was charged."},
                                "currency": _ref("schemas", "Currency"),
                                "receipt_url": {"type": ["string", "null"], "format": "uri",
                                                "description": "Stripe's receipt of the charge; null until Stripe has it."},
                                "invoice_url": {"type": ["string", "null"], "format": "uri",
                                                "description": "Stripe's hosted invoice, for a session type with "
                                                               "`invoice`; else null."},
                            },
                        },
                    },
                    "checkout_url": {"type": ["string", "null"], "format": "uri",
                                     "description": "Stripe Checkout, while a payment is open "
                                                    "(`PAYMENT_PROCESSING`); else null."},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "error": {**_ref("schemas", "BookingError"),
                              "description": "The last failure, until the booking moves on; null when none."},
                    "disputes": {
                        "type": "array",
                        "description": "Chargebacks of the booking's payments, oldest first. While one is open "
                                       "bookingflow refunds nothing of that payment: the card network decides.",
                        "items": {
                            "type": "object",
                            "required": ["status", "amount", "currency", "reason", "opened_at", "closed_at"],
                            "additionalProperties": False,
                            "properties": {
                                "status": {"type": "string", "description": "Stripe's dispute status, as sent "
                                           "(an open set): e.g. needs_response, under_review, won, lost.",
                                           "examples": ["needs_response", "won", "lost"]},
                                "amount": {**_ref("schemas", "Money"), "description": "The amount disputed."},
                                "currency": _ref("schemas", "Currency"),
                                "reason": {"type": ["string", "null"], "examples": ["fraudulent"]},
                                "opened_at": {"type": "string", "format": "date-time"},
                                "closed_at": {"type": ["string", "null"], "format": "date-time",
                                              "description": "When it was won or lost; null while open."},
                            },
                        },
                    },
                    "history": {
                        "type": "array",
                        "minItems": 1,
                        "description": "Every state the booking went through, oldest first.",
                        "items": {
                            "type": "object",
                            "required": ["state", "trigger", "at", "error"],
                            "additionalProperties": False,
                            "properties": {
                                "state": _ref("schemas", "State"),
                                "trigger": {"type": "string", "enum": TRIGGERS},
                                "at": {"type": "string", "format": "date-time"},
                                "error": {**_ref("schemas", "BookingError"),
                                          "description": "The failure that caused this transition, if one did."},
                            },
                        },
                    },
                },
            },
            "ScheduledReport": {
                "type": "object",
                "required": ["event_uri", "invitee_uri"],
                "description": "`invitee_uri` must be an invitee of `event_uri` (the same scheduled event).",
                "properties": {
                    "event_uri": {"type": "string", "pattern": EVENT_URI_PATTERN,
                                  "description": "A Calendly scheduled event URI (no trailing slash)."},
                    "invitee_uri": {"type": "string", "pattern": INVITEE_URI_PATTERN,
                                    "description": "The invitee URI, under `event_uri`."},
                },
            },
            "Cancellation": {
                "type": "object",
                "properties": {"reason": {"type": ["string", "null"], "maxLength": 500, "pattern": r"^[^\x00]*$"}},
            },
            "Reschedule": {
                "type": "object",
                "properties": {
                    "session_type": {
                        "type": ["string", "null"], "pattern": TEXT_PATTERN,
                        "description": "Another session type on offer (by slug); absent, null or the "
                                       "current one keeps the session type.",
                    },
                },
            },
            "StripeEvent": {
                "type": "object",
                "required": ["id", "type"],
                "description": "A Stripe event; only `id`, `type` and `data.object.id` are read here.",
                "properties": {
                    "id": {"type": "string", "minLength": 1, "maxLength": 255},
                    "type": {"type": "string", "minLength": 1, "maxLength": 100},
                    "data": {"description": "`{\"object\": {...}}`, the object the event is about."},
                },
            },
            "CalendlyDelivery": {
                "type": "object",
                "required": ["event"],
                "description": "A Calendly webhook body (API v2, or a legacy v1 subscription).",
                "properties": {
                    "event": {"type": "string", "minLength": 1, "maxLength": 100,
                              "examples": ["invitee.created", "invitee.canceled"]},
                    "payload": {"description": "The invitee (v2) or `{invitee, event, event_type}` (v1)."},
                },
            },
            "WebhookReceipt": {
                "type": "object",
                "required": ["received", "duplicate"],
                "additionalProperties": False,
                "properties": {
                    "received": {"const": True},
                    "duplicate": {"type": "boolean", "description": "This delivery had been stored before."},
                },
            },
            "Readiness": {
                "type": "object",
                "required": ["status", "checks"],
                "additionalProperties": False,
                "properties": {
                    "status": {"enum": ["ready", "unavailable"]},
                    "checks": {
                        "type": "object",
                        "required": ["database", "broker"],
                        "additionalProperties": False,
                        "properties": {
                            "database": {"enum": ["ok", "unreachable"]},
                            "broker": {"enum": ["ok", "unreachable"]},
                        },
                    },
                },
            },
        },
        "parameters": {
            "BookingId": {
                "name": "booking_id", "in": "path", "required": True,
                "description": "The booking's id; an unknown or malformed one is `404`.",
                "schema": _ref("schemas", "BookingId"),
            },
            "IdempotencyKey": {
                "name": "Idempotency-Key", "in": "header", "required": False,
                "description": "Makes a repeated request the same request: a repeat of a request already "
                               "accepted is answered 202 again, whatever state the booking has reached since "
                               "(the first 100 characters count).",
                "schema": {"type": "string"},
            },
            "StripeSignature": {
                "name": "Stripe-Signature", "in": "header", "required": True,
                "description": "`t=<unix time>,v1=<hex HMAC-SHA256 of \"t.body\">`, as Stripe signs.",
                "schema": {"type": "string", "pattern": r"^t=[0-9]+(,v[0-9]+=[0-9a-f]+)+$"},
            },
            "CalendlyWebhookSignature": {
                "name": "Calendly-Webhook-Signature", "in": "header", "required": True,
                "description": "`t=<unix time>,v1=<hex HMAC-SHA256 of \"t.body\">`, as Calendly signs.",
                "schema": {"type": "string", "pattern": r"^t=[0-9]+(,v1=[0-9a-f]+)+$"},
            },
        },
        "headers": {
            "ETag": {"required": True, "description": "The booking's version; changes with every write.",
                     "schema": {"type": "string", "pattern": r'^"v[0-9]+"$'}},
            "CacheControl": {"required": True, "description": "Revalidate every time.",
                             "schema": {"const": "no-cache"}},
            "RetryAfter": {"required": True, "description": "Seconds until this address may call again.",
                           "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"}},
        },
        "securitySchemes": {
            "MetricsToken": {"type": "http", "scheme": "bearer",
                             "description": "`METRICS_TOKEN`, the operators' scraper's token."},
        },
        "responses": {
            "NotFound": _error("No such booking (or a malformed id).", ["not_found"]),
            "WrongState": _error("Not in the booking's current state; `error.state` is that state.",
                                 ["wrong_state"], required=("state",)),
            "Unavailable": _error("The database or the job queue is unreachable; nothing was accepted. "
                                  "Try again.", ["unavailable"]),
            "RateLimited": {
                **_error("Too many requests from this address (`CLIENT_RATE_LIMIT`); nothing was done. "
                         "Try again after `Retry-After` seconds.", ["rate_limited"]),
                "headers": {"Retry-After": _ref("headers", "RetryAfter")},
            },
        },
    },
}


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(DOCUMENT)
