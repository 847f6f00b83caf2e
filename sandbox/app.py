"""The sandbox: both fakes, their webhook sender, and the WSGI app that serves them."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, make_server

from . import calendly_fake, stripe_fake
from .calendly_fake import CalendlyFake
from .chaos import Chaos
from .deliveries import PROVIDER_ENDPOINTS, WebhookSender
from .persistence import SavedSandbox
from .stripe_fake import StripeFake

CALENDLY_KINDS = ("scheduled_event", "invitee")
SHUTDOWN_POLL_SECONDS = 0.05


@dataclass
class SandboxConfig:
    stripe_secret_key: str
    stripe_webhook_secret: str
    calendly_api_token: str
    calendly_signing_key: str
    public_base: str = ""  # externally visible base URL; empty = the host of the current request
    stripe_webhook_url: str | None = None  # None keeps deliveries queued
    calendly_webhook_url: str | None = None
    delivery_attempts: int = 8
    # Default Calendly webhook payload shape: "embedded" (payload.scheduled_event present) or
    # "reference" (2023 shape, only the event URI); simulator actions may override per call.
    calendly_payload_shape: str = "embedded"
    # The status a new refund gets: "succeeded" (most card refunds) or "pending" (settled later
    # through POST /stripe/refunds/<id>/settle).
    refund_status: str = "succeeded"
    # Charges and refunds of other payment methods (SEPA, ACH, currency conversion): `py_` charges and
    # `pyr_` refunds instead of card ones' `ch_` and `re_`.
    non_card_ids: bool = False
    # Deliveries repeated, shuffled and spread over several receivers (chaos.py); None: sent in
    # order, once each, to the URLs above.
    chaos: Chaos | None = None


class Sandbox:
    """Local fakes of Stripe and Calendly with signed webhook deliveries.

    `config` may be changed at runtime (e.g. webhook URLs set after the server started):
    every component reads it through this object on each use.
    """

    def __init__(self, config: SandboxConfig):
        self.config = config
        self._sender = WebhookSender(lambda: self.config)
        self.stripe = StripeFake(lambda: self.config, self._sender, self._public_base)
        self.calendly = CalendlyFake(lambda: self.config, self._sender, self._public_base)
        self.app = create_app(self.stripe, self.calendly)
        self.limits = RateLimits()
        self.app.before_request(self.limits.refuse_if_throttled)
        self.app.after_request(self.limits.report)
        self._saved: SavedSandbox | None = None

    def _public_base(self) -> str:
        """Base for URLs we hand out; only called while serving a request."""
        configured = self.config.public_base.rstrip("/")
        return configured or request.host_url.rstrip("/") + request.script_root

    def _fake(self, provider: str) -> StripeFake | CalendlyFake:
        fakes = {"stripe": self.stripe, "calendly": self.calendly}
        if provider not in fakes:
            raise ValueError(f"unknown provider {provider!r}; expected one of {tuple(fakes)}")
        return fakes[provider]

    def api_requests(self, provider: str) -> list[dict]:
        return self._fake(provider).api_requests()

    def objects(self, kind: str) -> list[dict]:
        return self._fake("calendly" if kind in CALENDLY_KINDS else "stripe").objects(kind)

    def deliveries(self, provider: str | None = None) -> list[dict]:
        if provider is not None and provider not in PROVIDER_ENDPOINTS:
            raise ValueError(f"unknown provider {provider!r}")
        return self._sender.snapshots(provider)

    def hold_deliveries(self, provider: str, hold: bool = True) -> None:
        self._sender.hold(provider, hold)

    def drop_pending_deliveries(self, provider: str | None = None) -> int:
        """Never send what is still queued (held or retrying): a delivery the provider gave up on."""
        return self._sender.drop_pending(provider)

    def wait_deliveries_idle(self, timeout: float = 10) -> bool:
        return self._sender.wait_idle(timeout)

    def unfinished_deliveries(self) -> list[dict]:
        return self._sender.unfinished()

    def resend_deliveries(self, saved: list[dict]) -> None:
        self._sender.resend(saved)

    def persist_to(self, path) -> bool:
        """Keep this sandbox in the JSON file at `path` (sandbox/persistence.py): what it holds is
        loaded now (True if there was one), and saved after every request that may change it and on
        close. Call before serving."""
        self._saved = SavedSandbox(self, path)
        loaded = self._saved.load()
        self.app.after_request(self._saved.save_after)
        self._saved.save()
        return loaded

    def close(self) -> None:
        self._sender.close()
        if self._saved is not None:
            self._saved.save()


class RateLimits:
    """The providers' rate limiting, as they answer it: `throttle(provider, times, retry_after)` makes
    the next API calls answer 429 (Stripe's error body and Retry-After; Calendly's X-RateLimit-*).
    Calendly's budget (`calendly_limit` per window) is reported on every Calendly API answer."""

    def __init__(self, calendly_limit: int = 500):
        self._lock = threading.Lock()
        self._throttled: dict[str, tuple[int, int]] = {}
        self.calendly_limit = calendly_limit
        self.calendly_remaining = calendly_limit

    def throttle(self, provider: str, times: int, retry_after: int = 1) -> None:
        with self._lock:
            self._throttled[provider] = (times, retry_after)

    @staticmethod
    def _provider() -> str | None:
        path = request.path
        if path.startswith(stripe_fake.URL_PREFIX + "/v1/"):
            return "stripe"
        if path.startswith(calendly_fake.URL_PREFIX + "/") and "/_sandbox/" not in path and "/book/" not in path:
            return "calendly"
        return None

    def refuse_if_throttled(self):
        provider = self._provider()
        with self._lock:
            if provider and self._throttled.get(provider, (0, 0))[0] > 0:
                times, retry_after = self._throttled[provider]
                self._throttled[provider] = (times - 1, retry_after)
            else:
                return None
        if provider == "stripe":
            body = {"error": {"type": "invalid_request_error", "code": "rate_limit",
                              "message": "Too many requests hit the API too quickly."}}
            headers = {"Retry-After": str(retry_after)}
        else:
            body = {"title": "Too Many Requests", "message": "Rate limit exceeded"}
            headers = {"X-RateLimit-Limit": str(self.calendly_limit), "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset": str(retry_after)}
        return Response(json.dumps(body), 429, headers=headers, mimetype="application/json")

    def report(self, response: Response) -> Response:
        if self._provider() == "calendly" and response.status_code != 429:
            with self._lock:
                self.calendly_remaining = max(0, self.calendly_remaining - 1)
                remaining = self.calendly_remaining
            response.headers["X-RateLimit-Limit"] = str(self.calendly_limit)
            response.headers["X-RateLimit-Remaining"] = str(remaining)
            response.headers["X-RateLimit-Reset"] = "60"
        return response


def create_app(stripe: StripeFake, calendly: CalendlyFake) -> Flask:
    app = Flask(__name__)
    app.register_blueprint(stripe.blueprint())
    app.register_blueprint(calendly.blueprint())
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _http_error(exc: HTTPException) -> Response:
    """Unknown URLs and wrong methods, answered in the format of the provider being imitated."""
    if exc.code == 404 and request.path.startswith(stripe_fake.URL_PREFIX + "/"):
        path = request.path.removeprefix(stripe_fake.URL_PREFIX)
        return _error(404, f"Unrecognized request URL ({request.method}: {path}).")
    return _error(exc.code or 500, exc.description or exc.name)


def _unexpected_error(exc: Exception) -> Response:
    # Logged here, never sent: clients get the provider's generic error body, not a traceback.
    current_app.logger.exception("sandbox request failed: %s %s", request.method, request.path)
    return _error(500, "An unexpected error occurred in the sandbox.")


def _error(status: int, message: str) -> Response:
    if request.path.startswith(stripe_fake.URL_PREFIX + "/"):
        body = stripe_fake.error_body(status, message)
    elif request.path.startswith(calendly_fake.URL_PREFIX + "/"):
        body = calendly_fake.error_body(status, message)
    else:
        body = {"error": {"message": message}}
    return Response(json.dumps(body), status, mimetype="application/json")


def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0) -> tuple[BaseWSGIServer, str]:
    """Serve `app` from a daemon thread; returns (server, base URL). server.shutdown() stops it."""
    server = make_server(host, port, app, threaded=True)
    # A short poll interval keeps shutdown() quick; test suites stop many of these servers.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
                     name=f"wsgi-{server.server_port}", daemon=True).start()
    return server, f"http://{host}:{server.server_port}"
