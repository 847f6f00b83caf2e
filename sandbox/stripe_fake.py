"""A local stand-in for the slice of the Stripe API that Checkout-based payments use.

It speaks Stripe's wire format (form-encoded nested params, Bearer auth, idempotency keys,
Stripe error JSON, event envelopes) so stripe-python can talk to it unchanged. The
/checkout/<id> pages and actions play the customer, which the real API cannot be asked to do.
"""

from __future__ import annotations

import copy
import functools
import json
import secrets
import string
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable
from urllib.parse import parse_qsl

import stripe
from flask import Blueprint, Response, redirect, request, url_for

from . import stripe_pages, stripe_pricing
from .deliveries import FakeProvider, WebhookSender
from .stripe_pricing import Line, PromotionCode, Totals

URL_PREFIX = "/stripe"
MIN_EXPIRY_SECONDS = 30 * 60
MAX_EXPIRY_SECONDS = 24 * 60 * 60
# Stripe's smallest charge per currency (minor units) for the currencies the sandbox knows; a Checkout
# Session due less is refused with `amount_too_small`.
MINIMUM_AMOUNTS = {"usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "chf": 50, "jpy": 50, "huf": 17500}
DEFAULT_LIST_LIMIT = 10
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
KINDS = ("checkout.session", "payment_intent", "charge", "refund", "event", "dispute", "invoice")
# The param name Stripe reports when an id in the URL does not exist.
MISSING_PARAM = {"checkout.session": "session", "payment_intent": "intent", "charge": "charge",
                 "refund": "refund", "event": "id", "dispute": "dispute", "invoice": "invoice"}
# Dispute statuses: open ones, and the two a dispute closes with. An inquiry (warning_*) still lets
# the charge be refunded; a chargeback under way does not (Stripe answers `charge_disputed`).
DISPUTE_OPEN = ("warning_needs_response", "warning_under_review", "needs_response", "under_review")
DISPUTE_CLOSED = ("won", "lost", "warning_closed")
DISPUTE_REASONS = ("fraudulent", "product_not_received", "duplicate", "general", "credit_not_processed")
BILLING_ADDRESS_COLLECTION = ("auto", "required")
DEFAULT_CUSTOMER_COUNTRY = "DE"
_ALPHANUMERIC = string.ascii_letters + string.digits


class StripeError(Exception):
    """An API failure, rendered as Stripe's {"error": {...}} body."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 type: str = "invalid_request_error", code: str | None = None, validation: bool = False):
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type, code
        # A malformed request never starts executing, so Stripe saves nothing under its idempotency
        # key; any other refusal is saved, and replayed for the key, like a success.
        self.validation = validation

    def body(self) -> dict:
        error = {"type": self.type, "message": self.message}
        if self.param:
            error["param"] = self.param
        if self.code:
            error["code"] = self.code
        return {"error": error}


def error_body(status: int, message: str) -> dict:
    """Body for failures outside a handler (unknown URL, crash), in Stripe's format."""
    kind = "api_error" if status >= 500 else "invalid_request_error"
    return StripeError(status, message, type=kind).body()


# --- wire format -------------------------------------------------------------------------

def decode_form(raw: str) -> dict:
    """Decode Stripe's nested form keys (`a[b][0][c]=v`, `expand[]=x`) into dicts and lists."""
    root: dict = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = root
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):  # a conflicting scalar loses, as a later key would
                node[part] = {}
            node = node[part]
        if parts[-1] == "":
            node.setdefault("", []).append(value)
        else:
            node[parts[-1]] = value
    return _listify(root)


def _listify(node: Any, key: str = "") -> Any:
    """Turn {"0": a, "1": b} into [a, b]; metadata keeps its keys whatever they look like."""
    if not isinstance(node, dict):
        return node
    if set(node) == {""}:
        return list(node[""])
    converted = {k: _listify(v, k) for k, v in node.items()}
    if key != "metadata" and converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def _missing(param: str) -> StripeError:
    return StripeError(400, f"Missing required param: {param}.", param=param, code="parameter_missing",
                       validation=True)


def _integer(value: Any, param: str) -> int:
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise StripeError(400, f"Invalid integer: {value}", param=param, code="parameter_invalid_integer",
                      validation=True)


def _boolean(value: Any, param: str) -> bool:
    if value in ("true", "false"):
        return value == "true"
    raise StripeError(400, f"Invalid boolean: {value}", param=param, validation=True)


def _dict_param(params: dict, name: str) -> dict:
    value = params.get(name) or {}
    if not isinstance(value, dict):
        raise StripeError(400, "Invalid object", param=name, validation=True)
    return value


# --- object builders ---------------------------------------------------------------------

@dataclass
class LineItem:
    unit_amount: int
    quantity: int
    currency: str
    name: str = ""
    tax_behavior: str | None = None  # None: not given (Stripe then uses the account's default)

    def priced(self) -> Line:
        return Line(self.unit_amount * self.quantity, self.tax_behavior or "unspecified")


def parse_line_items(params: dict) -> list[LineItem]:
    items = params.get("line_items")
    if not items:
        raise StripeError(400, "line_items is required in payment mode.", param="line_items")
    if not isinstance(items, list):
        raise StripeError(400, "Invalid array", param="line_items")
    return [_parse_line_item(item, f"line_items[{i}]") for i, item in enumerate(items)]


def _parse_line_item(item: Any, where: str) -> LineItem:
    if not isinstance(item, dict):
        raise StripeError(400, "Invalid object", param=where)
    if "price" in item:
        raise StripeError(400, f"No such price: '{item['price']}'", param=f"{where}[price]",
                          code="resource_missing")
    price = item.get("price_data")
    if not isinstance(price, dict):
        raise _missing(f"{where}[price_data]")
    for field in ("currency", "unit_amount"):
        if field not in price:
            raise _missing(f"{where}[price_data][{field}]")
    product = price.get("product_data")
    if not isinstance(product, dict) or not product.get("name"):
        raise _missing(f"{where}[price_data][product_data][name]")
    if "quantity" not in item:
        raise _missing(f"{where}[quantity]")
    unit_amount = _integer(price["unit_amount"], f"{where}[price_data][unit_amount]")
    quantity = _integer(item["quantity"], f"{where}[quantity]")
    if unit_amount < 0:
        raise StripeError(400, "This value must be greater than or equal to 0.",
                          param=f"{where}[price_data][unit_amount]")
    if quantity < 1:
        raise StripeError(400, "This value must be greater than or equal to 1.", param=f"{where}[quantity]")
    currency = str(price["currency"]).lower()
    if not stripe_pricing.accepts_amount(unit_amount, currency):
        raise StripeError(400, f"Invalid amount for {currency.upper()}: in a three-decimal currency the last "
                          "digit must be 0 (round amounts to the nearest ten).",
                          param=f"{where}[price_data][unit_amount]")
    tax_behavior = price.get("tax_behavior")
    if tax_behavior is not None and tax_behavior not in stripe_pricing.TAX_BEHAVIORS:
        raise StripeError(400, f"Invalid {where}[price_data][tax_behavior]: must be one of exclusive, "
                          "inclusive, or unspecified", param=f"{where}[price_data][tax_behavior]", validation=True)
    return LineItem(unit_amount, quantity, currency, str(product["name"]), tax_behavior)


def validate_expires_at(params: dict, now: int) -> int:
    """Stripe's window for `expires_at`, 30 minutes to 24 hours from creation, on Stripe's clock
    (`now`): a client whose clock runs behind, or whose request arrives late, is refused."""
    if "expires_at" not in params:
        return now + MAX_EXPIRY_SECONDS
    expires_at = _integer(params["expires_at"], "expires_at")
    if expires_at < now + MIN_EXPIRY_SECONDS:
        raise StripeError(400, "The `expires_at` timestamp must be at least 30 minutes from "
                          "Checkout Session creation.", param="expires_at")
    if expires_at > now + MAX_EXPIRY_SECONDS:
        raise StripeError(400, "The `expires_at` timestamp must be less than 24 hours from "
                          "Checkout Session creation.", param="expires_at")
    return expires_at


def validate_amount(items: list[LineItem]) -> None:
    amount, currency = sum(item.unit_amount * item.quantity for item in items), items[0].currency
    minimum = MINIMUM_AMOUNTS.get(currency)
    if minimum is not None and amount < minimum:
        raise StripeError(400, f"The Checkout Session's total amount due must add up to at least {minimum} "
                          f"{currency} (minor units).", code="amount_too_small")


@dataclass
class CheckoutOptions:
    """The pricing options of a Checkout Session create request, checked as Stripe checks them."""

    allow_promotion_codes: bool = False
    automatic_tax: bool = False
    invoice_creation: bool = False
    invoice_data: dict | None = None
    billing_address_collection: str | None = None
    adaptive_pricing: bool = False
    discount_ids: dict | None = None  # `discounts[0]`: {"promotion_code": id} or {"coupon": id}


def parse_checkout_options(params: dict) -> CheckoutOptions:
    options = CheckoutOptions()
    if "allow_promotion_codes" in params:
        options.allow_promotion_codes = _boolean(params["allow_promotion_codes"], "allow_promotion_codes")
    discounts = params.get("discounts")
    if discounts:
        if "allow_promotion_codes" in params:
            raise StripeError(400, "You may only specify one of these parameters: allow_promotion_codes, "
                              "discounts.", param="allow_promotion_codes", validation=True)
        if not isinstance(discounts, list) or not isinstance(discounts[0], dict) or len(discounts) > 1:
            raise StripeError(400, "Checkout accepts one discount: discounts[0][coupon] or "
                              "discounts[0][promotion_code].", param="discounts", validation=True)
        options.discount_ids = discounts[0]
    for name in ("automatic_tax", "adaptive_pricing"):
        setting = _dict_param(params, name)
        if "enabled" in setting:
            setattr(options, name, _boolean(setting["enabled"], f"{name}[enabled]"))
        elif setting:
            raise _missing(f"{name}[enabled]")
    invoice = _dict_param(params, "invoice_creation")
    if invoice:
        if "enabled" not in invoice:
            raise _missing("invoice_creation[enabled]")
        options.invoice_creation = _boolean(invoice["enabled"], "invoice_creation[enabled]")
        data = _dict_param(invoice, "invoice_data")
        options.invoice_data = {
            "account_tax_ids": None, "custom_fields": None, "description": data.get("description") or None,
            "footer": data.get("footer") or None, "issuer": None, "metadata": _dict_param(data, "metadata"),
            "rendering_options": None}
    collection = params.get("billing_address_collection")
    if collection is not None and collection not in BILLING_ADDRESS_COLLECTION:
        raise StripeError(400, "Invalid billing_address_collection: must be one of auto or required",
                          param="billing_address_collection", validation=True)
    options.billing_address_collection = collection
    return options


@dataclass
class CheckoutTerms:
    """What a session is priced from: its line items, and a discount given at creation (`discounts`)."""

    items: list[LineItem]
    discount: PromotionCode | None = None
    by_coupon: bool = False  # given as discounts[0][coupon]: the session names no promotion code


def build_checkout_session(params: dict, items: list[LineItem], options: CheckoutOptions, expires_at: int,
                           url_base: str) -> dict:
    session_id = _new_id("cs_test_", 58)
    amount = sum(item.unit_amount * item.quantity for item in items)
    # Until the customer gives an address, Stripe Tax cannot compute: the total excludes tax.
    automatic_tax = ({"enabled": True, "liability": {"type": "self"}, "provider": "stripe",
                      "status": "requires_location_input"} if options.automatic_tax
                     else {"enabled": False, "liability": None, "provider": None, "status": None})
    invoice_data = options.invoice_data or {
        "account_tax_ids": None, "custom_fields": None, "description": None, "footer": None, "issuer": None,
        "metadata": {}, "rendering_options": None}
    return {
        "id": session_id, "object": "checkout.session",
        "adaptive_pricing": {"enabled": options.adaptive_pricing}, "after_expiration": None,
        "allow_promotion_codes": True if options.allow_promotion_codes else None,
        "amount_subtotal": amount, "amount_total": amount, "automatic_tax": automatic_tax,
        "billing_address_collection": options.billing_address_collection, "cancel_url": params.get("cancel_url"),
        "client_reference_id": params.get("client_reference_id"), "client_secret": None,
        "collected_information": None, "consent": None, "consent_collection": None,
        "created": int(time.time()), "currency": items[0].currency, "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {"after_submit": None, "shipping_address": None, "submit": None,
                        "terms_of_service_acceptance": None},
        "customer": None, "customer_account": None, "customer_creation": "if_required",
        "customer_details": None, "customer_email": params.get("customer_email"),
        "discounts": [], "expires_at": expires_at, "integration_identifier": None,
        "invoice": None, "invoice_creation": {"enabled": options.invoice_creation, "invoice_data": invoice_data},
        "livemode": False, "locale": params.get("locale"), "managed_payments": None,
        "metadata": _dict_param(params, "metadata"), "mode": "payment", "origin_context": None,
        "payment_intent": None, "payment_link": None, "payment_method_collection": "if_required",
        "payment_method_configuration_details": None, "payment_method_options": {},
        "payment_method_types": params.get("payment_method_types") or ["card"],
        "payment_status": "unpaid", "permissions": None, "phone_number_collection": {"enabled": False},
        "recovered_from": None, "saved_payment_method_options": None, "setup_intent": None,
        "shipping_address_collection": None, "shipping_cost": None, "shipping_options": [],
        "status": "open", "submit_type": params.get("submit_type"), "subscription": None,
        "success_url": params.get("success_url"),
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted", "url": f"{url_base}{URL_PREFIX}/checkout/{session_id}",
        "wallet_options": None,
    }


def customer_address(session: dict, country: str) -> dict | None:
    """What Checkout collects: a full billing address when required, the country Stripe Tax needs
    with automatic tax, nothing otherwise."""
    if session["billing_address_collection"] == "required":
        return {"city": "Sandbox City", "country": country, "line1": "1 Sandbox Street", "line2": None,
                "postal_code": "10115", "state": None}
    if session["automatic_tax"]["enabled"]:
        return {"city": None, "country": country, "line1": None, "line2": None, "postal_code": None, "state": None}
    return None


def customer_details(session: dict, address: dict | None = None) -> dict:
    return {"address": address, "email": session["customer_email"] or "customer@example.com",
            "name": "Sandbox Customer", "phone": None, "tax_exempt": "none", "tax_ids": [],
            "business_name": None, "individual_name": None}


def build_payment_intent(session: dict, metadata: dict, status: str) -> dict:
    intent_id = _new_id("pi_")
    return {
        "id": intent_id, "object": "payment_intent", "amount": session["amount_total"],
        "amount_capturable": 0, "amount_details": {"tip": {}}, "amount_received": 0,
        "application": None, "application_fee_amount": None, "automatic_payment_methods": None,
        "canceled_at": None, "cancellation_reason": None, "capture_method": "automatic_async",
        "client_secret": f"{intent_id}_secret_{_new_id('', 25)}", "confirmation_method": "automatic",
        "created": int(time.time()), "currency": session["currency"], "customer": None,
        "description": None, "last_payment_error": None, "latest_charge": None, "livemode": False,
        "metadata": metadata, "next_action": None, "on_behalf_of": None,
        "payment_method": _new_id("pm_"), "payment_method_configuration_details": None,
        "payment_method_options": {}, "payment_method_types": session["payment_method_types"],
        "processing": None, "receipt_email": session["customer_email"], "review": None,
        "setup_future_usage": None, "shipping": None, "statement_descriptor": None,
        "statement_descriptor_suffix": None, "status": status, "transfer_data": None,
        "transfer_group": None,
    }


def build_charge(intent: dict, email: str | None, prefix: str = "ch_", address: dict | None = None,
                 url_base: str = "") -> dict:
    charge_id = _new_id(prefix)
    return {
        "id": charge_id, "object": "charge", "amount": intent["amount"],
        "amount_captured": intent["amount"], "amount_refunded": 0, "application": None,
        "application_fee": None, "application_fee_amount": None,
        "balance_transaction": _new_id("txn_"),
        "billing_details": {"address": address, "email": email, "name": "Sandbox Customer",
                            "phone": None, "tax_id": None},
        "calculated_statement_descriptor": "SANDBOX", "captured": True, "created": int(time.time()),
        "currency": intent["currency"], "customer": None, "description": None, "disputed": False,
        "failure_balance_transaction": None, "failure_code": None, "failure_message": None,
        "fraud_details": {}, "livemode": False, "metadata": dict(intent["metadata"]),
        "on_behalf_of": None,
        "outcome": {"network_status": "approved_by_network", "reason": None, "risk_level": "normal",
                    "seller_message": "Payment complete.", "type": "authorized"},
        "paid": True, "payment_intent": intent["id"], "payment_method": intent["payment_method"],
        "payment_method_details": {"type": "card", "card": {
            "brand": "visa", "country": "US", "exp_month": 12, "exp_year": 2034,
            "funding": "credit", "last4": "4242", "network": "visa"}},
        "receipt_email": email, "receipt_number": None,
        "receipt_url": f"{url_base}{URL_PREFIX}/receipts/{charge_id}" if url_base else None, "refunded": False,
        "refunds": {"object": "list", "data": [], "has_more": False,
                    "url": f"/v1/charges/{charge_id}/refunds"},
        "review": None, "shipping": None, "source_transfer": None, "statement_descriptor": None,
        "statement_descriptor_suffix": None, "status": "succeeded", "transfer_data": None,
        "transfer_group": None,
    }


def build_invoice(session: dict, items: list[LineItem], number: str, url_base: str) -> dict:
    """The invoice Checkout issues for a paid session (`invoice_creation`), shaped as the API since
    2025-03-31.basil: no `payment_intent` or `charge`; its `payments` list says what paid it."""
    invoice_id = _new_id("in_")
    now, currency = int(time.time()), session["currency"]
    details, data = session["total_details"], session["invoice_creation"]["invoice_data"]
    tax, discount = details["amount_tax"], details["amount_discount"]
    discount_id = "di_" + _new_id("", 24) if discount else None
    excluded = session["amount_total"] - session["amount_subtotal"] + discount  # exclusive tax, added on top
    included = tax - excluded  # inclusive tax, part of the prices
    payments = []
    if session["payment_intent"]:
        payments.append({
            "id": _new_id("inpay_"), "object": "invoice_payment", "amount_paid": session["amount_total"],
            "amount_requested": session["amount_total"], "created": now, "currency": currency,
            "invoice": invoice_id, "is_default": True, "livemode": False,
            "payment": {"type": "payment_intent", "payment_intent": session["payment_intent"]},
            "status": "paid", "status_transitions": {"canceled_at": None, "paid_at": now}})
    lines = [{"id": _new_id("il_"), "object": "line_item", "amount": item.unit_amount * item.quantity,
              "currency": currency, "description": item.name, "invoice": invoice_id, "quantity": item.quantity,
              "pricing": {"type": "price_details", "unit_amount_decimal": str(item.unit_amount)}}
             for item in items]
    return {
        "id": invoice_id, "object": "invoice", "account_country": "DE", "account_name": "Sandbox",
        "amount_due": session["amount_total"], "amount_overpaid": 0, "amount_paid": session["amount_total"],
        "amount_remaining": 0, "amount_shipping": 0, "attempt_count": 0, "attempted": True,
        "auto_advance": False, "automatic_tax": {"enabled": session["automatic_tax"]["enabled"],
                                                 "liability": session["automatic_tax"]["liability"],
                                                 "provider": session["automatic_tax"]["provider"],
                                                 "status": session["automatic_tax"]["status"]},
        "billing_reason": "manual", "collection_method": "charge_automatically", "created": now,
        "currency": currency, "customer": session["customer"],
        "customer_address": (session["customer_details"] or {}).get("address"),
        "customer_email": (session["customer_details"] or {}).get("email"),
        "customer_name": (session["customer_details"] or {}).get("name"),
        "description": data["description"], "discounts": [discount_id] if discount_id else [],
        "footer": data["footer"], "hosted_invoice_url": f"{url_base}{URL_PREFIX}/invoices/{invoice_id}",
        "invoice_pdf": f"{url_base}{URL_PREFIX}/invoices/{invoice_id}/pdf",
        "lines": {"object": "list", "data": lines, "has_more": False, "url": f"/v1/invoices/{invoice_id}/lines"},
        "livemode": False, "metadata": dict(data["metadata"]), "number": number, "parent": None,
        "payments": {"object": "list", "data": payments, "has_more": False,
                     "url": f"/v1/invoice_payments?invoice={invoice_id}"},
        "period_end": now, "period_start": now, "receipt_number": None, "status": "paid",
        "status_transitions": {"finalized_at": now, "marked_uncollectible_at": None, "paid_at": now,
                               "voided_at": None},
        "subtotal": session["amount_subtotal"], "subtotal_excluding_tax": session["amount_subtotal"] - included,
        "total": session["amount_total"],
        "total_discount_amounts": [{"amount": discount, "discount": discount_id}] if discount_id else [],
        "total_excluding_tax": session["amount_total"] - tax,
        "total_taxes": [{"amount": tax, "tax_behavior": "inclusive" if included else "exclusive",
                         "tax_rate_details": None, "taxability_reason": "standard_rated",
                         "taxable_amount": session["amount_subtotal"] - discount - included,
                         "type": "tax_rate_details"}] if session["automatic_tax"]["enabled"] else [],
    }


def build_refund(charge: dict, amount: int, params: dict, prefix: str = "re_") -> dict:
    return {
        "id": _new_id(prefix), "object": "refund", "amount": amount,
        "balance_transaction": _new_id("txn_"), "charge": charge["id"], "created": int(time.time()),
        "currency": charge["currency"], "customer": None, "customer_account": None,
        "destination_details": {"card": {"reference_status": "pending", "reference_type":
                                         "acquirer_reference_number", "type": "refund"},
                                "type": "card"},
        "metadata": _dict_param(params, "metadata"), "payment_intent": charge["payment_intent"],
        "payment_method": charge["payment_method"], "reason": params.get("reason"),
        "receipt_number": None, "source_transfer_reversal": None, "status": "succeeded",
        "transfer_reversal": None,
    }


def build_dispute(charge: dict, amount: int, reason: str, status: str) -> dict:
    """A dispute as Stripe's API describes it (docs.stripe.com/api/disputes/object)."""
    evidence_fields = (
        "access_activity_log", "billing_address", "cancellation_policy", "cancellation_policy_disclosure",
        "cancellation_rebuttal", "customer_communication", "customer_email_address", "customer_name",
        "customer_purchase_ip", "customer_signature", "duplicate_charge_documentation",
        "duplicate_charge_explanation", "duplicate_charge_id", "product_description", "receipt", "refund_policy",
        "refund_policy_disclosure", "refund_refusal_explanation", "service_date", "service_documentation",
        "shipping_address", "shipping_carrier", "shipping_date", "shipping_documentation",
        "shipping_tracking_number", "uncategorized_file", "uncategorized_text")
    now = int(time.time())
    return {
        "id": _new_id("du_"), "object": "dispute", "amount": amount, "balance_transactions": [],
        "charge": charge["id"], "created": now, "currency": charge["currency"],
        "evidence": dict.fromkeys(evidence_fields),
        "evidence_details": {"due_by": now + 21 * 86400, "has_evidence": False, "past_due": False,
                             "submission_count": 0},
        "is_charge_refundable": status.startswith("warning_"), "livemode": False, "metadata": {},
        "network_reason_code": None, "payment_intent": charge["payment_intent"],
        "payment_method_details": {"card": {"brand": "visa", "network_reason_code": None}, "type": "card"},
        "reason": reason, "status": status,
    }


def build_event(event_type: str, obj: dict, origin: dict) -> dict:
    return {
        "id": _new_id("evt_"), "object": "event", "api_version": stripe.api_version,
        "created": int(time.time()), "data": {"object": copy.deepcopy(obj)}, "livemode": False,
        "pending_webhooks": 1, "request": dict(origin), "type": event_type,
    }


def list_page(items: list[dict], params: dict, url: str) -> dict:
    """Stripe list envelope with limit / starting_after / ending_before (items newest first)."""
    limit = _integer(params.get("limit", str(DEFAULT_LIST_LIMIT)), "limit")
    if not 1 <= limit <= 100:
        raise StripeError(400, "This value must be between 1 and 100.", param="limit")
    ids = [item["id"] for item in items]
    for cursor in ("starting_after", "ending_before"):
        if cursor in params and params[cursor] not in ids:
            raise StripeError(400, f"No such object: '{params[cursor]}'", param=cursor,
                              code="resource_missing")
    if "starting_after" in params:
        window = items[ids.index(params["starting_after"]) + 1:]
        page, has_more = window[:limit], len(window) > limit
    elif "ending_before" in params:
        window = items[:ids.index(params["ending_before"])]
        page, has_more = window[-limit:], len(window) > limit
    else:
        page, has_more = items[:limit], len(items) > limit
    return {"object": "list", "data": page, "has_more": has_more, "url": url}


# --- webhook endpoints and the balance (what `bookingflow check` reads) ---------------------

WEBHOOK_ENDPOINT_STATUSES = ("enabled", "disabled")


def build_webhook_endpoint(params: dict, livemode: bool) -> dict:
    return {
        "id": _new_id("we_"), "object": "webhook_endpoint",
        # Stripe leaves it null when none is asked for: events then use the account's default version.
        "api_version": params.get("api_version") or None, "application": None,
        "created": int(time.time()), "description": params.get("description") or None,
        "enabled_events": _enabled_events(params), "livemode": livemode,
        "metadata": _dict_param(params, "metadata"), "status": "enabled", "url": _endpoint_url(params),
    }


def _enabled_events(params: dict) -> list[str]:
    events = params.get("enabled_events")
    if not events:
        raise _missing("enabled_events")
    if not isinstance(events, list) or not all(isinstance(e, str) and (e == "*" or "." in e) for e in events):
        raise StripeError(400, "Invalid enabled_events: each must be '*' or an event type.",
                          param="enabled_events")
    return list(dict.fromkeys(events))


def _endpoint_url(params: dict) -> str:
    url = params.get("url")
    if not url:
        raise _missing("url")
    if not str(url).startswith(("http://", "https://")):
        raise StripeError(400, "Invalid URL: URL must be publicly accessible.", param="url",
                          code="url_invalid")
    return str(url)


class WebhookEndpoints:
    """Stripe's /v1/webhook_endpoints (list, create, retrieve, update, delete) and /v1/balance.
    The endpoints are records that `bookingflow check` reads; deliveries still go where the
    sandbox's config says."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._webhook_endpoints: dict[str, dict] = {}  # id -> endpoint, in creation order

    def setup_routes(self) -> list[tuple[str, str, Callable[..., dict]]]:
        return [
            ("GET", "/v1/webhook_endpoints", self.list_webhook_endpoints),
            ("POST", "/v1/webhook_endpoints", self.create_webhook_endpoint),
            ("GET", "/v1/webhook_endpoints/<object_id>", self.retrieve_webhook_endpoint),
            ("POST", "/v1/webhook_endpoints/<object_id>", self.update_webhook_endpoint),
            ("DELETE", "/v1/webhook_endpoints/<object_id>", self.delete_webhook_endpoint),
            ("GET", "/v1/balance", self.retrieve_balance),
        ]

    def _livemode(self) -> bool:
        return "_live_" in self._config().stripe_secret_key

    def _endpoint(self, object_id: str) -> dict:
        found = self._webhook_endpoints.get(object_id)
        if found is None:
            raise StripeError(404, f"No such webhook endpoint: '{object_id}'", param="id",
                              code="resource_missing")
        return found

    def list_webhook_endpoints(self, params: dict) -> dict:
        return list_page(list(reversed(self._webhook_endpoints.values())), params, "/v1/webhook_endpoints")

    def create_webhook_endpoint(self, params: dict) -> dict:
        endpoint = build_webhook_endpoint(params, self._livemode())
        self._webhook_endpoints[endpoint["id"]] = endpoint
        # The signing secret is only ever shown in the answer to the creation.
        return {**endpoint, "secret": "whsec_" + _new_id("", 32)}

    def retrieve_webhook_endpoint(self, params: dict, object_id: str) -> dict:
        return self._endpoint(object_id)

    def update_webhook_endpoint(self, params: dict, object_id: str) -> dict:
        endpoint = self._endpoint(object_id)
        changes: dict = {}
        if "url" in params:
            changes["url"] = _endpoint_url(params)
        if "enabled_events" in params:
            changes["enabled_events"] = _enabled_events(params)
        if "description" in params:
            changes["description"] = params["description"] or None
        if "disabled" in params:
            if params["disabled"] not in ("true", "false"):
                raise StripeError(400, "Invalid boolean: " + str(params["disabled"]), param="disabled")
            changes["status"] = "disabled" if params["disabled"] == "true" else "enabled"
        endpoint.update(changes)
        return endpoint

    def delete_webhook_endpoint(self, params: dict, object_id: str) -> dict:
        self._endpoint(object_id)
        del self._webhook_endpoints[object_id]
        return {"id": object_id, "object": "webhook_endpoint", "deleted": True}

    def retrieve_balance(self, params: dict) -> dict:
        funds = [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}]
        return {"object": "balance", "available": funds, "pending": copy.deepcopy(funds),
                "livemode": self._livemode()}

    # for tests and `bookingflow dev`

    def webhook_endpoints(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(list(self._webhook_endpoints.values()))

    def register_webhook_endpoint(self, url: str, events: list[str], api_version: str | None) -> dict:
        """What an operator does in the Dashboard (Developers, Webhooks)."""
        with self._lock:
            return self.create_webhook_endpoint({"url": url, "enabled_events": list(events),
                                                 "api_version": api_version or ""})

    def update_webhook_endpoint_record(self, endpoint_id: str, **changes: Any) -> dict:
        """Change an endpoint as the Dashboard could (status, enabled_events, url, api_version)."""
        with self._lock:
            self._endpoint(endpoint_id).update(changes)
            return copy.deepcopy(self._webhook_endpoints[endpoint_id])

    def clear_webhook_endpoints(self) -> None:
        with self._lock:
            self._webhook_endpoints.clear()


# --- the fake ----------------------------------------------------------------------------

class StripeFake(WebhookEndpoints, FakeProvider):
    """State and HTTP handlers of the Stripe fake. One lock serializes every request, which is
    also what makes concurrent requests with one idempotency key create a single object."""

    def __init__(self, config_source: Callable[[], Any], sender: WebhookSender,
                 public_base: Callable[[], str]):
        super().__init__(config_source, sender, public_base)
        self._objects: dict[str, dict] = {}  # id -> object, in creation order
        self._intent_metadata: dict[str, dict] = {}  # session id -> metadata for its PaymentIntent
        self._terms: dict[str, CheckoutTerms] = {}  # session id -> its line items and discount
        self._promotion_codes: dict[str, PromotionCode] = stripe_pricing.default_promotion_codes()
        self._tax_basis_points = 0  # Stripe Tax's rate for the customer's address
        self._customer_country = DEFAULT_CUSTOMER_COUNTRY
        self._invoice_count = 0
        # key -> method, path, params, status, body: the first answer, success or refusal
        self._idempotent: dict[str, tuple[str, str, dict, int, str]] = {}
        self._requests: list[dict] = []
        self._clock_offset = 0  # seconds Stripe's clock runs ahead of this machine's
        self._refusals: dict[str, list[StripeError]] = {}  # API path -> refusals for its next requests
        self._origin = {"id": None, "idempotency_key": None}  # the API request causing new events

    # inspection

    def api_requests(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._requests)

    def now(self) -> int:
        """Stripe's clock, which need not agree with ours."""
        return int(time.time()) + self._clock_offset

    def set_clock_offset(self, seconds: int) -> None:
        with self._lock:
            self._clock_offset = int(seconds)

    def refuse_next(self, path: str, status: int = 402, code: str = "card_declined", times: int = 1) -> None:
        """The next `times` requests to the API `path` (e.g. "/v1/refunds") are refused, as Stripe
        refuses a request it executed: the refusal is saved under the request's idempotency key."""
        error_type = {402: "card_error"}.get(status, "api_error" if status >= 500 else "invalid_request_error")
        refusal = StripeError(status, f"The sandbox refused this request ({code}).", type=error_type, code=code)
        with self._lock:
            self._refusals.setdefault(path, []).extend([refusal] * times)

    def reset_controls(self) -> None:
        """Stripe's clock agrees with ours again, no refusal is left waiting, the promotion codes are
        the default ones and tax is 0% for a customer in DE."""
        with self._lock:
            self._clock_offset = 0
            self._refusals.clear()
            self._promotion_codes = stripe_pricing.default_promotion_codes()
            self._tax_basis_points, self._customer_country = 0, DEFAULT_CUSTOMER_COUNTRY

    def add_promotion_code(self, code: str, *, percent_off: float | None = None, amount_off: int | None = None,
                           currency: str | None = None) -> dict:
        """A promotion code customers can enter (replacing one of the same code): `percent_off`
        (0 < p <= 100) or `amount_off` minor units, in `currency` or (None) in any. Raises ValueError."""
        promotion = stripe_pricing.promotion_code(code, percent_off=percent_off, amount_off=amount_off,
                                                  currency=currency)
        with self._lock:
            self._promotion_codes[promotion.code.upper()] = promotion
        return promotion.as_json()

    def promotion_codes(self) -> list[dict]:
        with self._lock:
            return [code.as_json() for code in self._promotion_codes.values()]

    def set_tax_rate(self, basis_points: int, country: str | None = None) -> None:
        """The rate Stripe Tax applies (basis points: 1900 is 19%), and the country of the address
        customers give at Checkout (default DE)."""
        if not 0 <= int(basis_points) <= stripe_pricing.BASIS_POINTS:
            raise ValueError("basis_points must be between 0 and 10000")
        with self._lock:
            self._tax_basis_points = int(basis_points)
            if country:
                self._customer_country = country.upper()

    def objects(self, kind: str) -> list[dict]:
        if kind not in KINDS:
            raise ValueError(f"unknown Stripe object kind {kind!r}; expected one of {KINDS}")
        with self._lock:
            return [copy.deepcopy(o) for o in self._objects.values() if o["object"] == kind]

    # what `bookingflow dev` keeps across restarts (sandbox/persistence.py)

    def export_state(self) -> dict:
        """The objects and what prices them, as JSON-ready data. Webhook endpoints are left out: they
        are set up again at each start, as an operator's Dashboard would still have them."""
        with self._lock:
            return copy.deepcopy({
                "objects": list(self._objects.values()), "intent_metadata": self._intent_metadata,
                "terms": {sid: asdict(terms) for sid, terms in self._terms.items()},
                "promotion_codes": [asdict(code) for code in self._promotion_codes.values()],
                "tax_basis_points": self._tax_basis_points, "customer_country": self._customer_country,
                "invoice_count": self._invoice_count, "clock_offset": self._clock_offset,
                "idempotent": {key: list(answer) for key, answer in self._idempotent.items()},
            })

    def import_state(self, state: dict) -> None:
        """The reverse of export_state, over whatever this fake held."""
        def terms(raw: dict) -> CheckoutTerms:
            discount = PromotionCode(**raw["discount"]) if raw.get("discount") else None
            return CheckoutTerms([LineItem(**item) for item in raw["items"]], discount, raw.get("by_coupon", False))

        with self._lock:
            self._objects = {obj["id"]: obj for obj in copy.deepcopy(state.get("objects", []))}
            self._intent_metadata = copy.deepcopy(state.get("intent_metadata", {}))
            self._terms = {sid: terms(raw) for sid, raw in state.get("terms", {}).items()}
            codes = [PromotionCode(**raw) for raw in state.get("promotion_codes", [])]
            self._promotion_codes = {c.code.upper(): c for c in codes} or stripe_pricing.default_promotion_codes()
            self._tax_basis_points = int(state.get("tax_basis_points", 0))
            self._customer_country = state.get("customer_country", DEFAULT_CUSTOMER_COUNTRY)
            self._invoice_count = int(state.get("invoice_count", 0))
            self._clock_offset = int(state.get("clock_offset", 0))
            self._idempotent = {key: tuple(answer) for key, answer in state.get("idempotent", {}).items()}

    # routing

    def blueprint(self) -> Blueprint:
        bp = Blueprint("stripe_fake", __name__, url_prefix=URL_PREFIX)
        api = [
            ("POST", "/v1/checkout/sessions", self.create_checkout_session),
            ("GET", "/v1/checkout/sessions/<object_id>", self.retrieve("checkout.session")),
            ("POST", "/v1/checkout/sessions/<object_id>/expire", self.expire_checkout_session),
            ("GET", "/v1/payment_intents/<object_id>", self.retrieve("payment_intent")),
            ("GET", "/v1/charges/<object_id>", self.retrieve("charge")),
            ("POST", "/v1/refunds", self.create_refund),
            ("GET", "/v1/refunds", self.list_refunds),
            ("GET", "/v1/refunds/<object_id>", self.retrieve("refund")),
            ("GET", "/v1/disputes", self.list_disputes),
            ("GET", "/v1/disputes/<object_id>", self.retrieve("dispute")),
            ("GET", "/v1/events", self.list_events),
            ("GET", "/v1/events/<object_id>", self.retrieve("event")),
            ("GET", "/v1/invoices/<object_id>", self.retrieve("invoice")),
        ]
        api += self.setup_routes()
        for method, rule, handler in api:
            name = f"{method.lower()}_{rule}".replace("/", "_").replace("<", "").replace(">", "")
            bp.add_url_rule(rule, name, self._api_view(handler), methods=[method])
        bp.add_url_rule("/checkout/<session_id>", "checkout_page", self.checkout_page, methods=["GET"])
        bp.add_url_rule("/checkout/<session_id>/pay", "pay", self.pay, methods=["POST"])
        bp.add_url_rule("/checkout/<session_id>/settle", "settle", self.settle, methods=["POST"])
        bp.add_url_rule("/checkout/<session_id>/expire", "expire", self.expire, methods=["POST"])
        bp.add_url_rule("/refunds/<refund_id>/settle", "settle_refund", self.settle_refund, methods=["POST"])
        self._add_list_routes(bp)
        bp.add_url_rule("/_sandbox/clock", "clock", self.clock_action, methods=["POST"])
        bp.add_url_rule("/_sandbox/refuse", "refuse", self.refuse_action, methods=["POST"])
        bp.add_url_rule("/_sandbox/tax", "tax", self.tax_action, methods=["POST"])
        bp.add_url_rule("/_sandbox/promotion_codes", "promotion_codes", self.promotion_code_action,
                        methods=["GET", "POST"])
        bp.add_url_rule("/receipts/<charge_id>", "receipt", self.receipt_page, methods=["GET"])
        bp.add_url_rule("/invoices/<invoice_id>", "hosted_invoice", self.invoice_page, methods=["GET"])
        bp.add_url_rule("/invoices/<invoice_id>/pdf", "invoice_pdf", self.invoice_page, methods=["GET"],
                        defaults={"printable": True})
        bp.add_url_rule("/payment_intents/<intent_id>/dashboard_refund", "dashboard_refund", self.dashboard_refund,
                        methods=["POST"])
        bp.add_url_rule("/charges/<charge_id>/dispute", "open_dispute", self.open_dispute, methods=["POST"])
        bp.add_url_rule("/disputes/<dispute_id>/close", "close_dispute", self.close_dispute, methods=["POST"])
        return bp

    def _api_view(self, handler: Callable[..., dict]) -> Callable[..., Response]:
        def view(**route_args: str) -> Response:
            return self._serve(handler, route_args)
        return view

    def _serve(self, handler: Callable[..., dict], route_args: dict) -> Response:
        is_post = request.method == "POST"
        raw = request.get_data(as_text=True) if is_post else request.query_string.decode()
        params = decode_form(raw)
        key = request.headers.get("Idempotency-Key") if is_post else None
        path = request.path.removeprefix(URL_PREFIX)
        request_id = _new_id("req_", 14)
        with self._lock:
            status, body, replayed = self._respond(handler, route_args, params, key, path, request_id)
            self._requests.append({"method": request.method, "path": path, "idempotency_key": key,
                                   "params": params, "status": status,
                                   "stripe_version": request.headers.get("Stripe-Version")})
        response = Response(body, status, mimetype="application/json")
        response.headers["Request-Id"] = request_id
        if key:
            response.headers["Idempotency-Key"] = key
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return response

    def _respond(self, handler, route_args, params, key, path, request_id) -> tuple[int, str, bool]:
        """(status, body, replayed) of one API request; caller holds the lock."""
        try:
            self._authenticate()
            if key and key in self._idempotent:
                return *self._replay(key, path, params), True
            self._expire_overdue_sessions()
            self._origin = {"id": request_id, "idempotency_key": key}
            try:
                refusals = self._refusals.get(path) if request.method == "POST" else None
                if refusals:
                    raise refusals.pop(0)
                result = handler(params, **route_args)
            finally:
                self._origin = {"id": None, "idempotency_key": None}
            status, body = 200, json.dumps(self._expand(result, params.get("expand") or []))
        except StripeError as exc:
            status, body = exc.status, json.dumps(exc.body())
            if exc.validation or exc.status in (401, 403):
                return status, body, False  # never executed: nothing saved under the key
        if key:  # like Stripe: the first answer of a request that executed, a refusal included
            self._idempotent[key] = (request.method, path, params, status, body)
        return status, body, False

    def _authenticate(self) -> None:
        auth = request.authorization
        supplied = (auth.token or auth.username) if auth else None
        if not supplied:
            raise StripeError(401, "You did not provide an API key. You need to provide your API key "
                              "in the Authorization header, using Bearer auth (e.g. 'Authorization: "
                              "Bearer YOUR_SECRET_KEY').")
        if not secrets.compare_digest(supplied, self._config().stripe_secret_key):
            raise StripeError(401, f"Invalid API Key provided: {supplied[:8]}****{supplied[-4:]}")

    def _replay(self, key: str, path: str, params: dict) -> tuple[int, str]:
        method, first_path, first_params, status, body = self._idempotent[key]
        if (method, first_path) != (request.method, path):
            raise StripeError(400, "Keys for idempotent requests can only be used for the same "
                              f"endpoint they were first used for ('{first_path}' vs '{path}'). "
                              f"Try using a key other than '{key}' if you meant to execute a "
                              "different request.", type="idempotency_error")
        if first_params != params:
            raise StripeError(400, "Keys for idempotent requests can only be used with the same "
                              f"parameters they were first used with. Try using a key other than "
                              f"'{key}' if you meant to execute a different request.",
                              type="idempotency_error")
        return status, body

    # storage helpers (lock held)

    def _get(self, kind: str, object_id: str) -> dict:
        found = self._objects.get(object_id)
        if found is None or found["object"] != kind:
            raise StripeError(404, f"No such {kind}: '{object_id}'", param=MISSING_PARAM[kind],
                              code="resource_missing")
        return found

    def _store(self, obj: dict) -> dict:
        self._objects[obj["id"]] = obj
        return obj

    def _emit(self, event_type: str, obj: dict) -> None:
        event = self._store(build_event(event_type, obj, self._origin))
        self._sender.enqueue("stripe", event_type, event["id"], event)

    def _expand(self, obj: dict, paths: list[str]) -> dict:
        result = copy.deepcopy(obj)
        for path in paths:
            self._expand_path(result, path.split("."))
        return result

    def _expand_path(self, node: dict, parts: list[str]) -> None:
        head, rest = parts[0], parts[1:]
        if node.get("object") == "list" and head == "data":
            for item in node["data"]:
                if rest:
                    self._expand_path(item, rest)
            return
        if head not in node:
            raise StripeError(400, f"This property cannot be expanded ({head}).", param="expand")
        value = node[head]
        if isinstance(value, str) and value in self._objects:
            node[head] = value = copy.deepcopy(self._objects[value])
        if rest and isinstance(value, dict):
            self._expand_path(value, rest)

    def _expire_overdue_sessions(self) -> None:
        """Stripe expires open sessions on its own once expires_at passes."""
        now = self.now()
        for obj in list(self._objects.values()):
            if obj["object"] == "checkout.session" and obj["status"] == "open" and obj["expires_at"] <= now:
                self._expire(obj)

    def _expire(self, session: dict) -> None:
        session.update(status="expired", url=None)
        self._emit("checkout.session.expired", session)

    # API handlers (lock held; return the response object or raise StripeError)

    def retrieve(self, kind: str) -> Callable[..., dict]:
        def handler(params: dict, object_id: str) -> dict:
            return self._get(kind, object_id)
        return handler

    def create_checkout_session(self, params: dict) -> dict:
        mode = params.get("mode")
        if not mode:
            raise _missing("mode")
        if mode != "payment":
            raise StripeError(400, f"The sandbox supports only mode=payment (got {mode!r}).", param="mode")
        if not params.get("success_url"):
            raise _missing("success_url")
        options = parse_checkout_options(params)
        items = parse_line_items(params)
        if len({item.currency for item in items}) > 1:
            raise StripeError(400, "All line items must use the same currency.", param="line_items")
        validate_amount(items)
        expires_at = validate_expires_at(params, self.now())
        terms = CheckoutTerms(items, self._discount_given(options.discount_ids, items[0].currency),
                              by_coupon=bool(options.discount_ids and not options.discount_ids.get("promotion_code")))
        session = build_checkout_session(params, items, options, expires_at, self._public_base())
        if terms.discount is not None:
            self._apply_totals(session, self._totals(session, terms, terms.discount, with_tax=False),
                               terms.discount, terms.by_coupon)
        intent_data = _dict_param(params, "payment_intent_data")
        self._intent_metadata[session["id"]] = {**session["metadata"], **_dict_param(intent_data, "metadata")}
        self._terms[session["id"]] = terms
        return self._store(session)

    def _discount_given(self, ids: dict | None, currency: str) -> PromotionCode | None:
        """`discounts[0][promotion_code]` (a promo_ id) or `discounts[0][coupon]`, of a code the sandbox knows."""
        if not ids:
            return None
        for field, attribute in (("promotion_code", "id"), ("coupon", "coupon")):
            if ids.get(field):
                found = next((c for c in self._promotion_codes.values() if getattr(c, attribute) == ids[field]), None)
                if found is None or not found.applies_to(currency):
                    kind = field.replace("_", " ")
                    raise StripeError(400, f"No such {kind}: '{ids[field]}'", param=f"discounts[0][{field}]",
                                      code="resource_missing")
                return found
        raise StripeError(400, "Each discount needs a coupon or a promotion_code.", param="discounts[0]",
                          validation=True)

    def expire_checkout_session(self, params: dict, object_id: str) -> dict:
        session = self._get("checkout.session", object_id)
        if session["status"] != "open":
            raise StripeError(400, 'Only Checkout Sessions with a status in ["open"] can be expired.',
                              param="session")
        self._expire(session)
        return session

    def create_refund(self, params: dict) -> dict:
        charge = self._refundable_charge(params)
        dispute = self._dispute_of(charge["id"])
        if dispute is not None and not dispute["is_charge_refundable"]:
            raise StripeError(400, f"Charge {charge['id']} has been charged back; cannot issue a refund.",
                              code="charge_disputed")
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            raise StripeError(400, f"Charge {charge['id']} has already been refunded.",
                              code="charge_already_refunded")
        amount = _integer(params["amount"], "amount") if "amount" in params else remaining
        if amount <= 0:
            raise StripeError(400, "Refund amount must be positive.", param="amount")
        if amount > remaining:
            raise StripeError(400, f"Refund amount ({amount}) is greater than unrefunded amount on "
                              f"charge ({remaining})", param="amount", code="amount_too_large")
        if not stripe_pricing.accepts_amount(amount, charge["currency"]):
            raise StripeError(400, f"Invalid amount for {charge['currency'].upper()}: in a three-decimal "
                              "currency the last digit must be 0.", param="amount")
        if params.get("reason") not in (None, *REFUND_REASONS):
            raise StripeError(400, f"Invalid reason: must be one of {', '.join(REFUND_REASONS)}",
                              param="reason")
        refund = self._store(build_refund(charge, amount, params, "pyr_" if charge["id"].startswith("py_") else "re_"))
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        # Most card refunds succeed at once; some stay pending and settle later (refund.updated),
        # or fail (refund.failed) and give the money back to the balance.
        refund["status"] = getattr(self._config(), "refund_status", "succeeded")
        charge["refunds"]["data"].insert(0, copy.deepcopy(refund))
        self._emit("refund.created", refund)
        self._emit("charge.refunded", charge)
        return refund

    def settle_refund(self, refund_id: str) -> Response:
        outcome = _action_params().get("outcome")
        try:
            with self._lock:
                refund = self._get("refund", refund_id)
                # Pending, or a status the sandbox was told to invent (SandboxConfig.refund_status).
                if outcome not in ("succeeded", "failed") or refund["status"] in ("succeeded", "failed", "canceled"):
                    raise StripeError(400, "Only a pending refund settles, as succeeded or failed.", param="outcome")
                refund["status"] = outcome
                if outcome == "failed":
                    refund["failure_reason"] = "expired_or_canceled_card"
                    charge = self._get("charge", refund["charge"])
                    charge["amount_refunded"] -= refund["amount"]
                    charge["refunded"] = False
                    self._emit("refund.failed", refund)
                self._emit("refund.updated", refund)
                refund = copy.deepcopy(refund)
        except StripeError as exc:
            return Response(json.dumps(exc.body()), exc.status, mimetype="application/json")
        return Response(json.dumps(refund), mimetype="application/json")

    def list_refunds(self, params: dict) -> dict:
        return self._listed("refund", "/v1/refunds", ("payment_intent", "charge"), params)

    def list_disputes(self, params: dict) -> dict:
        return self._listed("dispute", "/v1/disputes", ("payment_intent", "charge"), params)

    def _dispute_of(self, charge_id: str) -> dict | None:
        return next((o for o in reversed(self._objects.values())
                     if o["object"] == "dispute" and o["charge"] == charge_id), None)

    # simulator actions for money moved outside bookingflow (not part of Stripe's API)

    def dashboard_refund(self, intent_id: str) -> Response:
        """A refund made in the Stripe Dashboard (or by any other API user): no metadata of ours, no
        idempotency key; `amount` omitted refunds what remains."""
        action = _action_params()
        params = {"payment_intent": intent_id, "reason": "requested_by_customer"}
        if "amount" in action:
            params["amount"] = str(action["amount"])
        return self._simulate(lambda: self.create_refund(params))

    def open_dispute(self, charge_id: str) -> Response:
        """The cardholder disputes a charge: `status` (default needs_response, a chargeback; a
        warning_* status is an inquiry), `amount` (default the whole charge), `reason`."""
        action = _action_params()

        def run() -> dict:
            charge = self._get("charge", charge_id)
            status = str(action.get("status") or "needs_response")
            if status not in DISPUTE_OPEN:
                raise StripeError(400, f"status must be one of {', '.join(DISPUTE_OPEN)}.", param="status")
            reason = str(action.get("reason") or "fraudulent")
            if reason not in DISPUTE_REASONS:
                raise StripeError(400, f"reason must be one of {', '.join(DISPUTE_REASONS)}.", param="reason")
            amount = _integer(str(action.get("amount", charge["amount"])), "amount")
            if not 0 < amount <= charge["amount"]:
                raise StripeError(400, "amount must be positive and at most the charge's.", param="amount")
            if self._dispute_of(charge_id) is not None:
                raise StripeError(400, f"Charge {charge_id} is already disputed.", param="charge")
            dispute = self._store(build_dispute(charge, amount, reason, status))
            charge["disputed"] = True
            self._emit("charge.dispute.created", dispute)
            if not status.startswith("warning_"):  # a chargeback takes the money at once
                dispute["balance_transactions"].append(_new_id("txn_"))
                self._emit("charge.dispute.funds_withdrawn", dispute)
            return dispute
        return self._simulate(run)

    def close_dispute(self, dispute_id: str) -> Response:
        """The card network decides: `outcome` won (the money comes back) or lost (it stays with the
        cardholder); `under_review` moves an open dispute on without closing it."""
        outcome = _action_params().get("outcome")

        def run() -> dict:
            dispute = self._get("dispute", dispute_id)
            if outcome not in ("won", "lost", "under_review"):
                raise StripeError(400, "outcome must be one of won, lost, under_review.", param="outcome")
            if dispute["status"] in DISPUTE_CLOSED:
                raise StripeError(400, f"Dispute {dispute_id} is already closed ({dispute['status']}).",
                                  param="dispute")
            if outcome == "under_review":
                dispute.update(status="under_review" if not dispute["status"].startswith("warning_")
                               else "warning_under_review")
                self._emit("charge.dispute.updated", dispute)
                return dispute
            inquiry = dispute["status"].startswith("warning_")
            dispute.update(status="warning_closed" if inquiry and outcome == "won" else outcome,
                           is_charge_refundable=outcome == "won")
            if outcome == "won" and not inquiry:
                dispute["balance_transactions"].append(_new_id("txn_"))
                self._emit("charge.dispute.funds_reinstated", dispute)
            self._emit("charge.dispute.closed", dispute)
            return dispute
        return self._simulate(run)

    def _simulate(self, action: Callable[[], dict]) -> Response:
        try:
            with self._lock:
                result = copy.deepcopy(action())
        except StripeError as exc:
            return Response(json.dumps(exc.body()), exc.status, mimetype="application/json")
        return Response(json.dumps(result), mimetype="application/json")

    def _refundable_charge(self, params: dict) -> dict:
        if params.get("charge"):
            return self._get("charge", params["charge"])
        if not params.get("payment_intent"):
            raise StripeError(400, "One of the following params should be provided for this "
                              "request: payment_intent or charge.", param="payment_intent")
        intent = self._get("payment_intent", params["payment_intent"])
        if intent["status"] != "succeeded" or not intent["latest_charge"]:
            raise StripeError(400, f"This PaymentIntent ({intent['id']}) does not have a successful "
                              "charge to refund.", param="payment_intent")
        return self._get("charge", intent["latest_charge"])

    def list_events(self, params: dict) -> dict:
        wanted = params.get("type")
        events = [o for o in reversed(self._objects.values()) if o["object"] == "event"
                  and (wanted is None or _type_matches(o["type"], wanted))]
        return list_page(events, params, "/v1/events")

    # controls of the sandbox itself (not part of Stripe's API), for tests driving real processes

    def clock_action(self) -> Response:
        self.set_clock_offset(int(_action_params().get("offset_seconds", 0)))
        return Response(json.dumps({"offset_seconds": self._clock_offset}), mimetype="application/json")

    def refuse_action(self) -> Response:
        action = _action_params()
        self.refuse_next(str(action.get("path", "/v1/refunds")), int(action.get("status", 402)),
                         str(action.get("code", "card_declined")), int(action.get("times", 1)))
        return Response(json.dumps({"refusing": action.get("path", "/v1/refunds")}), mimetype="application/json")

    def tax_action(self) -> Response:
        action = _action_params()
        try:
            self.set_tax_rate(int(action.get("basis_points", 0)), action.get("country"))
        except (TypeError, ValueError) as exc:
            return _control_refused(str(exc))
        return Response(json.dumps({"basis_points": self._tax_basis_points, "country": self._customer_country}),
                        mimetype="application/json")

    def promotion_code_action(self) -> Response:
        if request.method == "GET":
            return Response(json.dumps({"object": "list", "data": self.promotion_codes()}), mimetype="application/json")
        action = _action_params()
        try:
            added = self.add_promotion_code(str(action.get("code", "")), percent_off=action.get("percent_off"),
                                            amount_off=action.get("amount_off"), currency=action.get("currency"))
        except (TypeError, ValueError) as exc:
            return _control_refused(str(exc))
        return Response(json.dumps(added), mimetype="application/json")

    # customer simulator (not part of Stripe's API)

    def checkout_page(self, session_id: str) -> Response:
        code = request.args.get("promotion_code", "").strip()
        with self._lock:
            self._expire_overdue_sessions()
            view = self._checkout_view(session_id, code)
        if view is None:
            return Response("<h1>Checkout session not found</h1>", 404, mimetype="text/html")
        view.declined = request.args.get("declined") == "1"
        return Response(stripe_pages.checkout_html(view), mimetype="text/html")

    def _checkout_view(self, session_id: str, code: str, error: str | None = None) -> stripe_pages.CheckoutView | None:
        """The page's figures with the code entered applied, or the code's refusal (lock held)."""
        session = self._objects.get(session_id)
        if session is None or session["object"] != "checkout.session":
            return None
        terms = self._terms_of(session)
        promotion = terms.discount
        if code:
            try:
                promotion = self._promotion(session, code)
                self._check_minimum(session, self._totals(session, terms, promotion))
            except StripeError as exc:
                promotion, error = terms.discount, error or exc.message
        taxed = session["automatic_tax"]["enabled"]
        return stripe_pages.CheckoutView(
            copy.deepcopy(session), self._totals(session, terms, promotion),
            self._tax_basis_points if taxed else None,
            all(item.tax_behavior == "inclusive" for item in terms.items), code,
            url_for(".pay", session_id=session_id), url_for(".checkout_page", session_id=session_id),
            url_for(".expire", session_id=session_id), error)

    def pay(self, session_id: str) -> Response:
        """The customer pays: `outcome` paid, failed or delayed, and an optional `promotion_code`."""
        action = _action_params()
        via_page, code = action.get("via") == "page", str(action.get("promotion_code") or "").strip()
        try:
            with self._lock:
                self._expire_overdue_sessions()
                session = copy.deepcopy(self._pay(session_id, action.get("outcome"), code))
        except StripeError as exc:
            if via_page:
                with self._lock:
                    view = self._checkout_view(session_id, code, exc.message)
                if view is not None:
                    return Response(stripe_pages.checkout_html(view), exc.status, mimetype="text/html")
            return Response(json.dumps(exc.body()), exc.status, mimetype="application/json")
        if via_page:
            return _page_redirect(session, code)
        return Response(json.dumps(session), mimetype="application/json")

    def settle(self, session_id: str) -> Response:
        outcome = _action_params().get("outcome")
        try:
            with self._lock:
                session = copy.deepcopy(self._settle(session_id, outcome))
        except StripeError as exc:
            return Response(json.dumps(exc.body()), exc.status, mimetype="application/json")
        return Response(json.dumps(session), mimetype="application/json")

    def expire(self, session_id: str) -> Response:
        """Time passes until the session's `expires_at`: what Stripe then does on its own (no API key,
        unlike POST /v1/checkout/sessions/<id>/expire, which the merchant calls)."""
        via_page = _action_params().get("via") == "page"
        try:
            with self._lock:
                session = copy.deepcopy(self.expire_checkout_session({}, session_id))
        except StripeError as exc:
            return Response(json.dumps(exc.body()), exc.status, mimetype="application/json")
        if via_page:
            return redirect(url_for(".checkout_page", session_id=session_id), 303)
        return Response(json.dumps(session), mimetype="application/json")

    def _pay(self, session_id: str, outcome: str | None, code: str = "") -> dict:
        session = self._get("checkout.session", session_id)
        if outcome not in ("paid", "failed", "delayed"):
            raise StripeError(400, "outcome must be one of paid, failed, delayed.", param="outcome")
        if session["status"] != "open":
            raise StripeError(400, f"This Checkout Session is no longer open (status: "
                              f"{session['status']}).", param="session")
        terms = self._terms_of(session)
        promotion = self._promotion(session, code) if code else terms.discount
        totals = self._totals(session, terms, promotion)
        self._check_minimum(session, totals)
        if outcome == "failed":  # a declined card leaves the session open for another try
            return session
        self._apply_totals(session, totals, promotion, by_coupon=promotion is terms.discount and terms.by_coupon)
        if session["automatic_tax"]["enabled"]:
            session["automatic_tax"]["status"] = "complete"
        address = customer_address(session, self._customer_country)
        session.update(status="complete", url=None, customer_details=customer_details(session, address))
        if totals.total == 0:  # nothing to charge: no PaymentIntent (Stripe's no-cost orders)
            session["payment_status"] = "no_payment_required"
            self._issue_invoice(session)
        else:
            intent = self._store(build_payment_intent(
                session, self._intent_metadata.get(session_id, {}), "processing"))
            session.update(payment_intent=intent["id"], payment_status="unpaid")
            if outcome == "paid":
                self._capture(intent, session)
                session["payment_status"] = "paid"
                self._issue_invoice(session)
        self._emit("checkout.session.completed", session)
        return session

    def _terms_of(self, session: dict) -> CheckoutTerms:
        """A session's terms; one put in place without the API is priced as a single line."""
        found = self._terms.get(session["id"])
        return found or CheckoutTerms([LineItem(session["amount_subtotal"], 1, session["currency"])])

    def _promotion(self, session: dict, code: str) -> PromotionCode:
        """The code a customer entered, if this session takes codes and the sandbox knows it."""
        if not session["allow_promotion_codes"]:
            raise StripeError(400, "This Checkout Session does not accept promotion codes (it was created "
                              "without allow_promotion_codes).", param="promotion_code")
        found = self._promotion_codes.get(code.upper())
        if found is None:
            raise StripeError(400, f"This code is invalid: '{code}' is not a promotion code.", param="promotion_code")
        if not found.applies_to(session["currency"]):
            raise StripeError(400, f"This code is invalid for payments in {session['currency'].upper()}.",
                              param="promotion_code")
        return found

    def _totals(self, session: dict, terms: CheckoutTerms, promotion: PromotionCode | None,
                with_tax: bool = True) -> Totals:
        rate = self._tax_basis_points if with_tax and session["automatic_tax"]["enabled"] else None
        return stripe_pricing.totals([item.priced() for item in terms.items], session["currency"], promotion, rate)

    @staticmethod
    def _check_minimum(session: dict, totals: Totals) -> None:
        """A discount may make the order free, but not a payment below Stripe's minimum charge."""
        currency = session["currency"]
        minimum = MINIMUM_AMOUNTS.get(currency, 0)
        if 0 < totals.total < minimum:
            raise StripeError(400, f"This code cannot be applied: the total would be "
                              f"{stripe_pricing.format_amount(totals.total, currency)}, below the minimum charge of "
                              f"{stripe_pricing.format_amount(minimum, currency)}.", param="promotion_code",
                              code="amount_too_small")

    @staticmethod
    def _apply_totals(session: dict, totals: Totals, promotion: PromotionCode | None, by_coupon: bool = False) -> None:
        discounts = ([{"coupon": promotion.coupon, "promotion_code": None if by_coupon else promotion.id}]
                     if promotion else [])
        session.update(amount_subtotal=totals.subtotal, amount_total=totals.total,
                       total_details=totals.total_details(), discounts=discounts)

    def _issue_invoice(self, session: dict) -> None:
        """Checkout's invoice for a session paid (or free) with `invoice_creation` enabled."""
        if not session["invoice_creation"]["enabled"] or session["invoice"]:
            return
        self._invoice_count += 1
        invoice = self._store(build_invoice(session, self._terms_of(session).items,
                                            f"SANDBOX-{self._invoice_count:04d}", self._public_base()))
        session["invoice"] = invoice["id"]

    def _settle(self, session_id: str, outcome: str | None) -> dict:
        session = self._get("checkout.session", session_id)
        if outcome not in ("succeeded", "failed"):
            raise StripeError(400, "outcome must be one of succeeded, failed.", param="outcome")
        intent = self._objects.get(session["payment_intent"] or "")
        if session["status"] != "complete" or not intent or intent["status"] != "processing":
            raise StripeError(400, "Only a completed Checkout Session with a delayed payment "
                              "still processing can be settled.", param="session")
        if outcome == "succeeded":
            self._capture(intent, session)
            session["payment_status"] = "paid"
            self._issue_invoice(session)
            self._emit("checkout.session.async_payment_succeeded", session)
        else:
            intent.update(status="requires_payment_method", last_payment_error={
                "type": "card_error", "code": "payment_method_provider_decline",
                "message": "The payment was declined."})
            self._emit("checkout.session.async_payment_failed", session)
        return session

    def _capture(self, intent: dict, session: dict) -> None:
        prefix = "py_" if getattr(self._config(), "non_card_ids", False) else "ch_"
        address = (session["customer_details"] or {}).get("address")
        charge = self._store(build_charge(intent, session["customer_email"], prefix, address, self._public_base()))
        intent.update(status="succeeded", amount_received=intent["amount"], latest_charge=charge["id"])

    # documents the customer is sent to (Stripe hosts them)

    def receipt_page(self, charge_id: str) -> Response:
        with self._lock:
            charge = copy.deepcopy(self._objects.get(charge_id))
            if charge is None or charge["object"] != "charge":
                return Response("<h1>Receipt not found</h1>", 404, mimetype="text/html")
            session = next((copy.deepcopy(o) for o in self._objects.values() if o["object"] == "checkout.session"
                            and o["payment_intent"] == charge["payment_intent"]), None)
        return Response(stripe_pages.receipt_html(charge, session), mimetype="text/html")

    def invoice_page(self, invoice_id: str, printable: bool = False) -> Response:
        with self._lock:
            invoice = copy.deepcopy(self._objects.get(invoice_id))
        if invoice is None or invoice["object"] != "invoice":
            return Response("<h1>Invoice not found</h1>", 404, mimetype="text/html")
        return Response(stripe_pages.invoice_html(invoice, printable=printable), mimetype="text/html")

    # lists of objects (GET /v1/checkout/sessions, /v1/payment_intents; refunds and disputes are
    # routed with the rest of the API)

    LISTS = (("/v1/checkout/sessions", "checkout.session", ("payment_intent",)),
             ("/v1/payment_intents", "payment_intent", ()))

    def _add_list_routes(self, bp: Blueprint) -> None:
        for rule, kind, filters in self.LISTS:
            name = "list_" + kind.replace(".", "_")
            bp.add_url_rule(rule, name, self._api_view(functools.partial(self._listed, kind, rule, filters)),
                            methods=["GET"])

    def _listed(self, kind: str, url: str, filters: tuple[str, ...], params: dict) -> dict:
        """Stripe's list of one kind, newest first, with `created` (gt/gte/lt/lte) and the kind's
        equality filters, paged by list_page."""
        created = params.get("created")
        bounds = created if isinstance(created, dict) else ({"eq": created} if created else {})
        items = [o for o in reversed(self._objects.values()) if o["object"] == kind
                 and all(params.get(f) in (None, o.get(f)) for f in filters)
                 and _created_within(o["created"], bounds)]
        return list_page(items, params, url)


def _created_within(created: int, bounds: dict) -> bool:
    tests = {"gt": created.__gt__, "gte": created.__ge__, "lt": created.__lt__, "lte": created.__le__,
             "eq": created.__eq__}
    for operator, value in bounds.items():
        if operator not in tests:
            raise StripeError(400, f"Received unknown parameter: created[{operator}]", param="created")
        if not tests[operator](_integer(value, f"created[{operator}]")):
            return False
    return True


def _type_matches(event_type: str, wanted: str) -> bool:
    """Stripe's `type` filter accepts a trailing wildcard, e.g. `checkout.session.*`."""
    if wanted.endswith("*"):
        return event_type.startswith(wanted[:-1])
    return event_type == wanted


def _action_params() -> dict:
    """Simulator actions accept JSON (tests) or an HTML form (the checkout page)."""
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else request.form.to_dict()


def _control_refused(message: str) -> Response:
    return Response(json.dumps({"error": {"type": "invalid_request_error", "message": message}}), 400,
                    mimetype="application/json")


def _page_redirect(session: dict, code: str = "") -> Response:
    if session["status"] == "complete":
        return redirect(session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"]), 303)
    kept = {"promotion_code": code} if code else {}
    return redirect(url_for(".checkout_page", session_id=session["id"], declined="1", **kept), 303)
