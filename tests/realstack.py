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
