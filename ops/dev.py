"""`bookingflow dev`: the whole service in one process, on embedded defaults, for a first look.

A SQLite file, Dramatiq's in-process broker with its worker threads, the scheduler on a thread, and
the sandbox Stripe and Calendly mounted under /_sandbox, which speak the real wire formats and send
signed deliveries back to our own webhook endpoints. No environment variable is needed; DATABASE_URL
and PORT are honoured when set.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from models import bootstrap
from bookingflow import settings as settings_module
from bookingflow.settings import EMBEDDED_BROKER_URL, Settings

SANDBOX_PREFIX = "/_sandbox"
DEV_SWEEP_SECONDS = 15
WORKER_THREADS = 4


def demo_catalogue(sandbox_base: str) -> list[dict]:
    def session_type(slug, name, minutes, price, policy):
        return {
            "slug": slug, "name": name, "duration_minutes": minutes, "price": price, "currency": "usd",
            "calendly_event_type": f"https://api.calendly.com/event_types/{slug}",
            "scheduling_url": f"{sandbox_base}/calendly/book/{slug}", "refund_policy": policy,
        }

    return [
        session_type("intro-call", "Intro call (sandbox)", 30, 5000,
                     {"full_before_hours": 24, "partial_before_hours": 2, "partial_percent": 50}),
        session_type("deep-dive", "Deep-dive session (sandbox)", 90, 15000,
                     {"full_before_hours": 48, "partial_before_hours": 24, "partial_percent": 50}),
    ]


def dev_settings(port: int | None) -> tuple[Settings, dict]:
    try:
        base = settings_module.load()
    except settings_module.SettingsError as exc:
        bootstrap.fail(str(exc))
    port = port or base.port
    url = f"http://127.0.0.1:{port}"
    sandbox_base = url + SANDBOX_PREFIX
    # Fresh secrets each run: they only ever sign sandbox deliveries to this process.
    secret = {
        "stripe_key": "sk_test_sandbox_" + secrets.token_hex(8),
        "stripe_whsec": "whsec_" + secrets.token_hex(24),
        "calendly_token": "sandbox_" + secrets.token_hex(16),
        "calendly_key": secrets.token_hex(24),
    }
    current = base.replace(
        port=port,
        broker_url=EMBEDDED_BROKER_URL,
        stripe_secret_key=secret["stripe_key"],
        stripe_webhook_secrets=(secret["stripe_whsec"],),
        stripe_api_base=sandbox_base + "/stripe",
        calendly_api_token=secret["calendly_token"],
        calendly_signing_keys=(secret["calendly_key"],),
        calendly_api_base=sandbox_base + "/calendly",
        public_url=url,
        sweep_interval_seconds=min(base.sweep_interval_seconds, DEV_SWEEP_SECONDS),
    )
    return current, secret


def register_sandbox_setup(sandbox, current: Settings) -> None:
    """What an operator sets up in the providers' dashboards: the demo catalogue's event types, and
    the Stripe webhook endpoint to this service with every event it acts on, in its API version."""
    from bookingflow.providers.stripe_client import API_VERSION
    from ops.check import STRIPE_EVENTS, STRIPE_WEBHOOK_PATH

    for item in demo_catalogue(current.public_url + SANDBOX_PREFIX):
        sandbox.calendly.add_event_type(item["slug"], item["name"], item["duration_minutes"])
    sandbox.stripe.register_webhook_endpoint(current.webhook_base + STRIPE_WEBHOOK_PATH, list(STRIPE_EVENTS), API_VERSION)


def subscribe_and_check(current: Settings) -> None:
    """Once serving: `bookingflow calendly subscribe`, then `bookingflow check`, against the sandbox."""
    from bookingflow.providers import calendly_subscription
    from ops.check import render, run_checks

    try:
        calendly_subscription.repair(calendly_subscription.standing(), calendly_subscription.callback_url(current),
                                     current.calendly_signing_keys[0])
        print("bookingflow dev: set-up check\n" + render(run_checks(current)), flush=True)
    except Exception:
        logging.exception("the set-up check of bookingflow dev failed")


def run_dev(port: int | None = None) -> int:
    bootstrap.configure_logging(json_lines=False)
    current, secret = dev_settings(port)
    settings_module.configure(current)
    bootstrap.open_reachable_database(current, create=True)

    from ops.catalog import import_session_types
    from sandbox import Sandbox, SandboxConfig
    from models import migrations

    migrations.upgrade(report=lambda line: logging.info("schema: %s", line))
    import_session_types(demo_catalogue(current.public_url + SANDBOX_PREFIX))

    import dramatiq

    import jobs
    from intake import create_app
    from scheduler import start_in_background

    worker = dramatiq.Worker(jobs.broker, worker_threads=WORKER_THREADS)
    worker.start()
    sweeper = start_in_background(current.sweep_interval_seconds)
    sandbox = Sandbox(SandboxConfig(
        stripe_secret_key=secret["stripe_key"], stripe_webhook_secret=secret["stripe_whsec"],
        calendly_api_token=secret["calendly_token"], calendly_signing_key=secret["calendly_key"],
        public_base=current.public_url + SANDBOX_PREFIX,
        stripe_webhook_url=current.public_url + "/webhooks/stripe",
        calendly_webhook_url=current.public_url + "/webhooks/calendly",
    ))
    register_sandbox_setup(sandbox, current)
    app = DispatcherMiddleware(create_app(), {SANDBOX_PREFIX: sandbox.app})
    server = make_server("127.0.0.1", current.port, app, threaded=True)
    threading.Thread(target=subscribe_and_check, args=(current,), name="dev-check", daemon=True).start()

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"bookingflow dev: serving on {current.public_url}", flush=True)
    print(f"  database {current.database_url}; in-process broker; sandbox Stripe and Calendly at "
          f"{current.public_url}{SANDBOX_PREFIX}", flush=True)
    print(f"  try it: bookingflow demo {current.public_url}", flush=True)
    try:
        server.serve_forever()
    finally:
        sweeper.shutdown(wait=False)
        sandbox.close()
        worker.stop()
    return 0
