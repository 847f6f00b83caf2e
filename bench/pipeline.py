"""Item 2: bookings through the whole happy path on the real processes, beside pgbench.

The Procfile's processes under honcho (web, 2 worker processes, scheduler; the Procfile's own
defaults for gunicorn workers, Dramatiq threads and the sweep interval; bound to 127.0.0.1) against
a scratch PostgreSQL database and Redis database 13, with the provider sandbox in this process
standing in for Stripe and Calendly and sending its signed webhooks. Client threads drive each
booking as the frontend and the client do:

  POST /v1/bookings -> schedule in the Calendly sandbox (invitee.created is delivered)
  -> POST /v1/bookings/<id>/scheduled -> poll until PAYMENT_PROCESSING -> pay on the sandbox's
  Checkout (checkout.session.completed is delivered) -> poll until BOOKING_CONFIRMED

Latency is measured from the moment the sandbox got the 2xx for a delivery to the first
GET /v1/bookings/<id> that shows its effect (invitee.created: PAYMENT_PROCESSING, i.e. the checkout
is open; checkout.session.completed: BOOKING_CONFIRMED). Clients poll every --poll-ms with
If-None-Match once the delivery was accepted, so figures are upper bounds by up to that interval.
pgbench (TPC-B-like, -c4 -j2) runs on the same scratch database before and after the bookings,
with the stack up and idle; throughput is reported beside its TPS as a ratio.

    python bench/pipeline.py                     # 2,000 bookings, 16 at a time
    python bench/pipeline.py --bookings 500
    python bench/pipeline.py --quick             # 20 bookings
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

SLUG = h.BENCH_SLUG
WAIT_SECONDS = 120  # a step that takes longer than this counts the booking as failed


def arguments(parser):
    parser.add_argument("--bookings", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16, help="bookings in flight at once")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (honcho -c worker=N)")
    parser.add_argument("--poll-ms", type=float, default=10.0)
    parser.add_argument("--pgbench-seconds", type=int, default=15)
    parser.add_argument("--tree", metavar="DIR", help="run the stack from this copy of the product tree (e.g. "
                        "one taken before a change) instead of this one, to compare")
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the stack (e.g. dramatiq_queue_prefetch=8), to compare")


class Acceptances:
    """When the sandbox's deliveries were accepted (2xx), by (booking id, event type)."""

    def __init__(self):
        self._times: dict[tuple[str, str], float] = {}
        self._cond = threading.Condition()
        self.failures = 0

    def record(self, body: bytes, status: int | None) -> None:
        if status is None or not 200 <= status < 300:
            self.failures += 1
            return
        now = time.monotonic()
        try:
            payload = json.loads(body)
        except ValueError:
            return
        if payload.get("event") == "invitee.created":
            key = ((payload.get("payload") or {}).get("tracking") or {}).get("utm_content"), "invitee.created"
        elif payload.get("type") == "checkout.session.completed":
            key = ((payload.get("data") or {}).get("object") or {}).get("client_reference_id"), "checkout.session.completed"
        else:
            return
        with self._cond:
            self._times.setdefault(key, now)
            self._cond.notify_all()

    def wait(self, booking_id: str, kind: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        with self._cond:
            while (booking_id, kind) not in self._times:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{kind} for {booking_id} was never accepted")
                self._cond.wait(remaining)
            return self._times[(booking_id, kind)]


def hook_sender(sandbox, acceptances: Acceptances) -> None:
    """Wrap the sandbox sender's POST so each answer is timed as it arrives."""
    sender = sandbox._sender
    original = sender._post

    def post(url, body, headers):
        status = original(url, body, headers)
        acceptances.record(body, status)
        return status

    sender._post = post


def run(args, cleanup):
    import psycopg2
    import requests

    import logging

    from sandbox import Sandbox, SandboxConfig, serve_in_thread

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the sandbox's access log

    if args.quick:
        args.bookings, args.concurrency, args.pgbench_seconds = 20, 4, 3
    results = {"machine": h.machine(), "versions": h.versions(), "settings": vars(args).copy()}
    work = h.workdir(cleanup, "bench-pipeline")
    database_url = cleanup.enter_context(h.scratch_database())
    cleanup.enter_context(h.redis_scratch())

    secret = {"key": "sk_test_" + secrets.token_hex(8), "whsec": "whsec_" + secrets.token_hex(16),
              "token": secrets.token_hex(8), "signing": secrets.token_hex(16)}
    sandbox = Sandbox(SandboxConfig(secret["key"], secret["whsec"], secret["token"], secret["signing"]))
    server, sandbox_base = serve_in_thread(sandbox.app)
    cleanup.callback(server.shutdown)
    cleanup.callback(sandbox.close)
    sandbox.config.public_base = sandbox.base = sandbox_base
    acceptances = Acceptances()
    hook_sender(sandbox, acceptances)

    env = h.service_environment(
        database_url, STRIPE_SECRET_KEY=secret["key"], STRIPE_WEBHOOK_SECRET=secret["whsec"],
        STRIPE_API_BASE=sandbox_base + "/stripe", CALENDLY_API_TOKEN=secret["token"],
        CALENDLY_WEBHOOK_SIGNING_KEY=secret["signing"], CALENDLY_API_BASE=sandbox_base + "/calendly",
        TMPDIR=str(work), dramatiq_prom_host=h.LOOPBACK, **dict(item.split("=", 1) for item in args.worker_env),
        **({"PYTHONPATH": str(Path(args.tree).resolve())} if args.tree else {}))
    root = Path(args.tree).resolve() if args.tree else h.ROOT
    h.run_cli(env, "db", "upgrade")
    h.import_session_type(env, work, scheduling_url=f"{sandbox_base}/calendly/book/{SLUG}")

    port = h.free_port()
    base = f"http://127.0.0.1:{port}"
    procfile = h.procfile_for_loopback(work, root)
    command = ["honcho", "-f", str(procfile), "-d", str(root), "start", "--no-colour", "-p", str(port),
               "-c", f"worker={args.workers}", "web", "worker", "scheduler"]
    stack = h.start(cleanup, command, env, work / "stack.log", name="honcho", cwd=root)
    h.wait_http(base + "/readyz", stack, timeout=90)
    sandbox.config.stripe_webhook_url = base + "/webhooks/stripe"
    sandbox.config.calendly_webhook_url = base + "/webhooks/calendly"
    results["command"] = " ".join(command)
    results["procfile"] = procfile.read_text()

    h.log(f"pgbench before ({args.pgbench_seconds}s)")
    tps_before = h.run_pgbench(database_url, seconds=args.pgbench_seconds)

    local = threading.local()

    def http():
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    def wait_visible(booking_id: str, state: str, accepted: float) -> float:
        """Poll (with If-None-Match) until the status shows `state`; seconds since `accepted`."""
        session, etag = http(), None
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            headers = {"If-None-Match": etag} if etag else {}
            response = session.get(f"{base}/v1/bookings/{booking_id}", headers=headers, timeout=30)
            seen = time.monotonic()
            if response.status_code == 200:
                etag = response.headers.get("ETag")
                view = response.json()
                if view["state"] == state:
                    return seen - accepted, view
            elif response.status_code != 304:
                raise RuntimeError(f"GET status answered {response.status_code}")
            if seen > deadline:
                raise TimeoutError(f"booking {booking_id} never reached {state}")
            time.sleep(args.poll_ms / 1000)

    def one_booking(index: int) -> dict:
        session = http()
        started = time.monotonic()
        response = session.post(f"{base}/v1/bookings", json={
            "session_type": SLUG, "email": f"client{index}@example.com", "name": f"Client {index}"}, timeout=30)
        if response.status_code != 201:
            raise RuntimeError(f"create answered {response.status_code}: {response.text}")
        booking = response.json()
        slot = session.post(f"{sandbox_base}/calendly/_sandbox/schedule",
                            json={"scheduling_url": booking["scheduling_url"]}, timeout=30).json()
        reported = session.post(f"{base}/v1/bookings/{booking['id']}/scheduled",
                                json={"event_uri": slot["event_uri"], "invitee_uri": slot["invitee_uri"]}, timeout=30)
        if reported.status_code != 202:
            raise RuntimeError(f"report answered {reported.status_code}")
        accepted = acceptances.wait(booking["id"], "invitee.created", WAIT_SECONDS)
        to_checkout, view = wait_visible(booking["id"], "PAYMENT_PROCESSING", accepted)
        paid = session.post(view["checkout_url"] + "/pay", json={"outcome": "paid"}, timeout=30)
        if paid.status_code != 200:
            raise RuntimeError(f"pay answered {paid.status_code}")
        accepted = acceptances.wait(booking["id"], "checkout.session.completed", WAIT_SECONDS)
        to_confirmed, _ = wait_visible(booking["id"], "BOOKING_CONFIRMED", accepted)
        return {"id": booking["id"], "invitee_ms": 1000 * to_checkout, "paid_ms": 1000 * to_confirmed,
                "total_s": time.monotonic() - started}

    def drive(count: int) -> tuple[list[dict], list[str], float]:
        done, failed = [], []
        progress = {"n": 0}
        lock = threading.Lock()

        def guarded(index):
            try:
                outcome = one_booking(index)
                with lock:
                    done.append(outcome)
            except Exception as exc:
                with lock:
                    failed.append(f"{exc.__class__.__name__}: {exc}")
            with lock:
                progress["n"] += 1
                if progress["n"] % max(1, count // 10) == 0:
                    h.log(f"  {progress['n']}/{count} bookings")

        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            list(pool.map(guarded, range(count)))
        return done, failed, time.monotonic() - t0

    h.log("warm-up: 8 bookings")
    drive(8)

    def counts():
        with psycopg2.connect(database_url, connect_timeout=5) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM provider_event WHERE processed_at IS NOT NULL")
            events = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM transition")
            transitions = cursor.fetchone()[0]
            cursor.execute("SELECT count(*) FROM booking WHERE state = 'BOOKING_CONFIRMED'")
            confirmed = cursor.fetchone()[0]
        connection.close()
        return events, transitions, confirmed

    before = counts()
    parts = {"web": "gunicorn", "worker": "dramatiq", "scheduler": "scheduler"}

    def postgres_backends() -> dict[int, str]:
        """The scratch database's backends by pid, with the role their process gave them."""
        with psycopg2.connect(h.ADMIN_URL, connect_timeout=5) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s",
                           (database_url.rsplit("/", 1)[1],))
            rows = dict(cursor.fetchall())
        connection.close()
        return rows

    def worker_processes() -> list[int]:
        # dramatiq's forked worker processes (the Procfile's `--processes 1`: one per honcho worker),
        # not their parents, which only supervise.
        pids = [p for p in h.descendants(stack.pid) if "dramatiq" in h.cmdline(p)]
        return [p for p in pids if h.parent_of(p) in pids]

    def cpu_by_part() -> dict:
        pids = h.descendants(stack.pid)
        by = {name: h.cpu_seconds([p for p in pids if marker in h.cmdline(p)]) for name, marker in parts.items()}
        for number, pid in enumerate(sorted(worker_processes()), 1):
            by[f"worker process {number}"] = h.cpu_seconds([pid])
        backends = postgres_backends()
        for role in ("web", "worker", "scheduler"):
            by[f"postgres for {role}"] = h.cpu_seconds([pid for pid, name in backends.items()
                                                         if name == f"bookingflow {role}"])
        by["postgres"] = h.cpu_seconds(h.pids_named("postgres"))
        by["redis"] = h.cpu_seconds(h.pids_named("redis-server"))
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF)
        by["bench (clients + sandbox)"] = own.ru_utime + own.ru_stime
        by["machine"] = h.total_cpu_seconds()
        return by

    cpu0 = cpu_by_part()
    h.log(f"measuring: {args.bookings} bookings, {args.concurrency} at a time")
    done, failed, seconds = drive(args.bookings)
    cpu1 = cpu_by_part()
    time.sleep(1)
    after = counts()
    h.log(f"pgbench after ({args.pgbench_seconds}s)")
    tps_after = h.run_pgbench(database_url, seconds=args.pgbench_seconds, initialize=False)
    if not stack.alive():
        raise RuntimeError(f"the stack died during the run:\n{stack.tail()}")

    events = after[0] - before[0]
    transitions = after[1] - before[1]
    tps = (tps_before + tps_after) / 2
    bookings_per_second = len(done) / seconds
    invitee = [d["invitee_ms"] for d in done]
    paid = [d["paid_ms"] for d in done]
    both = invitee + paid
    cpu = {part: cpu1[part] - cpu0[part] for part in cpu0}
    latency = {name: {"p50": h.percentile(values, 50), "p95": h.percentile(values, 95),
                      "p99": h.percentile(values, 99), "max": max(values) if values else float("nan")}
               for name, values in (("invitee.created -> PAYMENT_PROCESSING", invitee),
                                    ("checkout.session.completed -> BOOKING_CONFIRMED", paid),
                                    ("both deliveries", both))}
    results.update(seconds=seconds, confirmed=len(done), failed=len(failed), failures=failed[:20],
                   events=events, transitions=transitions, bookings_per_second=bookings_per_second,
                   events_per_second=events / seconds, transitions_per_second=transitions / seconds,
                   pgbench_tps_before=tps_before, pgbench_tps_after=tps_after, latency_ms=latency,
                   cpu_seconds=cpu, delivery_failures=acceptances.failures,
                   booking_seconds_p50=h.percentile([d["total_s"] for d in done], 50))

    print(f"\nHappy path on the real processes: {args.bookings} bookings, {args.concurrency} in flight, "
          f"{args.workers} worker processes; {len(done)} confirmed, {len(failed)} failed, in {seconds:.1f} s\n")
    print(h.markdown_table(["measure", "value", "÷ pgbench TPS (mean of before/after)"], [
        ["bookings confirmed per second", f"{bookings_per_second:.2f}", f"{bookings_per_second / tps:.4f}"],
        ["inbox events processed per second (deliveries + client requests)", f"{events / seconds:.1f}",
         f"{events / seconds / tps:.4f}"],
        ["state transitions per second", f"{transitions / seconds:.1f}", f"{transitions / seconds / tps:.4f}"],
        ["pgbench TPS before / after", f"{tps_before:.0f} / {tps_after:.0f}", "1"],
        ["one booking, end to end (p50 s)", f"{results['booking_seconds_p50']:.2f}", ""],
    ]))
    print(f"\nFrom a delivery accepted to its state visible on GET /v1/bookings/<id> (ms; polled every "
          f"{args.poll_ms:g} ms):\n")
    print(h.markdown_table(["delivery -> state", "p50", "p95", "p99", "max"],
                           [[name, v["p50"], v["p95"], v["p99"], v["max"]] for name, v in latency.items()]))
    per_booking = {part: 1000 * value / max(1, len(done)) for part, value in cpu.items()}
    results["cpu_ms_per_booking"] = per_booking
    goal = per_booking["worker"] + per_booking["postgres for worker"]
    results["workers_and_their_postgres_ms_per_booking"] = goal
    # dramatiq's children include a forked metrics server per worker: only processes that did work count.
    shares = [value for part, value in cpu.items() if part.startswith("worker process ") and value > 0.01 * cpu["worker"]]
    print(f"\nCPU per confirmed booking in the workers and in PostgreSQL for them: {per_booking['worker']:.1f} + "
          f"{per_booking['postgres for worker']:.1f} = {goal:.1f} ms (aim: at most 20)")
    if shares and sum(shares):
        print("Worker processes' shares of the workers' CPU: "
              + ", ".join(f"{100 * share / sum(shares):.0f}%" for share in shares))
    cores = results["machine"]["nproc"]
    print(f"\nCPU seconds during the measured run ({seconds:.0f} s wall, {cores * seconds:.0f} CPU-seconds on "
          f"{cores} cores):\n")
    print(h.markdown_table(["part", "CPU s", "ms per booking"],
                           [[part, f"{value:.1f}", f"{1000 * value / max(1, len(done)):.1f}"]
                            for part, value in cpu.items()]))
    if failed:
        print("\nFirst failures:\n" + "\n".join(f"- {f}" for f in failed[:5]))
    h.print_environment(results)
    return results


if __name__ == "__main__":
    h.main_wrapper(run, description=__doc__.splitlines()[0], default_deadline=1800, quick_deadline=110,
                   extra_args=arguments)
