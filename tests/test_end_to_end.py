"""End to end on real processes: gunicorn, the dramatiq CLI and the scheduler as the Procfile starts
them, against PostgreSQL and Redis, with the providers replaced by the local sandbox."""

from __future__ import annotations

import secrets

import pytest
import redis
import requests

from conftest import TEST_DATABASE_URL, TEST_REDIS_URL, postgres_problem, redis_problem, require_service
from flows import Client, history_states, sessions_of
from providers import encode, stripe_event, stripe_signature, checkout_session
from realstack import RealStack, ScratchDatabase, base_environment, import_session_types, run_cli

pytestmark = pytest.mark.e2e

POSTGRES_URL = TEST_DATABASE_URL if TEST_DATABASE_URL.startswith("postgres") else "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = TEST_REDIS_URL or "redis://127.0.0.1:6379/14"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from bookingflow.sandbox import Sandbox, SandboxConfig, serve_in_thread

    require_service("PostgreSQL", postgres_problem(POSTGRES_URL))
    require_service("Redis", redis_problem(REDIS_URL))
    tmp = tmp_path_factory.mktemp("e2e")
    secret = {"key": "sk_test_" + secrets.token_hex(8), "whsec": "whsec_" + secrets.token_hex(16),
              "token": secrets.token_hex(8), "signing": secrets.token_hex(16)}
    sandbox = Sandbox(SandboxConfig(secret["key"], secret["whsec"], secret["token"], secret["signing"]))
    server, sandbox_base = serve_in_thread(sandbox.app)
    sandbox.config.public_base = sandbox.base = sandbox_base
    database = ScratchDatabase(POSTGRES_URL)
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {
        **base_environment(),
        "DATABASE_URL": database.url, "BROKER_URL": REDIS_URL,
        "STRIPE_SECRET_KEY": secret["key"], "STRIPE_WEBHOOK_SECRET": f"whsec_old_rotated,{secret['whsec']}",
        "STRIPE_API_BASE": sandbox_base + "/stripe",
        "CALENDLY_API_TOKEN": secret["token"], "CALENDLY_WEBHOOK_SIGNING_KEY": secret["signing"],
        "CALENDLY_API_BASE": sandbox_base + "/calendly",
        "PUBLIC_URL": "https://frontend.example", "SWEEP_INTERVAL_SECONDS": "1",
        "WEB_CONCURRENCY": "2", "WORKER_THREADS": "4",
    }
    run_cli(env, "db", "upgrade")  # the Procfile's release step
    import_session_types(env, tmp, sandbox_base, [{"slug": "strategy-session", "price": 25000}])
    running = RealStack(env, tmp / "stack.log")
    try:
        running.wait_ready("/readyz")
        sandbox.config.stripe_webhook_url = running.base + "/webhooks/stripe"
        sandbox.config.calendly_webhook_url = running.base + "/webhooks/calendly"
        running.sandbox, running.secret = sandbox, secret
        yield running
    finally:
        running.stop()
        sandbox.close()
        server.shutdown()
        database.drop()


def test_a_booking_walks_to_confirmed_over_http_alone(stack):
    frontend = Client(stack.base, stack.sandbox)
    try:
        view, _ = frontend.book_and_wait_for_checkout("strategy-session")
        frontend.pay(view["checkout_url"])
        confirmed = frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n--- stack log ---\n{stack.log()}") from None
    assert history_states(confirmed)[-1] == "BOOKING_CONFIRMED"
    assert (confirmed["amount"], confirmed["currency"]) == (25000, "usd")
    assert len(sessions_of(stack.sandbox, view["id"])) == 1
    assert "ada@example.com" not in stack.log()


def test_the_operator_sees_the_booking_and_its_history(stack):
    frontend = Client(stack.base, stack.sandbox)
    booking = frontend.create_booking("strategy-session")
    shown = run_cli(stack.env, "bookings", "show", booking["id"])
    assert "CALENDLY_SCHEDULING" in shown.stdout and "startCalendlyScheduling" in shown.stdout


def test_a_delivery_signed_with_the_previous_secret_during_rotation_is_accepted(stack):
    body = encode(stripe_event("checkout.session.completed", checkout_session("x" * 32, 100)))
    response = requests.post(f"{stack.base}/webhooks/stripe", data=body, timeout=10, headers={
        "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, "whsec_old_rotated")})
    assert response.status_code == 200


def test_a_delivery_is_refused_with_503_while_the_broker_is_unreachable(tmp_path):
    """No PostgreSQL or Redis needed: SQLite, and a broker URL where nothing listens."""
    from realstack import free_port

    env = {
        **base_environment(),
        "DATABASE_URL": f"sqlite:///{tmp_path}/down.db", "BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        "STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_down",
        "CALENDLY_API_TOKEN": "t", "CALENDLY_WEBHOOK_SIGNING_KEY": "k", "PUBLIC_URL": "https://frontend.example",
    }
    run_cli(env, "db", "upgrade")
    web = RealStack(env, tmp_path / "web.log", processes=("web",))
    try:
        web.wait_ready("/healthz")
        body = encode(stripe_event("checkout.session.completed", checkout_session("y" * 32, 100)))
        response = requests.post(f"{web.base}/webhooks/stripe", data=body, timeout=30, headers={
            "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, "whsec_down")})
        assert response.status_code == 503, web.log()
        assert response.json()["error"]["code"] == "unavailable"
        assert requests.get(f"{web.base}/readyz", timeout=30).status_code == 503
    finally:
        web.stop()
