"""The service on real processes with servers a test may break: a PostgreSQL and a Redis of its own
(restarted at will), and each Procfile process started on its own, so that one can be SIGKILLed and
started again while the others run (honcho would stop them all when one dies)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

from support.waiting import wait_until
from support.realstack import ROOT, _stop_group, free_port

PG_PROGRAMS = ("initdb", "pg_ctl")


def postgres_bindir() -> str | None:
    """Where initdb and pg_ctl are: pg_config's bindir, the newest /usr/lib/postgresql/*/bin, or PATH."""
    candidates = []
    if shutil.which("pg_config"):
        try:
            candidates.append(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                             timeout=10).stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
                         reverse=True)
    for directory in candidates:
        if directory and all(os.access(os.path.join(directory, program), os.X_OK) for program in PG_PROGRAMS):
            return directory
    if all(shutil.which(program) for program in PG_PROGRAMS):
        return str(Path(shutil.which("initdb")).parent)
    return None


def servers_problem() -> str | None:
    """What is missing to run private servers, or None."""
    if postgres_bindir() is None:
        return "initdb and pg_ctl not found (pg_config --bindir, /usr/lib/postgresql/*/bin, PATH)"
    if shutil.which("redis-server") is None:
        return "redis-server not found on PATH"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root, and runuser (to run initdb as postgres) not found"
    return None


class PrivatePostgres:
    """A PostgreSQL server of its own in a temporary directory, on a free port, trust auth. As root it
    runs as the `postgres` user, since initdb refuses root."""

    def __init__(self, down_seconds: float = 3.0):
        self.bindir = postgres_bindir()
        self.port = free_port()
        self.down_seconds = down_seconds
        self.home = Path(tempfile.mkdtemp(prefix="bookingflow-faults-pg-"))
        self.data = self.home / "data"
        self.log_path = self.home / "postgres.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.home, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        self.start()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [os.path.join(self.bindir, program), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, cwd=self.home, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"{program} failed: {result.stdout}{result.stderr}")
        return result

    def start(self) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.home} -c fsync=off "
                   "-c full_page_writes=off -c max_connections=400")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "-t", "60", "start")

    def restart(self, while_down=None) -> float:
        """A crash (immediate stop: no checkpoint, every connection cut), then a start after
        `down_seconds`, spent in `while_down(deadline)` if given. Returns how long it was down."""
        went_down = time.monotonic()
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        _stay_down(went_down + self.down_seconds, while_down)
        self.start()
        return time.monotonic() - went_down

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.home, ignore_errors=True)


class PrivateRedis:
    """A Redis server of its own, without persistence: a restart loses every message it held."""

    def __init__(self, down_seconds: float = 3.0):
        self.port = free_port()
        self.down_seconds = down_seconds
        self.home = Path(tempfile.mkdtemp(prefix="bookingflow-faults-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        log = open(self.home / "redis.log", "a")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.home)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_until(lambda: self._answers(client), timeout=30, interval=0.05, message="the private Redis")

    @staticmethod
    def _answers(client) -> bool:
        try:
            return bool(client.ping())
        except Exception:
            return False

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def restart(self, while_down=None) -> float:
        """SIGKILL (nothing kept), `down_seconds` down (spent in `while_down(deadline)` if given),
        started again on the same port. Returns how long it was down."""
        went_down = time.monotonic()
        self.kill()
        _stay_down(went_down + self.down_seconds, while_down)
        self.start()
        return time.monotonic() - went_down

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.home, ignore_errors=True)


def _stay_down(until: float, while_down) -> None:
    """The outage under test: a server kept down on purpose until `until`."""
    if while_down is not None:
        while_down(until)
    remaining = until - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)


def procfile() -> dict[str, str]:
    """The Procfile's process types and their command lines."""
    kinds = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and ":" in line:
            name, command = line.split(":", 1)
            kinds[name.strip()] = command.strip()
    return kinds


class ProcessSet:
    """Procfile processes started one by one, each with `sh -c` in a process group of its own, its own
    PORT and its own log file, as a platform runs dynos: one may die and be started again alone."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = {**env, "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])}
        self.log_dir = log_dir
        self.commands = procfile()
        self.running: dict[str, subprocess.Popen] = {}
        self.ports: dict[str, int] = {}
        self.starts: Counter = Counter()
        self._lock = threading.Lock()

    def release(self) -> None:
        """The Procfile's release line, run to its end before anything starts."""
        result = subprocess.run(["sh", "-c", self.commands["release"]], env=self.env, cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise AssertionError(f"release failed: {result.stdout}{result.stderr}")

    def start(self, name: str) -> subprocess.Popen:
        """Start `name` (e.g. "worker.2": the kind before the dot), or start it again after it died."""
        kind = name.split(".", 1)[0]
        with self._lock:
            port = self.ports.setdefault(name, free_port())
            self.starts[name] += 1
            log = open(self.log_dir / f"{name}.log", "a")
            # A home of its own, as each dyno has its own container: two gunicorns under one HOME
            # fight over ~/.gunicorn/gunicorn.ctl.
            home = self.log_dir / "homes" / name
            home.mkdir(parents=True, exist_ok=True)
            process = subprocess.Popen(["sh", "-c", self.commands[kind]], env={**self.env, "PORT": str(port), "HOME": str(home)},
                                       cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            self.running[name] = process
        return process

    def base(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def wait_answering(self, name: str, path: str = "/readyz", timeout: float = 90) -> None:
        def answering():
            if self.running[name].poll() is not None:
                raise AssertionError(f"{name} exited early:\n{self.log(name)}")
            try:
                return requests.get(self.base(name) + path, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(answering, timeout=timeout, interval=0.2, message=f"{name} answering {path}")

    def kill(self, name: str) -> None:
        """SIGKILL to the whole process group: the dramatiq CLI and its worker process alike."""
        process = self.running[name]
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)
        _stop_group(process.pid, timeout=5)  # anything of the group that outlived the signal

    def stop_all(self) -> None:
        for name, process in list(self.running.items()):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for process in self.running.values():
            _stop_group(process.pid, timeout=20)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def log(self, name: str, tail: int = 20000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def logs(self) -> dict[str, str]:
        return {path.stem: path.read_text(errors="replace") for path in sorted(self.log_dir.glob("*.log"))}


class MailSink:
    """An SMTP server on a free port that keeps every message it is handed (SMTP_URL points here)."""

    def __init__(self):
        from aiosmtpd.controller import Controller

        self.messages: list = []
        self._lock = threading.Lock()
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        self.url = f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server, session, envelope):
        from email import message_from_bytes

        message = message_from_bytes(envelope.content)
        with self._lock:
            self.messages.append(message)
        return "250 OK"

    def message_ids(self) -> Counter:
        with self._lock:
            return Counter(message["Message-ID"] for message in self.messages)

    def stop(self) -> None:
        self.controller.stop()
