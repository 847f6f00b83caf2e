"""Signed webhook deliveries, sent from one background thread like the real providers do.

Bodies are serialized when the event happens (providers deliver a snapshot), while the
signature is computed at send time with the secret configured at that moment, so tests can
rotate secrets or point the sandbox at a new receiver after it has started.

With `chaos` set in the config (see chaos.py), several threads send instead, each delivery
1 to N times, in random order, to several receivers: what fault tests need.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import requests

from .chaos import Chaos

log = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 5
# How often the idle sender re-reads the (mutable) config: a test may set a webhook URL
# by plain attribute assignment, which cannot notify anyone.
CONFIG_POLL_SECONDS = 0.05
BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 4.0)
MAX_BACKOFF_SECONDS = 5.0


@dataclass(frozen=True)
class ProviderEndpoint:
    """Which config fields hold a provider's webhook URL and secret, and the header it signs with."""

    url_field: str
    secret_field: str
    signature_header: str


PROVIDER_ENDPOINTS = {
    "stripe": ProviderEndpoint("stripe_webhook_url", "stripe_webhook_secret", "Stripe-Signature"),
    "calendly": ProviderEndpoint(
        "calendly_webhook_url", "calendly_signing_key", "Calendly-Webhook-Signature"
    ),
}


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix>,v1=<hex>`: both providers sign HMAC-SHA256 over "{t}.{raw body}".

    For Stripe the key is the whole "whsec_..." string, exactly as stripe.Webhook verifies it.
    """
    message = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def backoff_after(attempts: int) -> float:
    """Delay before the next try once `attempts` tries have failed (0.2s, 0.5s, 1s, 2s, 4s, then 5s)."""
    if attempts <= len(BACKOFF_SECONDS):
        return BACKOFF_SECONDS[attempts - 1]
    return MAX_BACKOFF_SECONDS


@dataclass
class Delivery:
    provider: str
    type: str
    event_id: str
    body: bytes
    attempts: int = 0
    status: int | None = None
    delivered: bool = False
    finished: bool = False  # delivered, or gave up after the last attempt
    next_attempt_at: float = 0.0
    copies_left: int | None = None  # chaos: accepted copies still to send
    failures: int = 0  # chaos: attempts no receiver accepted

    def snapshot(self) -> dict:
        return {
            "provider": self.provider,
            "type": self.type,
            "event_id": self.event_id,
            "attempts": self.attempts,
            "status": self.status,
            "delivered": self.delivered,
            "payload": json.loads(self.body),
        }


class FakeProvider:
    """What each fake provider starts from: the sandbox's configuration, its webhook sender, where
    it is reached from outside, and the one lock that serializes its requests."""

    def __init__(self, config_source: Callable[[], Any], sender: "WebhookSender", public_base: Callable[[], str]):
        self._config = config_source
        self._sender = sender
        self._public_base = public_base
        self._lock = threading.RLock()


class WebhookSender:
    """Queues deliveries and POSTs them, retrying non-2xx and connection errors with backoff.

    `config_source` returns the current sandbox config (read on every decision, because it is
    mutable at runtime). Deliveries of a held provider, or of a provider without a webhook URL,
    are parked: kept in order and sent once released / once a URL is set.
    """

    def __init__(self, config_source: Callable[[], Any]):
        self._config_source = config_source
        self._cond = threading.Condition()
        self._all: list[Delivery] = []
        self._held: set[str] = set()
        self._in_flight: list[Delivery] = []
        self._closed = False
        self._threads = [threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)]
        self._threads[0].start()

    def enqueue(self, provider: str, event_type: str, event_id: str, payload: dict) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        with self._cond:
            self._all.append(Delivery(provider, event_type, event_id, body))
            self._start_chaos_senders()
            self._cond.notify_all()

    def snapshots(self, provider: str | None = None) -> list[dict]:
        with self._cond:
            chosen = [d for d in self._all if provider is None or d.provider == provider]
            return [d.snapshot() for d in chosen]

    def unfinished(self) -> list[dict]:
        """Deliveries not yet accepted nor given up on, to be sent again by a sandbox restarted later
        (a receiver takes a repeat as the same delivery)."""
        with self._cond:
            return [{"provider": d.provider, "type": d.type, "event_id": d.event_id, "body": d.body.decode("utf-8")}
                    for d in self._all if not d.finished]

    def resend(self, saved: list[dict]) -> None:
        """Queue again what unfinished() returned, bodies unchanged."""
        with self._cond:
            for item in saved:
                self._all.append(Delivery(item["provider"], item["type"], item["event_id"], item["body"].encode("utf-8")))
            self._cond.notify_all()

    def hold(self, provider: str, hold: bool) -> None:
        if provider not in PROVIDER_ENDPOINTS:
            raise ValueError(f"unknown provider {provider!r}")
        with self._cond:
            if hold:
                self._held.add(provider)
            else:
                self._held.discard(provider)
            self._cond.notify_all()

    def drop_pending(self, provider: str | None = None) -> int:
        """Give up on every delivery not yet delivered, as a provider does after its last retry."""
        with self._cond:
            dropped = [d for d in self._all if not d.finished and not self._is_in_flight(d)
                       and (provider is None or d.provider == provider)]
            for delivery in dropped:
                delivery.finished = True
            self._cond.notify_all()
            return len(dropped)

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing sendable is pending or in flight; parked deliveries do not count."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._in_flight or self._sendable_pending():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, CONFIG_POLL_SECONDS))
            return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(SEND_TIMEOUT_SECONDS + 1)

    # --- internals (callers hold self._cond unless noted) ---

    def _chaos(self) -> Chaos | None:
        return getattr(self._config_source(), "chaos", None)

    def _start_chaos_senders(self) -> None:
        chaos = self._chaos()
        while chaos is not None and len(self._threads) < chaos.senders:
            thread = threading.Thread(target=self._run, name=f"sandbox-webhooks-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _is_in_flight(self, delivery: Delivery) -> bool:
        return any(delivery is busy for busy in self._in_flight)

    def _is_sendable(self, delivery: Delivery) -> bool:
        if delivery.finished or delivery.provider in self._held or self._is_in_flight(delivery):
            return False
        return self._url_for(delivery.provider) is not None

    def _url_for(self, provider: str) -> str | None:
        chaos = self._chaos()
        if chaos is not None and chaos.targets.get(provider):
            return chaos.targets[provider][0]
        return getattr(self._config_source(), PROVIDER_ENDPOINTS[provider].url_field) or None

    def _sendable_pending(self) -> bool:
        return any(self._is_sendable(d) for d in self._all)

    def _next_due(self, first_thread: bool) -> Delivery | None:
        now = time.monotonic()
        chaos = self._chaos()
        if chaos is None:
            if not first_thread:
                return None  # in order, from one thread, as the real providers do
            for delivery in self._all:
                if self._is_sendable(delivery) and delivery.next_attempt_at <= now:
                    return delivery
            return None
        due = [d for d in self._all if not d.finished and d.next_attempt_at <= now and self._is_sendable(d)]
        return chaos.pick(due) if due else None

    def _run(self) -> None:
        first_thread = threading.current_thread() is self._threads[0]
        while True:
            with self._cond:
                delivery = self._next_due(first_thread)
                while delivery is None and not self._closed:
                    self._cond.wait(CONFIG_POLL_SECONDS)
                    delivery = self._next_due(first_thread)
                if self._closed:
                    return
                self._in_flight.append(delivery)
                chaos = self._chaos()
                if chaos is not None and delivery.copies_left is None:
                    delivery.copies_left = chaos.copies()
                requests_to_send = self._build_requests(delivery, chaos)
            # outside the lock: the receiver may call back into us
            statuses = self._post_all(requests_to_send)
            with self._cond:
                if chaos is None:
                    self._record_attempt(delivery, statuses[0])
                else:
                    self._record_chaos_attempt(delivery, requests_to_send, statuses, chaos)
                self._in_flight = [busy for busy in self._in_flight if busy is not delivery]
                self._cond.notify_all()

    def _build_requests(self, delivery: Delivery, chaos: Chaos | None) -> list[tuple[str, bytes, dict]]:
        if chaos is None:
            return [self._build_request(delivery, self._url_for(delivery.provider))]
        targets, everywhere = chaos.receivers(delivery.provider)
        if everywhere:
            chaos.tally.count(all_at_once=1)
        return [self._build_request(delivery, target) for target in targets]

    def _build_request(self, delivery: Delivery, url: str) -> tuple[str, bytes, dict]:
        config = self._config_source()
        endpoint = PROVIDER_ENDPOINTS[delivery.provider]
        secret = getattr(config, endpoint.secret_field)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"bookingflow-sandbox/{delivery.provider}",
            endpoint.signature_header: signature_header(secret, delivery.body, int(time.time())),
        }
        return url, delivery.body, headers

    def _post_all(self, requests_to_send: list[tuple[str, bytes, dict]]) -> list[int | None]:
        """Each request's status; several go out at the same moment, each from a thread. No lock held."""
        if len(requests_to_send) == 1:
            return [self._post(*requests_to_send[0])]
        with ThreadPoolExecutor(max_workers=len(requests_to_send)) as pool:
            return list(pool.map(lambda request: self._post(*request), requests_to_send))

    @staticmethod
    def _post(url: str, body: bytes, headers: dict) -> int | None:
        """HTTP status of the receiver's answer, or None when it could not be reached. No lock held."""
        try:
            response = requests.post(url, data=body, headers=headers, timeout=SEND_TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            log.info("webhook delivery to %s failed: %s", url, exc)
            return None
        return response.status_code

    def _record_attempt(self, delivery: Delivery, status: int | None) -> None:
        delivery.attempts += 1
        delivery.status = status
        delivery.delivered = status is not None and 200 <= status < 300
        max_attempts = getattr(self._config_source(), "delivery_attempts", 1)
        if delivery.delivered or delivery.attempts >= max_attempts:
            delivery.finished = True
        else:
            delivery.next_attempt_at = time.monotonic() + backoff_after(delivery.attempts)

    def _record_chaos_attempt(self, delivery: Delivery, sent: list[tuple[str, bytes, dict]],
                              statuses: list[int | None], chaos: Chaos) -> None:
        """An accepted copy uses one of the delivery's copies; a copy nobody accepted is retried with
        the same backoff and the same limit as in normal mode."""
        for (url, _, _), status in zip(sent, statuses):
            chaos.tally.answered(delivery.provider, url, status)
        accepted = [s for s in statuses if s is not None and 200 <= s < 300]
        delivery.attempts += 1
        delivery.status = accepted[0] if accepted else statuses[-1]
        if accepted:
            chaos.tally.count(duplicates=len(accepted) - (0 if delivery.delivered else 1))
            delivery.delivered = True
            delivery.copies_left -= 1
            if delivery.copies_left <= 0:
                delivery.finished = True
            else:
                delivery.next_attempt_at = time.monotonic() + chaos.next_copy_delay()
            return
        delivery.failures += 1
        if delivery.failures >= getattr(self._config_source(), "delivery_attempts", 1):
            delivery.finished = True
            if not delivery.delivered:
                chaos.tally.count(given_up=1)
        else:
            delivery.next_attempt_at = time.monotonic() + backoff_after(delivery.failures)
