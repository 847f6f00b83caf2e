"""Stripe, through stripe-python. Every POST carries an idempotency key chosen by the caller."""

from __future__ import annotations

import functools

import stripe

from bookingflow import settings as settings_module
from bookingflow.providers import limits

# Network failures and 409/429/5xx answers are retried by stripe-python itself with the same
# idempotency key, so a retry can never create a second object.
NETWORK_RETRIES = 2
REQUEST_TIMEOUT_SECONDS = 20
API_VERSION = stripe.api_version  # the version this code reads Stripe's objects and events in


@functools.lru_cache(maxsize=4)
def _client(api_key: str, api_base: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base},
        max_network_retries=NETWORK_RETRIES,
        http_client=stripe.RequestsClient(timeout=REQUEST_TIMEOUT_SECONDS),
    )


def client() -> stripe.StripeClient:
    current = settings_module.get()
    return _client(current.stripe_secret_key, current.stripe_api_base)


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
    return _within_rate_limit(lambda: client().v1.checkout.sessions.expire(
        session_id, options={"idempotency_key": idempotency_key}))


def create_refund(params: dict, idempotency_key: str) -> stripe.Refund:
    return _within_rate_limit(lambda: client().v1.refunds.create(params=params, options={"idempotency_key": idempotency_key}))


def retrieve_refund(refund_id: str) -> stripe.Refund:
    return _within_rate_limit(lambda: client().v1.refunds.retrieve(refund_id))


def list_refunds(payment_intent_id: str) -> list[stripe.Refund]:
    """Every refund of a PaymentIntent, whoever made it (bookingflow, the Dashboard, another API
    user), following Stripe's pages to the end."""
    page = _within_rate_limit(lambda: client().v1.refunds.list(params={"payment_intent": payment_intent_id, "limit": 100}))
    return list(page.auto_paging_iter())


def retrieve_charge(charge_id: str) -> stripe.Charge:
    return _within_rate_limit(lambda: client().v1.charges.retrieve(charge_id))


# --- set-up checks: what `bookingflow check` reads -------------------------------------------


def retrieve_balance() -> stripe.Balance:
    """The cheapest call that proves a secret key works (and says whether it is live)."""
    return _within_rate_limit(lambda: client().v1.balance.retrieve())


def list_webhook_endpoints() -> list[stripe.WebhookEndpoint]:
    """Every webhook endpoint of the account (an account may have at most 16)."""
    page = _within_rate_limit(lambda: client().v1.webhook_endpoints.list(params={"limit": 100}))
    return list(page.auto_paging_iter())
