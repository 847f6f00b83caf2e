"""The suite's own world: the servers it was given (TEST_DATABASE_URL, TEST_REDIS_URL,
TEST_RABBITMQ_URL), the secrets it shares with its provider sandbox, and the settings every
in-process app and worker of the run uses.

These are plain values, chosen once when the module is first imported; nothing connects here. The
fixtures (tests/conftest.py) start the sandbox on SANDBOX_BASE, create the scratch database and vhost,
and skip or fail when a server is missing; `install_settings` puts SUITE_SETTINGS in place.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from bookingflow import settings as settings_module

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
TEST_RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "")

STRIPE_KEY = "sk_test_" + secrets.token_hex(12)
STRIPE_WEBHOOK_SECRET = "whsec_" + secrets.token_hex(24)
CALENDLY_TOKEN = "calendly_test_" + secrets.token_hex(12)
CALENDLY_KEY = secrets.token_hex(24)

# The end-to-end tests start the Procfile's processes against PostgreSQL and Redis (and one of them
# against RabbitMQ): they run with the suite itself on PostgreSQL and Redis, the leg that has them all,
# and are skipped on the embedded defaults and the RabbitMQ leg, which would only run them again.
END_TO_END = TEST_DATABASE_URL.startswith("postgres") and bool(TEST_REDIS_URL)
END_TO_END_SKIP_REASON = ("end-to-end: runs with the suite on PostgreSQL + Redis "
                          "(set TEST_DATABASE_URL=postgresql://... and TEST_REDIS_URL=redis://...)")

_TMP = tempfile.mkdtemp(prefix="bookingflow-tests-")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The sandbox's address is part of the settings (the providers' API bases), so it is chosen before
# the sandbox starts; the `sandbox` fixture serves on this port.
SANDBOX_BASE = f"http://127.0.0.1:{_free_port()}"
# A database of the suite's own on TEST_DATABASE_URL's server: nothing left there by earlier runs matters.
SCRATCH_DATABASE = f"bookingflow_test_{secrets.token_hex(6)}"


def _suite_database_url() -> str:
    if not TEST_DATABASE_URL:
        return f"sqlite:///{_TMP}/suite.db"
    return urlunsplit(urlsplit(TEST_DATABASE_URL)._replace(path=f"/{SCRATCH_DATABASE}"))


# On a RabbitMQ of this machine the suite runs in a vhost of its own (added with rabbitmqctl), as it
# does in a database of its own: another run on the same server, or what an earlier one left in
# TEST_RABBITMQ_URL's vhost, cannot take or feed its messages. On another server: that vhost, purged.
def _scratch_vhost() -> str:
    local = urlsplit(TEST_RABBITMQ_URL).hostname in ("127.0.0.1", "localhost", "::1")
    return SCRATCH_DATABASE if TEST_RABBITMQ_URL and local and shutil.which("rabbitmqctl") else ""


SCRATCH_VHOST = _scratch_vhost()


def _suite_broker_url() -> str:
    if TEST_RABBITMQ_URL and SCRATCH_VHOST:
        return urlunsplit(urlsplit(TEST_RABBITMQ_URL)._replace(path="/" + quote(SCRATCH_VHOST, safe="")))
    return TEST_REDIS_URL or TEST_RABBITMQ_URL or settings_module.EMBEDDED_BROKER_URL


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
SUITE_SETTINGS = settings_module.load(service_environment(SANDBOX_BASE, _suite_database_url(), SUITE_BROKER_URL))


def install_settings() -> settings_module.Settings:
    """Make SUITE_SETTINGS the process's settings. Called from pytest_configure, before any test
    module is imported: test modules import product modules at the top, and importing `jobs` builds
    the broker from the settings then. It connects to nothing."""
    if TEST_REDIS_URL and TEST_RABBITMQ_URL:
        raise pytest.UsageError("set TEST_REDIS_URL or TEST_RABBITMQ_URL for the suite's broker, not both")
    return settings_module.configure(SUITE_SETTINGS)
