"""`bookingflow dev`: the whole service in one process, on embedded defaults, for a first look.

A SQLite file, Dramatiq's in-process broker with its worker threads, the scheduler on a thread, and
the sandbox Stripe and Calendly mounted under /_sandbox, which speak the real wire formats and send
signed deliveries back to our own webhook endpoints. Beside the API, the pages of ops/devsite: a home
page at /, the reference client, a control page per booking, the outbox. No environment variable is
needed; DATABASE_URL and PORT are honoured when set.

The sandbox's state is kept in a JSON file beside the database (bookingflow.sandbox.json beside
bookingflow.db), so that a restarted `dev` still finds the payments and events its bookings refer to:
delete both to start afresh.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import signal
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server

from models import bootstrap
from ops.dev_access import AccessLog, QuietRequestHandler, quiet_chatty_loggers
from bookingflow import settings as settings_module
from bookingflow.settings import EMBEDDED_BROKER_URL, Settings

SANDBOX_PREFIX = "/_sandbox"
CONSOLE_PREFIX = "/console"
DEV_SWEEP_SECONDS = 15
DEV_TAX_BASIS_POINTS = 1900  # 19%
WORKER_THREADS = 4


def demo_catalogue(sandbox_base: str) -> list[dict]:
    def session_type(slug, name, minutes, price, prices, policy, **pricing):
        return {
            "slug": slug, "name": name, "duration_minutes": minutes, "price": price, "currency": "usd",
            "prices": prices, "calendly_event_type": f"https://api.calendly.com/event_types/{slug}",
            "scheduling_url": f"{sandbox_base}/calendly/book/{slug}", "refund_policy": policy, **pricing,
        }

    # Each pricing switch on somewhere, so the sandbox's Checkout shows it: the intro call takes
    # promotion codes (SAVE20, HALF, FIVEOFF, FREE), the deep dive adds tax and issues an invoice too.
    return [
        session_type("intro-call", "Intro call (sandbox)", 30, 5000, {"eur": 4500, "gbp": 4000},
                     {"full_before_hours": 24, "partial_before_hours": 2, "partial_percent": 50}, promotion_codes=True),
        session_type("deep-dive", "Deep-dive session (sandbox)", 90, 15000, {"eur": 14000, "jpy": 22000},
                     {"full_before_hours": 48, "partial_before_hours": 24, "partial_percent": 50},
                     promotion_codes=True, automatic_tax=True, invoice=True),
    ]


def database_location(database_url: str) -> str:
    """Where the database is, for people: a SQLite file's absolute path, else the URL without its password."""
    if database_url.startswith("sqlite:///"):
        return os.path.abspath(database_url.removeprefix("sqlite:///"))
    parts = urlsplit(database_url)
    host = parts.hostname or ""
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host))


def sandbox_file(database_url: str) -> Path:
    """The sandbox's state beside the database: bookingflow.db -> bookingflow.sandbox.json; for a
    database that is not a file, bookingflow.sandbox.json in the current folder."""
    if database_url.startswith("sqlite:///"):
        database = Path(database_location(database_url))
        return database.with_name(database.stem + ".sandbox.json")
    return Path("bookingflow.sandbox.json").absolute()


def console_app(current: Settings):
    """The operator console, when this installation has one (the `console` package), else None."""
    if importlib.util.find_spec("console") is None:
        return None
    import console

    try:
        return console.create_app(current)
    except Exception:
        logging.exception("the operator console could not start; bookingflow dev carries on without it")
        return None


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
        # The console's cookie key: a fresh one each run (signing in again after a restart is the cost).
        console_secret_key=base.console_secret_key or secrets.token_urlsafe(32),
    )
    return current, secret


def register_sandbox_setup(sandbox, current: Settings) -> None:
    """What an operator sets up in the providers' dashboards: the demo catalogue's event types, and
    the Stripe webhook endpoint to this service with every event it acts on, in its API version."""
    from bookingflow.providers.stripe_client import API_VERSION
    from ops.check import STRIPE_EVENTS, STRIPE_WEBHOOK_PATH

    for item in demo_catalogue(current.public_url + SANDBOX_PREFIX):
        sandbox.calendly.add_event_type(item["slug"], item["name"], item["duration_minutes"])
    # What Stripe Tax would charge the sandbox's customers (in Germany): the tax Checkout adds to the
    # deep dive. `POST /_sandbox/stripe/_sandbox/tax {"basis_points": ...}` changes it.
    sandbox.stripe.set_tax_rate(DEV_TAX_BASIS_POINTS)
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
    quiet_chatty_loggers()
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
    from models.tables import Booking
    from ops.devsite import DevSite, attach
    from scheduler import start_in_background

    sandbox = Sandbox(SandboxConfig(
        stripe_secret_key=secret["stripe_key"], stripe_webhook_secret=secret["stripe_whsec"],
        calendly_api_token=secret["calendly_token"], calendly_signing_key=secret["calendly_key"],
        public_base=current.public_url + SANDBOX_PREFIX,
        stripe_webhook_url=current.public_url + "/webhooks/stripe",
        calendly_webhook_url=current.public_url + "/webhooks/calendly",
    ))
    kept_in = sandbox_file(current.database_url)
    try:
        restored = sandbox.persist_to(kept_in)
    except (OSError, ValueError) as exc:
        bootstrap.fail(f"bookingflow dev cannot read the sandbox's state in {kept_in} ({exc}); delete it, "
                       "with the database, to start afresh")
    if not restored and Booking.select().exists():
        logging.warning("the database has bookings, but %s did not exist: the sandbox does not know their "
                        "payments and events, and work on them will fail; delete the database to start afresh", kept_in)
    register_sandbox_setup(sandbox, current)
    worker = dramatiq.Worker(jobs.broker, worker_threads=WORKER_THREADS)
    worker.start()
    sweeper = start_in_background(current.sweep_interval_seconds)
    web = create_app()
    mounts = {SANDBOX_PREFIX: sandbox.app}
    console = console_app(current)
    if console is not None:
        mounts[CONSOLE_PREFIX] = console
    attach(web, DevSite(sandbox=sandbox, sandbox_prefix=SANDBOX_PREFIX, database=database_location(current.database_url),
                        sandbox_file=kept_in, console_path=CONSOLE_PREFIX if console is not None else None))
    app = AccessLog(DispatcherMiddleware(web, mounts))
    server = make_server("127.0.0.1", current.port, app, threaded=True, request_handler=QuietRequestHandler)
    threading.Thread(target=subscribe_and_check, args=(current,), name="dev-check", daemon=True).start()

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"bookingflow dev: serving on {current.public_url}", flush=True)
    print(f"  open {current.public_url}/ in a browser: the reference client, a control page per booking, the outbox",
          flush=True)
    print(f"  database: {database_location(current.database_url)}", flush=True)
    print(f"  sandbox Stripe and Calendly at {current.public_url}{SANDBOX_PREFIX}; their state "
          f"{'restored from' if restored else 'kept in'} {kept_in} (delete it with the database to start afresh)",
          flush=True)
    print(f"  or from a terminal: bookingflow demo {current.public_url}", flush=True)
    try:
        server.serve_forever()
    finally:
        sweeper.shutdown(wait=False)
        sandbox.close()
        worker.stop()
    return 0
