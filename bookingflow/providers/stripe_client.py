"""Stripe, through stripe-python. Every POST carries an idempotency key chosen by the caller.

The API version is pinned here, and only here: every request names it (`Stripe-Version`), so a new
stripe-python release never changes what the account's API answers. Webhook payloads are rendered
in the version of the webhook endpoint instead, which is why the endpoint is created with this same
version (README, "Stripe"). It is the version stripe-python 16 was generated for, the major range
pyproject.toml allows.
"""

from __future__ import annotations

import functools
import uuid
from urllib.parse import quote

import stripe

from bookingflow import settings as settings_module
from bookingflow.providers import limits

# Network failures and 409/429/5xx answers are retried by stripe-python itself with the same
# idempotency key, so a retry can never create a second object.
NETWORK_RETRIES = 2
REQUEST_TIMEOUT_SECONDS = 20
API_VERSION = "2026-10-28.endive"
# HTTP statuses of a request Stripe executed and refused: nothing was created, and the answer is saved
# under its idempotency key (for at least 24 hours), so repeating the key repeats the refusal.
DEFINITIVE_STATUSES = (400, 402, 404)


@functools.lru_cache(maxsize=4)
def _client(api_key: str, api_base: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base},
        stripe_version=API_VERSION,
        max_network_retries=NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=REQUEST_TIMEOUT_SECONDS),
    )


def client() -> stripe.StripeClient:
    current = settings_module.get()
    return _client(current.stripe_secret_key, current.stripe_api_base)


def is_definitive(exc: BaseException) -> bool:
    """Stripe refused the request for good: a 400/404 (invalid request) or a 402 (card error). Not a
    401/403 (our credentials: the request never ran), not a 409 (the key is in use by a request still
    running, which may yet succeed), not an idempotency error (the key was seen with other parameters:
    the first request may have made something), not a 429, a 5xx or a lost connection (the outcome is
    unknown: only the same key may be repeated)."""
    return isinstance(exc, (stripe.InvalidRequestError, stripe.CardError)) and exc.http_status in DEFINITIVE_STATUSES


def _within_rate_limit(call):
    """stripe-python retries network errors, 409s and 5xx itself, but not a rate limit (429): wait
    as Stripe asks (Retry-After, else a backoff) and repeat the very same request, idempotency key
    and all."""
    attempt = 0
    while True:
        try:
            return call()
        except stripe.RateLimitError as exc:
            headers = exc.headers or {}
            wait = limits.seconds_from(headers.get("Retry-After") or headers.get("retry-after")) or limits.backoff(attempt)
            limits.wait_or_defer("Stripe", wait, attempt)
            attempt += 1


def create_checkout_session(params: dict, idempotency_key: str) -> stripe.checkout.Session:
    return _within_rate_limit(lambda: client().v1.checkout.sessions.create(
        params=params, options={"idempotency_key": idempotency_key}))


def retrieve_checkout_session(session_id: str) -> stripe.checkout.Session:
    return _within_rate_limit(lambda: client().v1.checkout.sessions.retrieve(session_id))


def expire_checkout_session(session_id: str, idempotency_key: str) -> stripe.checkout.Session:
    """Expire the session. When Stripe answers with the error it saved for the key (a 5xx or a refusal
    of the first request, repeated for as long as the key lives), ask once more under a fresh key:
    expiring needs no key to be safe, since a session expires only once and expiring one that is no
    longer open is refused, so a second request can never do more than the first."""
    try:
        return _expire(session_id, idempotency_key)
    except stripe.StripeError as exc:
        if not _replayed(exc):
            raise
        return _expire(session_id, f"{idempotency_key}-{uuid.uuid4().hex}")


def _expire(session_id: str, idempotency_key: str) -> stripe.checkout.Session:
    return _within_rate_limit(lambda: client().v1.checkout.sessions.expire(
        session_id, options={"idempotency_key": idempotency_key}))


def _replayed(exc: stripe.StripeError) -> bool:
    """The answer is the one Stripe saved for the idempotency key, not one to this request."""
    headers = exc.headers or {}
    return str(headers.get("Idempotent-Replayed") or headers.get("idempotent-replayed") or "").lower() == "true"


def create_refund(params: dict, idempotency_key: str) -> stripe.Refund:
    return _within_rate_limit(lambda: client().v1.refunds.create(params=params, options={"idempotency_key": idempotency_key}))


def retrieve_refund(refund_id: str) -> stripe.Refund:
    return _within_rate_limit(lambda: client().v1.refunds.retrieve(refund_id))


def retrieve_charge(charge_id: str) -> dict:
    return _read("/v1/charges", charge_id)


def _read(path: str, object_id: str, expand: list[str] | None = None) -> dict:
    """GET one object, as the JSON Stripe sent: for callers that only read a few of its fields.
    stripe-python would build StripeObjects from it (and the callers a dict again), which for a
    PaymentIntent with its charge costs more CPU than the request itself."""
    url = f"{path}/{quote(object_id, safe='')}"
    params = {"expand": expand} if expand else {}
    return _within_rate_limit(lambda: client().raw_request("get", url, **params).data)


# --- set-up checks: what `bookingflow check` reads -------------------------------------------


def retrieve_balance() -> stripe.Balance:
    """The cheapest call that proves a secret key works (and says whether it is live)."""
    return _within_rate_limit(lambda: client().v1.balance.retrieve())


def list_webhook_endpoints() -> list[stripe.WebhookEndpoint]:
    """Every webhook endpoint of the account (an account may have at most 16)."""
    page = _within_rate_limit(lambda: client().v1.webhook_endpoints.list(params={"limit": 100}))
    return list(page.auto_paging_iter())


# --- lists, for the drift report (jobs/drift.py) ---------------------------------------------

LIST_PAGE_SIZE = 100  # Stripe's largest page


def _every(list_call, params: dict):
    """Each object of a Stripe list as a plain dict, page after page (`starting_after` the last one
    seen). Paged by hand rather than with auto_paging_iter so that every page goes through the
    rate-limit wait."""
    params = {**params, "limit": LIST_PAGE_SIZE}
    while True:
        page = _within_rate_limit(lambda: list_call(params=params))
        yield from (obj.to_dict() for obj in page.data)
        if not page.has_more or not page.data:
            return
        params = {**params, "starting_after": page.data[-1].id}


def list_checkout_sessions(created_since: int):
    """Checkout Sessions created at or after `created_since` (a Unix time), newest first."""
    return _every(client().v1.checkout.sessions.list, {"created": {"gte": created_since}})


def list_payment_intents(created_since: int):
    return _every(client().v1.payment_intents.list, {"created": {"gte": created_since}})


def list_refunds(payment_intent_id: str | None = None, *, created_since: int | None = None):
    """Refunds, whoever made them (bookingflow, the Dashboard, another API user): those of one
    PaymentIntent, or those created at or after `created_since` (a Unix time), every page."""
    params: dict = {}
    if payment_intent_id:
        params["payment_intent"] = payment_intent_id
    if created_since is not None:
        params["created"] = {"gte": created_since}
    return _every(client().v1.refunds.list, params)


def list_disputes(created_since: int):
    return _every(client().v1.disputes.list, {"created": {"gte": created_since}})


# --- a payment's documents, for the client (jobs/receipts.py) ----------------------------------

def retrieve_payment_intent(payment_intent_id: str, expand: list[str] | None = None) -> dict:
    return _read("/v1/payment_intents", payment_intent_id, expand)


def retrieve_invoice(invoice_id: str) -> dict:
    return _read("/v1/invoices", invoice_id)
