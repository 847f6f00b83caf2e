"""Fixtures: the database (SQLite, or PostgreSQL with TEST_DATABASE_URL), the broker (stub, or Redis
with TEST_REDIS_URL, or RabbitMQ with TEST_RABBITMQ_URL), the provider sandbox on a local port, the
app, a live server, workers, a catalogue of session types and the frontend's side of a booking.

A test that needs PostgreSQL, Redis or RabbitMQ skips when they are absent, except under CI=true,
where it fails. What the fixtures are built from lives in tests/support/.
"""

from __future__ import annotations

import pytest

from bookingflow import settings as settings_module
from support import brokers, suite
from support.catalogue import POLICY, make_session_type
from support.services import postgres_problem, rabbitmq_problem, redis_problem, require_service


def pytest_configure(config):
    # Before any test module is imported: they import product modules at the top (support/suite.py).
    suite.install_settings()


def pytest_collection_modifyitems(config, items):
    # The end-to-end tests run with the suite on PostgreSQL + Redis only (support/suite.py).
    if suite.END_TO_END:
        return
    skip = pytest.mark.skip(reason=suite.END_TO_END_SKIP_REASON)
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def sandbox():
    """Stripe and Calendly, faked, on the suite's SANDBOX_BASE."""
    from urllib.parse import urlsplit

    from sandbox import Sandbox, SandboxConfig, serve_in_thread

    box = Sandbox(SandboxConfig(
        stripe_secret_key=suite.STRIPE_KEY, stripe_webhook_secret=suite.STRIPE_WEBHOOK_SECRET,
        calendly_api_token=suite.CALENDLY_TOKEN, calendly_signing_key=suite.CALENDLY_KEY,
        public_base=suite.SANDBOX_BASE,
    ))
    server, base = serve_in_thread(box.app, port=urlsplit(suite.SANDBOX_BASE).port)
    box.base = base
    yield box
    box.close()
    server.shutdown()


@pytest.fixture(scope="session")
def service_settings(sandbox):
    """The suite's settings, once the servers they name are there (a scratch database and vhost)."""
    from support.realstack import ScratchDatabase, ScratchVhost

    scratch = vhost = None
    if suite.TEST_DATABASE_URL:
        require_service("PostgreSQL", postgres_problem(suite.TEST_DATABASE_URL))
        scratch = ScratchDatabase(suite.TEST_DATABASE_URL, name=suite.SCRATCH_DATABASE)
    if suite.TEST_REDIS_URL:
        require_service("Redis", redis_problem(suite.TEST_REDIS_URL))
    if suite.TEST_RABBITMQ_URL:
        require_service("RabbitMQ", rabbitmq_problem(suite.TEST_RABBITMQ_URL))
        if suite.SCRATCH_VHOST:
            vhost = ScratchVhost(suite.TEST_RABBITMQ_URL, name=suite.SCRATCH_VHOST, fallback=False)
            require_service("RabbitMQ", None if vhost.scratch
                            else f"rabbitmqctl could not add the vhost {suite.SCRATCH_VHOST}")
    yield settings_module.configure(suite.SUITE_SETTINGS)
    if vhost:
        vhost.drop()  # closes the connections still open in it
    if scratch:
        from models.db import database

        database.close_all()  # return the pool's connections before the database goes
        scratch.drop()


@pytest.fixture(scope="session")
def app(service_settings):
    """The web app on the suite's database, migrated."""
    from intake import create_app
    from models import migrations
    from models.db import database

    application = create_app(service_settings)
    with database.connection_context():
        migrations.upgrade()
    return application


@pytest.fixture
def app_with(app, service_settings):
    """Builds an app from the suite's settings with `changes` (a rate limit, an allowlist), and answers
    its test client; the suite's settings are put back after."""
    def build(**changes):
        from intake import create_app

        return create_app(service_settings.replace(**changes)).test_client()

    yield build
    settings_module.configure(service_settings)


@pytest.fixture(scope="session")
def broker(app):
    """The broker `jobs` built from the suite's settings; joined alike on every backend."""
    import jobs
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    if isinstance(jobs.broker, RabbitmqBroker):
        brokers.join_counting_held_messages(jobs.broker)
    return jobs.broker


@pytest.fixture(autouse=True)
def _clean_state(request):
    """Every test that uses the app starts with empty tables and an empty queue."""
    if "app" not in request.fixturenames and "live_server" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("app")
    from models.db import database
    from models.tables import ALL_TABLES

    brokers.flush_broker(request.getfixturevalue("broker"))
    with database.connection_context():
        for table in reversed(ALL_TABLES):
            table.delete().execute()
    database.connect(reuse_if_open=True)
    yield
    if not database.is_closed():
        database.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def live_server(app, sandbox):
    """Our app on a real local port, where the sandbox sends its signed deliveries."""
    from sandbox import serve_in_thread

    server, base = serve_in_thread(app)
    sandbox.config.stripe_webhook_url = base + "/webhooks/stripe"
    sandbox.config.calendly_webhook_url = base + "/webhooks/calendly"
    yield base
    server.shutdown()


@pytest.fixture
def worker(broker):
    """Dramatiq workers in this process, on the suite's broker."""
    import dramatiq

    running = dramatiq.Worker(broker, worker_threads=4, worker_timeout=50)
    running.start()
    brokers.RUNNING_WORKERS.append(running)
    yield running
    running.stop()
    brokers.RUNNING_WORKERS.remove(running)
    # A worker adds a middleware of its own to the broker and stopping leaves it there: take it out,
    # or the session's broker collects one per test (and warns at each new worker that it has one).
    broker.middleware[:] = [m for m in broker.middleware if getattr(m, "worker", None) is not running]
    # Stopping gives the worker's unacknowledged messages back to their queue (RabbitMQ does so as
    # its consumers close): purge them now, or they would run in the next test.
    brokers.flush_broker(broker)


@pytest.fixture
def session_type(app, sandbox):
    return make_session_type(sandbox.base, "coaching-hour", price=12000)


@pytest.fixture
def catalogue(session_type, sandbox):
    """coaching-hour (120.00, no policy), short-call (50.00) and long-call (200.00) with POLICY."""
    make_session_type(sandbox.base, "short-call", price=5000, refund_policy=POLICY)
    make_session_type(sandbox.base, "long-call", price=20000, refund_policy=POLICY)


@pytest.fixture
def customer(live_server, sandbox, catalogue):
    """The frontend's side over HTTP, with no worker running yet. Whatever the test held back at the
    sandbox is dropped afterwards, so it can never reach the next test."""
    from support.flows import Client

    yield Client(live_server, sandbox)
    sandbox.drop_pending_deliveries()
    for provider in ("calendly", "stripe"):
        sandbox.hold_deliveries(provider, False)
    sandbox.wait_deliveries_idle()


@pytest.fixture
def frontend(customer, worker):
    """The frontend, with the workers running."""
    return customer


@pytest.fixture
def mailbox(app):
    """A real SMTP server on a local port, which the suite's settings send the client e-mails to."""
    from support.mail import Mailbox

    box = Mailbox()
    box.start()
    current = settings_module.get()
    settings_module.configure(current.replace(smtp_url=box.url))
    yield box
    settings_module.configure(current)
    box.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """An empty database of the test's own, for the CLI's migrations: SQLite, and PostgreSQL (a
    scratch database on TEST_DATABASE_URL's server, or realstack's POSTGRES_URL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/migrations.db"
        return
    from support.realstack import POSTGRES_URL, ScratchDatabase

    require_service("PostgreSQL", postgres_problem(suite.TEST_DATABASE_URL or POSTGRES_URL))
    scratch = ScratchDatabase(suite.TEST_DATABASE_URL or POSTGRES_URL)
    yield scratch.url
    scratch.drop()


@pytest.fixture
def calendly_token(sandbox, service_settings):
    """bookingflow's Calendly token replaced by a fresh one the sandbox grants as told (its user,
    role and scopes: sandbox.calendly.grant); the suite's token back after."""
    import secrets

    def use(**grant) -> str:
        token = "calendly_test_" + secrets.token_hex(12)
        sandbox.calendly.grant(token, **grant)
        settings_module.configure(service_settings.replace(calendly_api_token=token))
        return token

    yield use
    settings_module.configure(service_settings)
    sandbox.calendly.revoke_grants()
