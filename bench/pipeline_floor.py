"""Item 2, its floor: what a confirmed booking must cost the workers before bookingflow does any work.

The aim for the pipeline (issue 17) is at most 20 ms of CPU per confirmed booking in the workers and
in PostgreSQL for them. Three costs of the happy path come from the chosen dependencies, whatever
bookingflow's own code does; this script measures each in one run, beside the same thing done at
full speed as its reference:

1. **Messages.** A booking is three Dramatiq messages (one per delivery, one e-mail:
   tests/test_query_counts.py). The Procfile's worker command line runs `bench/floor_jobs.py`, an
   actor that does nothing, on bookingflow's broker and middleware (Redis); `--workers` processes, as
   in `pipeline.py`. Messages are sent evenly at the pipeline's rate (three per booking, at the
   bookings per second of a `pipeline.py --json` run given as `--pipeline-json`), then, as the
   reference, all at once. Worker CPU per message, from /proc. A message costs more the fewer come
   (Dramatiq's consumer polls Redis between them), so both floors are printed: with the messages at
   that rate, and with them at full speed, the least a message can cost.
2. **Stripe calls.** A booking creates one Checkout Session and reads one PaymentIntent with its
   charge. Through bookingflow's own calls (`bookingflow.providers.stripe_client`), against an HTTP
   server in this process answering with Stripe's example objects (`tests/fixtures/stripe`; the
   PaymentIntent's `latest_charge` expanded to the example Charge). The calling thread's CPU
   (`time.thread_time`), so the server's share is left out.
3. **Transitions.** A booking makes five transitions. The least one can cost: a compare-and-set UPDATE
   of the booking by its key and version, returning the row, and the history INSERT, committed:
   plain psycopg2, no ORM, on bookingflow's schema (`bookingflow db upgrade`) in a scratch database.
   The client's CPU and its PostgreSQL backend's CPU, from /proc. The reference is a bare
   `SELECT 1` round trip, in the same loop.

    python bench/pipeline.py --bookings 800 --concurrency 8 --json /tmp/pipeline.json
    python bench/pipeline_floor.py --pipeline-json /tmp/pipeline.json
    python bench/pipeline_floor.py --quick
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

MESSAGES_PER_BOOKING = 3
STRIPE_CALLS = ("create a Checkout Session", "read a PaymentIntent with its charge")
TRANSITIONS_PER_BOOKING = 5
AIM_MS = 20.0


def arguments(parser):
    parser.add_argument("--workers", type=int, default=2, help="worker processes, as pipeline.py runs")
    parser.add_argument("--pipeline-json", metavar="PATH",
                        help="pipeline.py's --json output: messages are sent at the rate it measured (its "
                             "bookings per second, times three), which is what a message's cost depends on")
    parser.add_argument("--bookings-per-second", type=float, default=12.0,
                        help="the rate when no --pipeline-json is given")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long messages are sent at that rate")
    parser.add_argument("--calls", type=int, default=1000, help="Stripe calls of each kind")
    parser.add_argument("--transitions", type=int, default=5000)


# --- 1. messages ------------------------------------------------------------------------------

def _worker_command() -> list[str]:
    """The Procfile's worker line, run by a shell as honcho runs it, with the no-op actor's module in
    place of `jobs`."""
    line = h.procfile_line("worker")
    assert line.endswith(" jobs"), line
    return ["sh", "-c", line.removesuffix(" jobs") + " floor_jobs"]


def _drained(client) -> bool:
    from bookingflow.broker import QUEUE

    return not client.llen(f"dramatiq:{QUEUE}") and not client.hlen(f"dramatiq:{QUEUE}.msgs")


def _wait_drained(client, workers, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not _drained(client):
        if not all(worker.alive() for worker in workers):
            raise RuntimeError("a floor worker exited:\n" + next(w.tail() for w in workers if not w.alive()))
        if time.monotonic() > deadline:
            raise RuntimeError("the floor workers did not drain their queue")
        time.sleep(0.02)


def measure_messages(args, cleanup, work: Path) -> dict:
    import redis

    from bookingflow import broker as broker_module

    redis_url = cleanup.enter_context(h.redis_scratch())
    env = h.service_environment("postgresql://unused", TMPDIR=str(work), dramatiq_prom_host=h.LOOPBACK)
    env["PYTHONPATH"] = os.pathsep.join([str(h.ROOT / "bench"), str(h.ROOT)])
    command = _worker_command()
    workers = []
    for index in range(args.workers):
        process_env = dict(env, WORKER_METRICS_PORT=str(h.free_port()))
        workers.append(h.start(cleanup, command, process_env, work / f"worker{index}.log", name=f"worker {index}"))
    broker_module.install(redis_url)
    client = redis.Redis.from_url(redis_url)

    def meter() -> float:
        return h.cpu_seconds(pid for worker in workers for pid in h.group_pids(worker.pid))

    # Warm up: every worker has booted and run a message (its imports and first connections).
    for index in range(20 * args.workers):
        broker_module.send("nothing", index)
    _wait_drained(client, workers)
    time.sleep(1)

    rate = args.bookings_per_second * MESSAGES_PER_BOOKING
    count = max(1, int(rate * args.seconds))
    h.log(f"messages: {count} at {rate:g}/s to {args.workers} worker processes")
    cpu0, started = meter(), time.monotonic()
    for index in range(count):
        # Paced against the clock, not by sleeping a fixed gap: sending takes time too.
        delay = started + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        broker_module.send("nothing", index)
    _wait_drained(client, workers)
    paced_ms = 1000 * (meter() - cpu0) / count
    paced_seconds = time.monotonic() - started

    h.log(f"messages: {count} at once (the reference)")
    cpu0 = meter()
    for index in range(count):
        broker_module.send("nothing", index)
    _wait_drained(client, workers)
    burst_ms = 1000 * (meter() - cpu0) / count
    return {"command": " ".join(command), "paced_rate": rate, "paced_count": count, "paced_seconds": paced_seconds,
            "paced_ms_per_message": paced_ms, "burst_count": count, "burst_ms_per_message": burst_ms}


# --- 2. Stripe calls --------------------------------------------------------------------------

def _stripe_example_server(cleanup) -> str:
    """Answers a POST with Stripe's example Checkout Session, a GET with its example PaymentIntent
    whose latest_charge is expanded to its example Charge, as bookingflow asks for it."""
    session = json.dumps(h.fixture("stripe/checkout_session.json")).encode()
    intent = h.fixture("stripe/payment_intent.json")
    intent["latest_charge"] = h.fixture("stripe/charge.json")
    intent = json.dumps(intent).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Stripe's API

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(session)

        def do_GET(self):  # noqa: N802
            self._answer(intent)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((h.LOOPBACK, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cleanup.callback(server.shutdown)
    return f"http://{h.LOOPBACK}:{server.server_port}"


def _session_params(index: int) -> dict:
    """The shape of the parameters bookingflow sends (jobs/checkout.py session_params)."""
    booking_id = f"{index:032x}"
    return {
        "mode": "payment", "client_reference_id": booking_id, "customer_email": "ada@example.com",
        "expires_at": int(time.time()) + 3600,
        "line_items": [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 25000,
                                                      "product_data": {"name": "Bench Session"}}}],
        "metadata": {"booking_id": booking_id, "attempt": "1"},
        "payment_intent_data": {"metadata": {"booking_id": booking_id, "attempt": "1"}},
        "success_url": "https://frontend.example/done", "cancel_url": "https://frontend.example/cancelled",
    }


def measure_stripe(args, cleanup) -> dict:
    from bookingflow import settings as settings_module
    from bookingflow.providers import stripe_client

    # bookingflow's own calls (stripe_client), configured as the worker configures them.
    env = h.service_environment("postgresql://127.0.0.1:9/unused", STRIPE_API_BASE=_stripe_example_server(cleanup))
    settings_module.configure(settings_module.load(env))
    calls = {
        STRIPE_CALLS[0]: lambda i: stripe_client.create_checkout_session(_session_params(i), f"checkout-{i}"),
        STRIPE_CALLS[1]: lambda i: stripe_client.retrieve_payment_intent(f"pi_{i}", expand=["latest_charge"]),
    }
    results = {}
    for name, call in calls.items():
        for index in range(min(50, args.calls)):
            call(index)
        started = time.thread_time()
        for index in range(args.calls):
            call(index)
        results[name] = 1000 * (time.thread_time() - started) / args.calls
    return results


# --- 3. transitions ---------------------------------------------------------------------------

_TRANSITION = """UPDATE booking SET state = %s, version = version + 1, state_changed_at = %s, updated_at = %s
WHERE id = %s AND version = %s RETURNING *"""
_HISTORY = """INSERT INTO transition (booking_id, from_state, state, trigger, cause, at)
VALUES (%s, %s, %s, %s, %s, %s)"""


def measure_transitions(args, cleanup, work: Path) -> dict:
    import datetime as dt

    import psycopg2

    database_url = cleanup.enter_context(h.scratch_database())
    env = h.service_environment(database_url)
    h.run_cli(env, "db", "upgrade")
    slug = h.import_session_type(env, work)

    from models.db import database, open_database
    from models.tables import Booking, SessionType

    open_database(database_url, role="bench")
    session_type = SessionType.get(SessionType.slug == slug)
    now = dt.datetime.now(dt.timezone.utc)
    booking = Booking.create(session_type=session_type, state="CALENDLY_SCHEDULING", email="ada@example.com",
                             name="Ada Lovelace", amount=25000, amount_due=25000, currency="usd",
                             state_changed_at=now, created_at=now, updated_at=now)

    connection = psycopg2.connect(database_url)
    cursor = connection.cursor()
    cursor.execute("SELECT pg_backend_pid()")
    backend = cursor.fetchone()[0]
    connection.commit()
    states = ("CALENDLY_SCHEDULING", "PAYMENT_PENDING")

    def transition(index: int, version: int) -> int:
        at = dt.datetime.now(dt.timezone.utc)
        cursor.execute(_TRANSITION, (states[(index + 1) % 2], at, at, booking.id, version))
        row = cursor.fetchone()
        if row is None:
            raise RuntimeError("the compare-and-set found another version")
        cursor.execute(_HISTORY, (booking.id, states[index % 2], states[(index + 1) % 2], "floor",
                                  f"floor-{index}", at))
        connection.commit()
        return version + 1

    def round_trip(index: int, version: int) -> int:
        cursor.execute("SELECT 1")
        cursor.fetchone()
        connection.commit()
        return version

    results = {}
    version = Booking.get_by_id(booking.id).version
    for name, step in (("transition", transition), ("SELECT 1", round_trip)):
        for index in range(200):
            version = step(index, version)
        client0, backend0 = time.thread_time(), h.cpu_seconds([backend])
        for index in range(200, 200 + args.transitions):
            version = step(index, version)
        results[name] = {"client_ms": 1000 * (time.thread_time() - client0) / args.transitions,
                         "postgres_ms": 1000 * (h.cpu_seconds([backend]) - backend0) / args.transitions}
    connection.close()
    database.close()
    return results


# --- the run ----------------------------------------------------------------------------------

def run(args, cleanup):
    if args.quick:
        args.seconds, args.calls, args.transitions = 3.0, 100, 300
    if args.pipeline_json:
        args.bookings_per_second = json.loads(Path(args.pipeline_json).read_text())["bookings_per_second"]
    results = {"machine": h.machine(), "versions": h.versions()}
    work = h.workdir(cleanup, "bookingflow-floor-")

    messages = measure_messages(args, cleanup, work)
    h.log("Stripe calls")
    stripe_ms = measure_stripe(args, cleanup)
    h.log("transitions")
    transitions = measure_transitions(args, cleanup, work)
    results.update(messages=messages, stripe_ms=stripe_ms, transitions=transitions)

    transition = transitions["transition"]
    per_booking = {
        f"{MESSAGES_PER_BOOKING} messages at the pipeline's rate": MESSAGES_PER_BOOKING * messages["paced_ms_per_message"],
        **{f"Stripe: {name}": ms for name, ms in stripe_ms.items()},
        f"{TRANSITIONS_PER_BOOKING} transitions, client": TRANSITIONS_PER_BOOKING * transition["client_ms"],
        f"{TRANSITIONS_PER_BOOKING} transitions, PostgreSQL": TRANSITIONS_PER_BOOKING * transition["postgres_ms"],
    }
    floor = sum(per_booking.values())
    at_full_speed = MESSAGES_PER_BOOKING * messages["burst_ms_per_message"]
    strict_floor = floor - per_booking[f"{MESSAGES_PER_BOOKING} messages at the pipeline's rate"] + at_full_speed
    results.update(floor_ms_per_booking=floor, strict_floor_ms_per_booking=strict_floor, floor_parts=per_booking)

    print(f"\nMessages: bookingflow's broker on Redis, {args.workers} worker processes (the Procfile's worker line, "
          f"an actor that does nothing)\n")
    print(h.markdown_table(["sent", "messages", "worker CPU ms per message", "÷ all at once"], [
        [f"at {messages['paced_rate']:g}/s (the pipeline's rate)", messages["paced_count"],
         f"{messages['paced_ms_per_message']:.3f}",
         f"{messages['paced_ms_per_message'] / messages['burst_ms_per_message']:.2f}"],
        ["all at once (reference)", messages["burst_count"], f"{messages['burst_ms_per_message']:.3f}", "1.00"],
    ]))
    print("\nStripe calls through bookingflow's stripe-python client, against a local server answering with "
          "Stripe's example objects\n")
    print(h.markdown_table(["call", "client CPU ms per call"], [[name, f"{ms:.3f}"] for name, ms in stripe_ms.items()]))
    print("\nThe least a transition can cost (UPDATE … RETURNING by key and version + history INSERT, committed; "
          "psycopg2, no ORM)\n")
    round_trip = transitions["SELECT 1"]
    print(h.markdown_table(["statement", "client CPU ms", "PostgreSQL CPU ms", "sum", "÷ SELECT 1 round trip"], [
        [name, f"{t['client_ms']:.3f}", f"{t['postgres_ms']:.3f}", f"{t['client_ms'] + t['postgres_ms']:.3f}",
         f"{(t['client_ms'] + t['postgres_ms']) / (round_trip['client_ms'] + round_trip['postgres_ms']):.2f}"]
        for name, t in transitions.items()]))
    print("\nThe floor of one confirmed booking (workers and their PostgreSQL)\n")
    print(h.markdown_table(["part", "ms per booking"],
                           [[part, f"{ms:.2f}"] for part, ms in per_booking.items()]
                           + [["**sum**", f"**{floor:.2f}**"],
                              [f"sum with the {MESSAGES_PER_BOOKING} messages at full speed ({at_full_speed:.2f})",
                               f"{strict_floor:.2f}"],
                              ["aim (issue 17)", f"{AIM_MS:.0f}"]]))
    print(f"\nLeft for everything bookingflow itself does per booking under the aim: {AIM_MS - floor:.2f} ms "
          f"({AIM_MS - strict_floor:.2f} ms were every message as cheap as at full speed)")
    h.print_environment(results)
    return results


if __name__ == "__main__":
    h.main_wrapper(run, description=__doc__.splitlines()[0], default_deadline=900, quick_deadline=110,
                   extra_args=arguments)
