"""Fixtures: the database (SQLite, or PostgreSQL with TEST_DATABASE_URL), the broker (stub, or Redis
with TEST_REDIS_URL, or RabbitMQ with TEST_RABBITMQ_URL), the provider sandbox on a local port, the
app, a live server and workers.

A test that needs PostgreSQL, Redis or RabbitMQ skips when they are absent, except under CI=true,
where it fails.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time

import pytest

from bookingflow import settings as settings_module

CI = os.environ.get("CI", "").lower() == "true"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
TEST_RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "")
if TEST_REDIS_URL and TEST_RABBITMQ_URL:
    raise pytest.UsageError("set TEST_REDIS_URL or TEST_RABBITMQ_URL for the suite's broker, not both")
_TMP = tempfile.mkdtemp(prefix="bookingflow-tests-")

STRIPE_KEY = "sk_test_" + secrets.token_hex(12)
STRIPE_WEBHOOK_SECRET = "whsec_" + secrets.token_hex(24)
CALENDLY_TOKEN = "calendly_test_" + secrets.token_hex(12)
CALENDLY_KEY = secrets.token_hex(24)


# The end-to-end tests start the Procfile's processes against PostgreSQL and Redis (and one of them
# against RabbitMQ): they run with the suite itself on PostgreSQL and Redis, the leg that has them all,
# and are skipped on the embedded defaults and the RabbitMQ leg, which would only run them again.
END_TO_END = TEST_DATABASE_URL.startswith("postgres") and bool(TEST_REDIS_URL)


def pytest_collection_modifyitems(config, items):
    if END_TO_END:
        return
    skip = pytest.mark.skip(reason="end-to-end: runs with the suite on PostgreSQL + Redis "
                                   "(set TEST_DATABASE_URL=postgresql://... and TEST_REDIS_URL=redis://...)")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


def require_service(name: str, problem: str | None) -> None:
    """Skip (locally) or fail (CI) when a service the test needs is missing."""
    if problem is None:
        return
    if CI:
        pytest.fail(f"{name} is required under CI=true: {problem}")
    pytest.skip(f"{name} not available: {problem}")


def postgres_problem(url: str) -> str | None:
    import psycopg2

    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except Exception as exc:
        return f"{url}: {exc.__class__.__name__}"
    return None


def redis_problem(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"{url}: {exc.__class__.__name__}"
    return None


def rabbitmq_problem(url: str) -> str | None:
    import pika

    try:
        parameters = pika.URLParameters(url)
        parameters.connection_attempts, parameters.socket_timeout, parameters.stack_timeout = 1, 3, 5
        pika.BlockingConnection(parameters).close()
    except Exception as exc:
        return f"{url}: {exc.__class__.__name__}"
    return None


def wait_until(predicate, timeout: float = 20, interval: float = 0.02, message: str = "condition"):
    """Poll with a deadline; returns the predicate's truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Settled before any test module is imported, so tests may import product modules at the top
# (importing `jobs` builds the broker from the settings). Nothing connects yet: the fixtures below
# start the sandbox on this port, create the scratch database and skip or fail on missing services.
SANDBOX_BASE = f"http://127.0.0.1:{_free_port()}"
SCRATCH_DATABASE = f"bookingflow_test_{secrets.token_hex(6)}"


def _suite_database_url() -> str:
    if not TEST_DATABASE_URL:
        return f"sqlite:///{_TMP}/suite.db"
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(TEST_DATABASE_URL)._replace(path=f"/{SCRATCH_DATABASE}"))


# On a RabbitMQ of this machine the suite runs in a vhost of its own (added with rabbitmqctl), as it
# does in a database of its own: another run on the same server, or what an earlier one left in
# TEST_RABBITMQ_URL's vhost, cannot take or feed its messages. On another server: that vhost, purged.
def _scratch_vhost() -> str:
    import shutil
    from urllib.parse import urlsplit

    local = urlsplit(TEST_RABBITMQ_URL).hostname in ("127.0.0.1", "localhost", "::1")
    return SCRATCH_DATABASE if TEST_RABBITMQ_URL and local and shutil.which("rabbitmqctl") else ""


SCRATCH_VHOST = _scratch_vhost()


def _suite_broker_url() -> str:
    if TEST_RABBITMQ_URL and SCRATCH_VHOST:
        from urllib.parse import quote, urlsplit, urlunsplit

        return urlunsplit(urlsplit(TEST_RABBITMQ_URL)._replace(path="/" + quote(SCRATCH_VHOST, safe="")))
    return TEST_REDIS_URL or TEST_RABBITMQ_URL or settings_module.EMBEDDED_BROKER_URL


@pytest.fixture(scope="session")
def sandbox():
    from urllib.parse import urlsplit

    from sandbox import Sandbox, SandboxConfig, serve_in_thread

    box = Sandbox(SandboxConfig(
        stripe_secret_key=STRIPE_KEY, stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
        calendly_api_token=CALENDLY_TOKEN, calendly_signing_key=CALENDLY_KEY, public_base=SANDBOX_BASE,
    ))
    server, base = serve_in_thread(box.app, port=urlsplit(SANDBOX_BASE).port)
    box.base = base
    yield box
    box.close()
    server.shutdown()


def service_environment(sandbox_base: str, database_url: str, broker_url: str) -> dict[str, str]:
    """The environment a serving process of the suite runs with (also handed to real processes)."""
    return {
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "STRIPE_SECRET_KEY": STRIPE_KEY,
        "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
        "STRIPE_API_BASE": sandbox_base + "/stripe",
        "CALENDLY_API_TOKEN": CALENDLY_TOKEN,
        "CALENDLY_WEBHOOK_SIGNING_KEY": CALENDLY_KEY,
        "CALENDLY_API_BASE": sandbox_base + "/calendly",
        "PUBLIC_URL": "https://frontend.example",
        # The suite polls the client API from 127.0.0.1 far faster than any frontend, for its whole
        # run; tests/test_rate_limit.py builds the limited apps it needs.
        "CLIENT_RATE_LIMIT": "off",
    }


SUITE_BROKER_URL = _suite_broker_url()
SUITE_SETTINGS = settings_module.configure(settings_module.load(service_environment(
    SANDBOX_BASE, _suite_database_url(), SUITE_BROKER_URL)))


@pytest.fixture(scope="session")
def service_settings(sandbox):
    scratch = vhost = None
    if TEST_DATABASE_URL:
        from realstack import ScratchDatabase

        require_service("PostgreSQL", postgres_problem(TEST_DATABASE_URL))
        # A database of the suite's own on that server: nothing left there by earlier runs matters.
        scratch = ScratchDatabase(TEST_DATABASE_URL, name=SCRATCH_DATABASE)
    if TEST_REDIS_URL:
        require_service("Redis", redis_problem(TEST_REDIS_URL))
    if TEST_RABBITMQ_URL:
        require_service("RabbitMQ", rabbitmq_problem(TEST_RABBITMQ_URL))
        if SCRATCH_VHOST:
            from realstack import ScratchVhost

            vhost = ScratchVhost(TEST_RABBITMQ_URL, name=SCRATCH_VHOST, fallback=False)
            require_service("RabbitMQ", None if vhost.scratch else f"rabbitmqctl could not add the vhost {SCRATCH_VHOST}")
    yield settings_module.configure(SUITE_SETTINGS)
    if vhost:
        vhost.drop()  # closes the connections still open in it
    if scratch:
        from models.db import database

        database.close_all()  # return the pool's connections before the database goes
        scratch.drop()


@pytest.fixture(scope="session")
def app(service_settings):
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
    import jobs

    if TEST_RABBITMQ_URL:
        _join_like_redis(jobs.broker)
    return jobs.broker


# The suite's in-process workers (the `worker` fixture), for the RabbitMQ join below.
RUNNING_WORKERS: list = []


def _on_a_live_connection(broker, operation):
    """Run a RabbitMQ operation on this thread's connection, once more on a new one if the server had
    closed it (an idle connection misses its heartbeats; dramatiq's enqueue retries, flush does not)."""
    import pika.exceptions

    try:
        return operation()
    except pika.exceptions.AMQPConnectionError:
        del broker.connection
        return operation()


def flush_broker(broker) -> None:
    """Empty the suite's queues (delay and dead-letter queues too)."""
    from dramatiq.brokers.stub import StubBroker

    if TEST_RABBITMQ_URL:
        _on_a_live_connection(broker, broker.flush_all)
        return
    broker.flush_all()
    if isinstance(broker, StubBroker):
        # A message an earlier test's worker had taken and held when it stopped (a retry waiting for
        # its eta) is never acknowledged, and the stub's join would wait for it forever. Redis and
        # RabbitMQ give such a message back to its queue, where flush_all drops it.
        for queue in broker.queues.values():
            with queue.all_tasks_done:
                queue.unfinished_tasks = 0
                queue.all_tasks_done.notify_all()


def _join_like_redis(broker) -> None:
    """RabbitmqBroker.join counts only the messages waiting in RabbitMQ, not those a worker took and
    has not acknowledged yet: it could return while a job still runs. The stub's and Redis's joins
    wait for those too, and the suite relies on it: this one also waits until the suite's workers
    hold no message (running or delayed), seen empty several times in a row."""
    import types

    from dramatiq.errors import QueueJoinTimeout

    def busy() -> bool:
        return any(worker.work_queue.unfinished_tasks
                   or any(consumer.delay_queue.unfinished_tasks for consumer in worker.consumers.values())
                   for worker in RUNNING_WORKERS)

    def join(self, queue_name, min_successes=5, idle_time=20, *, timeout=None):
        deadline = timeout and time.monotonic() + timeout / 1000
        successes = 0
        while successes < min_successes:
            if deadline and time.monotonic() >= deadline:
                raise QueueJoinTimeout(queue_name)
            ready, delayed, _dead = _on_a_live_connection(self, lambda: self.get_queue_message_counts(queue_name))
            successes = successes + 1 if ready + delayed == 0 and not busy() else 0
            time.sleep(idle_time / 1000)

    broker.join = types.MethodType(join, broker)


@pytest.fixture(autouse=True)
def _clean_state(request):
    """Every test starts with empty tables and an empty queue."""
    if "app" not in request.fixturenames and "live_server" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("app")
    from models.db import database
    from models.tables import ALL_TABLES

    flush_broker(request.getfixturevalue("broker"))
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
    import dramatiq

    running = dramatiq.Worker(broker, worker_threads=4, worker_timeout=50)
    running.start()
    RUNNING_WORKERS.append(running)
    yield running
    running.stop()
    RUNNING_WORKERS.remove(running)
    # Stopping gives the worker's unacknowledged messages back to their queue (RabbitMQ does so as
    # its consumers close): purge them now, or they would run in the next test.
    flush_broker(broker)


@pytest.fixture
def session_type(app, sandbox):
    return make_session_type(sandbox.base, "coaching-hour", price=12000)


POLICY = {"full_before_hours": 48, "partial_before_hours": 24, "partial_percent": 50}


@pytest.fixture
def catalogue(session_type, sandbox):
    """coaching-hour (120.00, no policy), short-call (50.00) and long-call (200.00) with POLICY."""
    make_session_type(sandbox.base, "short-call", price=5000, refund_policy=POLICY)
    make_session_type(sandbox.base, "long-call", price=20000, refund_policy=POLICY)


@pytest.fixture
def customer(live_server, sandbox, catalogue):
    """The frontend's side over HTTP, with no worker running yet. Whatever the test held back at the
    sandbox is dropped afterwards, so it can never reach the next test."""
    from flows import Client

    yield Client(live_server, sandbox)
    sandbox.drop_pending_deliveries()
    for provider in ("calendly", "stripe"):
        sandbox.hold_deliveries(provider, False)
    sandbox.wait_deliveries_idle()


@pytest.fixture
def frontend(customer, worker):
    """The frontend, with the workers running."""
    return customer


def make_session_type(sandbox_base: str, slug: str, price: int = 5000, currency: str = "usd", **extra):
    from ops.catalog import import_session_types
    from models.tables import SessionType

    import_session_types([{
        "slug": slug, "name": slug.replace("-", " ").title(), "duration_minutes": 60, "price": price,
        "currency": currency, "calendly_event_type": f"https://api.calendly.com/event_types/{slug}",
        "scheduling_url": f"{sandbox_base}/calendly/book/{slug}", **extra,
    }])
    return SessionType.get(SessionType.slug == slug)
