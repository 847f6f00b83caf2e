"""The service as operators run it: `honcho start` on the Procfile, against PostgreSQL and Redis,
with a provider sandbox on a local port standing in for Stripe and Calendly."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

from conftest import wait_until

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_environment() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH", "TMPDIR")
    return {key: os.environ[key] for key in keep if key in os.environ}


def run_cli(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "bookingflow.cli", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"bookingflow {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


class ScratchDatabase:
    """A PostgreSQL database of its own, created on the server of `admin_url` and dropped after."""

    def __init__(self, admin_url: str, name: str | None = None):
        import psycopg2

        self.admin_url = admin_url
        self.name = name or f"bookingflow_e2e_{secrets.token_hex(6)}"
        self._connect = psycopg2.connect
        self._execute(f'CREATE DATABASE "{self.name}"')
        parts = urlsplit(admin_url)
        self.url = urlunsplit(parts._replace(path=f"/{self.name}"))

    def _execute(self, statement: str) -> None:
        connection = self._connect(self.admin_url, connect_timeout=5)
        connection.autocommit = True
        try:
            connection.cursor().execute(statement)
        finally:
            connection.close()

    def drop(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class RealStack:
    """web, worker and scheduler from the Procfile, started by honcho in their own process group."""

    def __init__(self, env: dict[str, str], log_path: Path, processes=("web", "worker", "scheduler"), concurrency=""):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env, self.log_path = env, log_path
        command = ["honcho", "-f", str(ROOT / "Procfile"), "-d", str(ROOT), "start", "--no-colour", "-p", str(self.port)]
        if concurrency:
            command += ["-c", concurrency]
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(command + list(processes), env=env, cwd=ROOT, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, path: str = "/healthz", timeout: float = 60) -> None:
        def answering():
            if self.process.poll() is not None:
                raise AssertionError(f"the stack exited early:\n{self.log()}")
            try:
                return requests.get(self.base + path, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(answering, timeout=timeout, interval=0.2, message=f"{self.base}{path}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-20000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


def import_session_types(env: dict, tmp_path: Path, sandbox_base: str, items: list[dict]) -> None:
    catalogue = tmp_path / "session-types.json"
    catalogue.write_text(json.dumps([
        {"duration_minutes": 60, "currency": "usd",
         "calendly_event_type": f"https://api.calendly.com/event_types/{item['slug']}",
         "scheduling_url": f"{sandbox_base}/calendly/book/{item['slug']}", "name": item["slug"].title(), **item}
        for item in items
    ]))
    run_cli(env, "session-types", "import", str(catalogue))


POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "") if os.environ.get("TEST_DATABASE_URL", "").startswith("postgres") \
    else "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/14"


@contextmanager
def running_service(tmp_path: Path, extra_env: dict | None = None, concurrency: str = "",
                    session_types: list[dict] | None = None):
    """The whole service on real processes against a scratch PostgreSQL database and Redis, with a
    provider sandbox of its own; yields the RealStack (with `.sandbox`, `.env`, `.redis_url`)."""
    import redis

    from bookingflow.sandbox import Sandbox, SandboxConfig, serve_in_thread
    from conftest import postgres_problem, redis_problem, require_service

    require_service("PostgreSQL", postgres_problem(POSTGRES_URL))
    require_service("Redis", redis_problem(REDIS_URL))
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
        "WEB_CONCURRENCY": "2", "WORKER_THREADS": "4", **(extra_env or {}),
    }
    run_cli(env, "db", "upgrade")  # the Procfile's release step
    import_session_types(env, tmp_path, sandbox_base, session_types or [{"slug": "strategy-session", "price": 25000}])
    stack = RealStack(env, tmp_path / "stack.log", concurrency=concurrency)
    try:
        stack.wait_ready("/readyz")
        sandbox.config.stripe_webhook_url = stack.base + "/webhooks/stripe"
        sandbox.config.calendly_webhook_url = stack.base + "/webhooks/calendly"
        stack.sandbox, stack.redis_url = sandbox, REDIS_URL
        yield stack
    finally:
        stack.stop()
        sandbox.close()
        server.shutdown()
        database.drop()
