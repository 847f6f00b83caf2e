"""The service as operators run it: `honcho start` on the Procfile, against PostgreSQL and Redis (or
RabbitMQ), with a provider sandbox on a local port standing in for Stripe and Calendly."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from support.services import postgres_problem, rabbitmq_problem, redis_problem, require_service
from support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_environment() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH", "TMPDIR")
    return {key: os.environ[key] for key in keep if key in os.environ}


def run_cli(env: dict, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "ops.cli", *args], env=env, cwd=ROOT, input=stdin,
                            capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"bookingflow {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


def procfile_command(kind: str) -> str:
    """The Procfile's command line for one process type, as `sh -c` runs it."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == kind:
            return command.strip()
    raise KeyError(kind)


def start_procfile_process(kind: str, env: dict[str, str], log_path: Path,
                           stderr_path: Path | None = None) -> subprocess.Popen:
    """One Procfile process started on its own, as a platform starts it: `sh -c` with the caller's
    environment (PORT included: several processes may be given the same one), in a process group of
    its own (stop it with stop_group), stdout and stderr to `log_path` (stderr to `stderr_path` if
    given); this interpreter's scripts first on PATH, so it runs this tree's gunicorn and dramatiq."""
    path = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    with open(log_path, "w") as log, open(stderr_path or os.devnull, "w") as errors:
        return subprocess.Popen(["sh", "-c", procfile_command(kind)], env={**env, "PATH": path}, cwd=ROOT,
                                stdout=log, stderr=errors if stderr_path else log, start_new_session=True)


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process started by start_procfile_process, and whatever it started."""
    _stop_group(process.pid)
    process.wait(timeout=10)


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


class ScratchVhost:
    """A RabbitMQ virtual host of its own, added with `rabbitmqctl` (when the server runs on this
    machine) and deleted after: `.url` is the URL on it, `.scratch` says it was added. Otherwise, with
    `fallback`, the URL's own vhost, the service's queues purged before and after."""

    def __init__(self, url: str, name: str | None = None, fallback: bool = True):
        self.name = name or f"bookingflow_e2e_{secrets.token_hex(6)}"
        self.url, self.scratch, self.fallback = url, False, fallback
        parts = urlsplit(url)
        if parts.hostname in ("127.0.0.1", "localhost", "::1"):
            try:
                self._ctl("add_vhost", self.name)
                self.scratch = True
                self._ctl("set_permissions", "-p", self.name, parts.username or "guest", ".*", ".*", ".*")
                self.url = urlunsplit(parts._replace(path="/" + quote(self.name, safe="")))
                return
            except (OSError, subprocess.SubprocessError):
                if self.scratch:  # added, but not usable: take it away again
                    self.drop()
        if fallback:
            self._purge()

    @staticmethod
    def _ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)

    def _purge(self) -> None:
        import pika
        import pika.exceptions

        import jobs
        from dramatiq.common import dq_name, xq_name

        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            for queue in jobs.broker.get_declared_queues():
                for name in (queue, dq_name(queue), xq_name(queue)):
                    channel = connection.channel()
                    try:
                        channel.queue_purge(name)
                    except pika.exceptions.ChannelClosedByBroker:
                        pass  # no such queue: nothing to purge
                    else:
                        channel.close()
        finally:
            connection.close()

    def drop(self) -> None:
        if self.scratch:
            subprocess.run(["rabbitmqctl", "delete_vhost", self.name], capture_output=True, timeout=60)
            self.scratch = False
        elif self.fallback:
            self._purge()


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
        # Every process of this stack inherits the mark, so stop() finds them all, orphans included.
        self._mark = f"{STACK_MARK}={secrets.token_hex(8)}".encode()
        marked = {**env, STACK_MARK: self._mark.decode().partition("=")[2]}
        self.process = subprocess.Popen(command + list(processes), env=marked, cwd=ROOT, stdout=self._log,
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
            # honcho runs each process in a process group of its own, and passes SIGTERM on; but a
            # signal that lands while it prints a line crashes it ("reentrant call inside
            # BufferedWriter") and leaves them running: those still up afterwards get it from here.
            groups = _children(self.process.pid)
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            for group in groups:
                _stop_group(group)
        # A honcho that died first (or mid-stop) leaves its processes to init, where _children no longer
        # finds them; a worker left so consumed the next tests' messages from the same Redis database.
        for group in _marked_groups(self._mark):
            _stop_group(group)
        self._log.close()


def _processes() -> list[tuple[int, str, int, int]]:
    """(pid, state, parent, process group) of every process, from /proc (none where there is none)."""
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    state, parent, group = stat.read().rsplit(")", 1)[1].split()[:3]
                found.append((int(entry), state, int(parent), int(group)))
            except (OSError, ValueError):
                continue
    return found


STACK_MARK = "BOOKINGFLOW_TEST_STACK"


def _marked_groups(mark: bytes) -> set[int]:
    """The process groups of every process whose environment carries `mark` (NAME=value)."""
    groups = set()
    for pid, state, _, group in _processes():
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if state != "Z" and mark in environ.read().split(b"\0") and group != os.getpgrp():
                    groups.add(group)
        except OSError:
            continue
    return groups


def _children(pid: int) -> list[int]:
    return [child for child, _, parent, _ in _processes() if parent == pid]


def _stop_group(group: int, timeout: float = 20) -> None:
    """SIGTERM to a process group if anything of it still runs, SIGKILL if it outlives `timeout`."""
    def running():
        return any(g == group and state != "Z" for _, state, _, g in _processes())

    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not running():
            return
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + timeout
        while running() and time.monotonic() < deadline:
            time.sleep(0.1)


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
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL") or "amqp://guest:guest@127.0.0.1:5672/%2F"


@contextmanager
def running_service(tmp_path: Path, extra_env: dict | None = None, concurrency: str = "",
                    session_types: list[dict] | None = None, broker_url: str = REDIS_URL):
    """The whole service on real processes against a scratch PostgreSQL database and the broker of
    `broker_url` (Redis, flushed; or RabbitMQ, `amqp://...`, on a scratch vhost), with a provider
    sandbox of its own; yields the RealStack (with `.sandbox`, `.env`, `.broker_url`, and `.redis_url`
    on Redis)."""
    from sandbox import Sandbox, SandboxConfig, serve_in_thread

    rabbitmq = urlsplit(broker_url).scheme in ("amqp", "amqps")
    require_service("PostgreSQL", postgres_problem(POSTGRES_URL))
    if rabbitmq:
        require_service("RabbitMQ", rabbitmq_problem(broker_url))
    else:
        require_service("Redis", redis_problem(broker_url))
    secret = {"key": "sk_test_" + secrets.token_hex(8), "whsec": "whsec_" + secrets.token_hex(16),
              "token": secrets.token_hex(8), "signing": secrets.token_hex(16)}
    sandbox = Sandbox(SandboxConfig(secret["key"], secret["whsec"], secret["token"], secret["signing"]))
    server, sandbox_base = serve_in_thread(sandbox.app)
    sandbox.config.public_base = sandbox.base = sandbox_base
    database = ScratchDatabase(POSTGRES_URL)
    vhost = None
    if rabbitmq:
        vhost = ScratchVhost(broker_url)
        broker_url = vhost.url
    else:
        import redis

        redis.Redis.from_url(broker_url).flushdb()
    env = {
        **base_environment(),
        "DATABASE_URL": database.url, "BROKER_URL": broker_url,
        "STRIPE_SECRET_KEY": secret["key"], "STRIPE_WEBHOOK_SECRET": f"whsec_old_rotated,{secret['whsec']}",
        "STRIPE_API_BASE": sandbox_base + "/stripe",
        "CALENDLY_API_TOKEN": secret["token"], "CALENDLY_WEBHOOK_SIGNING_KEY": secret["signing"],
        "CALENDLY_API_BASE": sandbox_base + "/calendly",
        "PUBLIC_URL": "https://frontend.example", "SWEEP_INTERVAL_SECONDS": "1",
        "WEB_CONCURRENCY": "2", "WORKER_THREADS": "4",
        # The scraper's token, and the worker's exporter on a port of this stack's own: another stack
        # (or a worker of another run) on this machine would otherwise have 9191 first.
        "METRICS_TOKEN": secrets.token_urlsafe(24), "WORKER_METRICS_PORT": str(free_port()),
        **(extra_env or {}),
    }
    stack = None
    try:
        run_cli(env, "db", "upgrade")  # the Procfile's release step
        import_session_types(env, tmp_path, sandbox_base, session_types or [{"slug": "strategy-session", "price": 25000}])
        stack = RealStack(env, tmp_path / "stack.log", concurrency=concurrency)
        stack.wait_ready("/readyz")
        sandbox.config.stripe_webhook_url = stack.base + "/webhooks/stripe"
        sandbox.config.calendly_webhook_url = stack.base + "/webhooks/calendly"
        stack.sandbox, stack.broker_url = sandbox, broker_url
        if not rabbitmq:
            stack.redis_url = broker_url
        yield stack
    finally:
        if stack:
            stack.stop()
        sandbox.close()
        server.shutdown()
        database.drop()
        if vhost:
            vhost.drop()


def on_stack(stack, check):
    """Run `check`; a failed assertion carries the end of the stack's log."""
    try:
        return check()
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n--- stack log ---\n{stack.log()[-6000:]}") from None


def reached(frontend, booking_id: str, state: str, stack, timeout: float = 90) -> dict:
    """The booking's view once it is in `state`; a timeout carries the end of the stack's log."""
    return on_stack(stack, lambda: frontend.wait_for_state(booking_id, state, timeout=timeout))
