"""Shared plumbing of the benchmark scripts: scratch databases, Redis database 13, processes in their
own process groups, wrk and pgbench runs, the machine and the versions, and cleanup that happens
even when a script fails or is interrupted.

Every script is bounded: `deadline(seconds)` arms SIGALRM, which raises inside the main thread, and
`cleanup` (an ExitStack closed by `main_wrapper`) then stops every process this script started and
drops every scratch database it created.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
FIXTURES = ROOT / "tests" / "fixtures"

ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
LOOPBACK = "127.0.0.1"


class BenchTimeout(Exception):
    pass


def log(*parts) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}]", *parts, file=sys.stderr, flush=True)


# --- bounded runs and cleanup ------------------------------------------------------------------

def _on_alarm(signum, frame):
    raise BenchTimeout("the benchmark ran past its deadline")


def _on_term(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main_wrapper(run, *, description: str, default_deadline: int, quick_deadline: int, extra_args=None):
    """Parse the common arguments, arm the deadline, run `run(args, cleanup)`, always clean up."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (well under a minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--deadline", type=int, default=None,
                        help=f"stop after this many seconds (default {default_deadline}, --quick {quick_deadline})")
    if extra_args:
        extra_args(parser)
    args = parser.parse_args()
    limit = args.deadline or (quick_deadline if args.quick else default_deadline)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_term)
    signal.alarm(limit)
    started = time.monotonic()
    with ExitStack() as cleanup:
        try:
            results = run(args, cleanup)
        except BenchTimeout:
            log(f"deadline of {limit}s reached: stopping and cleaning up")
            raise SystemExit(3)
        except KeyboardInterrupt as exc:
            log(f"interrupted ({exc}): cleaning up")
            raise SystemExit(130)
        finally:
            signal.alarm(0)
            # Cleanup must not be cut short by a second alarm or a second Ctrl-C of the same signal.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
    results = dict(results or {})
    results["elapsed_seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
        log(f"results written to {args.json}")
    log(f"done in {results['elapsed_seconds']}s")
    return results


# --- machine and versions ---------------------------------------------------------------------

def _command_output(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
    }


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("gunicorn", "flask", "dramatiq", "peewee", "psycopg2-binary", "redis", "stripe", "honcho"):
        try:
            found[package if package != "redis" else "redis-py"] = version(package)
        except PackageNotFoundError:
            found[package] = "absent"
    try:
        import psycopg2

        with psycopg2.connect(ADMIN_URL, connect_timeout=5) as connection:
            with connection.cursor() as cursor:
                cursor.execute("SHOW server_version")
                found["postgresql"] = cursor.fetchone()[0]
        connection.close()
    except Exception as exc:  # reported, not fatal
        found["postgresql"] = f"unreachable ({exc.__class__.__name__})"
    try:
        import redis

        found["redis-server"] = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).info("server")["redis_version"]
    except Exception as exc:
        found["redis-server"] = f"unreachable ({exc.__class__.__name__})"
    if shutil.which("wrk"):
        found["wrk"] = (_command_output(["wrk", "--version"]).splitlines() or ["?"])[0].split(" Copyright")[0].removeprefix("wrk ")
    if shutil.which("pgbench"):
        found["pgbench"] = _command_output(["pgbench", "--version"]).removeprefix("pgbench (PostgreSQL) ")
    return found


def print_environment(results: dict) -> None:
    print("\nMachine:", ", ".join(f"{k} {v}" for k, v in results["machine"].items()))
    print("Versions:", ", ".join(f"{k} {v}" for k, v in results["versions"].items()))


# --- services ---------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@contextmanager
def scratch_database(prefix: str = "bookingflow_bench"):
    """CREATE DATABASE <prefix>_<hex>; yields its URL; DROP ... WITH (FORCE) afterwards, always."""
    import psycopg2

    name = f"{prefix}_{secrets.token_hex(6)}"

    def execute(statement: str) -> None:
        connection = psycopg2.connect(ADMIN_URL, connect_timeout=5)
        connection.autocommit = True
        try:
            connection.cursor().execute(statement)
        finally:
            connection.close()

    execute(f'CREATE DATABASE "{name}"')
    log(f"scratch database {name} created")
    try:
        yield urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    finally:
        try:
            execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            log(f"scratch database {name} dropped")
        except Exception as exc:
            log(f"could not drop scratch database {name}: {exc}")


@contextmanager
def redis_scratch():
    """Redis database 13, emptied before and after."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    client.flushdb()
    try:
        yield REDIS_URL
    finally:
        try:
            client.flushdb()
        except Exception as exc:
            log(f"could not flush {REDIS_URL}: {exc}")


def service_environment(database_url: str, **extra: str) -> dict[str, str]:
    """What a serving process of bookingflow needs, with fresh secrets, on the scratch services."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH", "TMPDIR", "PYENV_VERSION", "PYENV_ROOT")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env.update({
        "DATABASE_URL": database_url,
        "BROKER_URL": REDIS_URL,
        "STRIPE_SECRET_KEY": "sk_test_" + secrets.token_hex(12),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(24),
        "STRIPE_API_BASE": "http://127.0.0.1:9/stripe",  # never called by the intake
        "CALENDLY_API_TOKEN": "calendly_" + secrets.token_hex(12),
        "CALENDLY_WEBHOOK_SIGNING_KEY": secrets.token_hex(24),
        "CALENDLY_API_BASE": "http://127.0.0.1:9/calendly",
        "PUBLIC_URL": "https://frontend.example",
        # The load comes from one loopback address, which the client API's per-address limit (100/s
        # by default) would refuse: what is measured here is the work of a request, not the limiter.
        "CLIENT_RATE_LIMIT": "off",
    })
    env.update(extra)
    return env


def run_cli(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "ops.cli", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"bookingflow {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result.stdout


BENCH_SLUG = "bench-session"


def import_session_type(env: dict, directory: Path, scheduling_url: str | None = None) -> str:
    """The benchmarks' one session type (an hour, 250.00 USD), imported with `bookingflow
    session-types import` as an operator would; its slug."""
    catalogue = directory / "session-types.json"
    catalogue.write_text(json.dumps([{
        "slug": BENCH_SLUG, "name": "Bench Session", "duration_minutes": 60, "price": 25000, "currency": "usd",
        "calendly_event_type": f"https://api.calendly.com/event_types/{BENCH_SLUG}",
        "scheduling_url": scheduling_url or f"https://calendly.com/bench/{BENCH_SLUG}",
    }]))
    run_cli(env, "session-types", "import", str(catalogue))
    return BENCH_SLUG


# --- the Procfile -----------------------------------------------------------------------------

_EXPANSION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}|\$([A-Z_][A-Z0-9_]*)")


def procfile_line(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        key, sep, command = line.partition(":")
        if sep and key.strip() == name:
            return command.strip()
    raise RuntimeError(f"no {name!r} process in the Procfile")


def expand(command: str, env: dict[str, str]) -> str:
    return _EXPANSION.sub(lambda m: env.get(m.group(1) or m.group(3)) or (m.group(2) or ""), command)


def loopback_only(command: str) -> str:
    """The Procfile binds 0.0.0.0; benchmarks listen on loopback only."""
    return command.replace("0.0.0.0", LOOPBACK)


def gunicorn_command(env: dict[str, str], port: int, app_spec: str | None = None) -> list[str]:
    """The Procfile's `web` command line, expanded, on 127.0.0.1:`port`, optionally serving another app
    with exactly the same settings."""
    words = shlex.split(loopback_only(expand(procfile_line("web"), {**env, "PORT": str(port)})))
    if app_spec is not None:
        words[-1] = app_spec
    return words


def procfile_for_loopback(directory: Path, tree: Path = ROOT) -> Path:
    """A copy of `tree`'s Procfile that binds 127.0.0.1 instead of 0.0.0.0 (for honcho)."""
    target = directory / "Procfile"
    target.write_text(loopback_only((tree / "Procfile").read_text()))
    return target


# --- processes --------------------------------------------------------------------------------

class Process:
    """A child in its own session (process group); stop() signals that group only."""

    def __init__(self, command: list[str], env: dict, log_path: Path, cwd: Path = ROOT, name: str = ""):
        self.name = name or command[0]
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.popen = subprocess.Popen(command, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, chars: int = 4000) -> str:
        self._log.flush()
        try:
            return self.log_path.read_text()[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 25) -> None:
        # honcho starts each of its children in a session of its own: remember every descendant
        # first, so none outlives us even if the leader has to be killed.
        family = descendants(self.popen.pid)
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in family) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in family:
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._log.close()


def _stat_fields(pid) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def _alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def descendants(root: int) -> list[int]:
    """Every living process below `root` (children, grandchildren, ...), whatever their session."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(entry.name)
            if fields:
                parent_of[int(entry.name)] = int(fields[1])
    found, frontier = [], [root]
    while frontier:
        current = frontier.pop()
        children = [pid for pid, parent in parent_of.items() if parent == current]
        found += children
        frontier += children
    return found


def start(cleanup: ExitStack, command: list[str], env: dict, log_path: Path, **kwargs) -> Process:
    process = Process(command, env, log_path, **kwargs)
    cleanup.callback(process.stop)
    return process


def wait_http(url: str, process: Process | None = None, timeout: float = 60, expect=(200,)) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while True:
        if process is not None and not process.alive():
            raise RuntimeError(f"{process.name} exited early:\n{process.tail()}")
        try:
            if requests.get(url, timeout=2).status_code in expect:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout}s" + (f":\n{process.tail()}" if process else ""))
        time.sleep(0.2)


def group_pids(leader: int) -> list[int]:
    """Every process in the session of `leader` (its process group)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == leader:  # pgrp
                pids.append(int(entry.name))
    return pids


def cpu_seconds(pids) -> float:
    """User plus system CPU seconds of these processes so far (dead ones count zero)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def pids_named(name: str) -> list[int]:
    """Processes whose command name (comm) is `name`: postgres, redis-server."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


class CpuMeter:
    """CPU seconds spent by each part of the system between start() and stop(): the app's process
    group, PostgreSQL (all its processes), Redis, this script's waited-for children (wrk, pgbench),
    this script itself, and the whole machine (busy seconds of all CPUs)."""

    def __init__(self, groups: dict[str, int]):
        self.groups = groups  # name -> process group leader

    def _read(self) -> dict[str, float]:
        import resource

        values = {name: cpu_seconds(group_pids(leader)) for name, leader in self.groups.items()}
        values["postgres"] = cpu_seconds(pids_named("postgres"))
        values["redis"] = cpu_seconds(pids_named("redis-server"))
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        values["load generator"] = children.ru_utime + children.ru_stime
        own = resource.getrusage(resource.RUSAGE_SELF)
        values["bench script"] = own.ru_utime + own.ru_stime
        values["machine"] = total_cpu_seconds()
        return values

    def start(self) -> None:
        self._start, self._t0 = self._read(), time.monotonic()

    def stop(self) -> dict[str, float]:
        end, wall = self._read(), time.monotonic() - self._t0
        used = {name: end[name] - self._start[name] for name in end}
        used["wall"] = wall
        return used


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def postgres_backend_pids(database: str) -> list[int]:
    import psycopg2

    with psycopg2.connect(ADMIN_URL, connect_timeout=5) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))
        rows = [row[0] for row in cursor.fetchall()]
    connection.close()
    return rows


def total_cpu_seconds() -> float:
    """All CPUs' busy seconds (user+nice+system+irq+softirq+steal) from /proc/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / ticks


# --- load generation --------------------------------------------------------------------------

WRK_SCRIPT = BENCH / "wrk_requests.lua"


def run_wrk(url: str, requests_file: Path | None, *, duration: float, connections: int, threads: int = 1,
            timeout: float = 10, method: str = "POST", path: str = "/") -> dict:
    """wrk against `url` with bench/wrk_requests.lua. Each line of `requests_file` is one prepared
    request (tab-separated header values then the body, see the Lua script); each wrk thread takes its
    own share of the lines, so no line is sent twice until a thread has used up its share (`wraps`)."""
    env = {**os.environ, "WRK_METHOD": method, "WRK_PATH": path, "WRK_THREADS": str(threads)}
    if requests_file is not None:
        env["WRK_REQUESTS"] = str(requests_file)
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
               "--timeout", f"{max(1, round(timeout))}s", "-s", str(WRK_SCRIPT), url]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=duration + 120)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stdout}{result.stderr}")
    marker = "WRK_JSON "
    lines = [line for line in result.stdout.splitlines() if line.startswith(marker)]
    if not lines:
        raise RuntimeError(f"wrk printed no summary: {result.stdout}{result.stderr}")
    summary = json.loads(lines[-1][len(marker):])
    summary["rps"] = summary["requests"] / (summary["duration_us"] / 1e6)
    return summary


def run_pgbench(database_url: str, *, seconds: int, clients: int = 4, jobs: int = 2, scale: int = 10,
                initialize: bool = True) -> float:
    """pgbench's TPS (TPC-B-like, without initial connection time) on `database_url`. Its tables
    (pgbench_*) live in the scratch database and go with it."""
    parts = urlsplit(database_url)
    common = ["-h", parts.hostname or LOOPBACK, "-p", str(parts.port or 5432), "-U", parts.username or "postgres"]
    name = parts.path.lstrip("/")
    if initialize:
        subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), *common, name], check=True,
                       capture_output=True, timeout=300)
    result = subprocess.run(["pgbench", "-n", "-c", str(clients), "-j", str(jobs), "-T", str(seconds), *common, name],
                            capture_output=True, text=True, timeout=seconds + 120)
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed: {result.stdout}{result.stderr}")
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", result.stdout)
    if not match:
        raise RuntimeError(f"no tps in pgbench output: {result.stdout}")
    return float(match.group(1))


# --- provider deliveries -------------------------------------------------------------------------

def fixture(path: str) -> dict:
    return json.loads((FIXTURES / path).read_text())


def stripe_signature(body: bytes, secret: str, timestamp: int) -> str:
    import hashlib
    import hmac

    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


# A small event (about 0.4 kB): the envelope and only the session fields bookingflow reads.
SMALL_EVENT = {"id": "", "object": "event", "created": 0, "type": "checkout.session.completed", "data": {}}
SMALL_SESSION = {"id": "", "object": "checkout.session", "amount_total": 5000, "currency": "usd"}


def write_signed_stripe_deliveries(path: Path, count: int, secret: str, small: bool = False) -> int:
    """`count` distinct checkout.session.completed events (unique event and session ids), each signed
    now with `secret`, one request per line: `<Stripe-Signature>\\t<body>`. Returns the body size.
    The events are Stripe's full-sized ones (3.4 kB), or with `small` about 0.4 kB."""
    event = dict(SMALL_EVENT) if small else fixture("stripe/event.json")
    session = dict(SMALL_SESSION) if small else fixture("stripe/checkout_session.json")
    event.update(type="checkout.session.completed")
    timestamp = int(time.time())
    size = 0
    with open(path, "w") as out:
        for _ in range(count):
            booking_id = secrets.token_urlsafe(24)
            session.update(id=f"cs_test_{secrets.token_hex(16)}", client_reference_id=booking_id,
                           metadata={"booking_id": booking_id}, payment_status="paid", status="complete",
                           payment_intent=f"pi_test_{secrets.token_hex(12)}")
            event.update(id=f"evt_test_{secrets.token_hex(12)}", created=timestamp, data={"object": session})
            body = json.dumps(event, separators=(",", ":")).encode()
            size = len(body)
            out.write(stripe_signature(body, secret, timestamp) + "\t" + body.decode() + "\n")
    return size


# --- statistics and tables ----------------------------------------------------------------------

def median(values) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values, q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q / 100 * len(ordered) + 0.5))))
    return ordered[rank - 1]


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def cell(value):
        if isinstance(value, float):
            return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def workdir(cleanup: ExitStack, prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    keep = os.environ.get("BENCH_KEEP_LOGS")
    cleanup.callback(lambda: None if keep else shutil.rmtree(path, ignore_errors=True))
    return path
