"""The fault suite: bookings flowing through every path at once on real processes (2 intakes, 4
workers, 2 schedulers) while workers are SIGKILLed again and again, Redis and PostgreSQL are restarted,
and every webhook is delivered 1 to 5 times, shuffled, some to both intakes at once. Every booking
must end where its path says, with one Checkout Session per payment attempt, one refund per
refundable cancellation, one transition per trigger and cause, no slot released twice, no e-mail
sent twice and no 500 from any intake.

Runs where the end-to-end tests run (the CI leg on PostgreSQL + Redis; tests/conftest.py skips them
elsewhere), on PostgreSQL and Redis servers of its own:
`pytest -m faults`. FAULT_BOOKINGS changes the number of bookings (200); FAULT_FIGURES_PATH names a
file for the run's figures (JSON), which are printed as well; FAULT_OUTAGES says which server goes
down when ("redis@20,postgres@45", seconds into the run).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import secrets
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import requests

from support.services import require_service
from support.waiting import wait_until
from support.faultstack import MailSink, PrivatePostgres, PrivateRedis, ProcessSet, servers_problem
from support.flows import hours_from_now
from support.providers import checkout_session, encode, stripe_event, stripe_signature
from support.realstack import ScratchDatabase, base_environment, import_session_types

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

BOOKINGS = int(os.environ.get("FAULT_BOOKINGS", "200"))
CONCURRENCY = 50  # bookings driven at once; more only crowds two cores with status polls
WEBS, WORKERS, SCHEDULERS = 2, 4, 2
PRICE = 5000
POLICY = {"full_before_hours": 48, "partial_before_hours": 24, "partial_percent": 50}
POLL_SECONDS = (0.3, 0.5)
PATH_DEADLINE_SECONDS = 200  # per booking, from its start: outages and recoveries included
KILL_EVERY_SECONDS = (4.0, 7.0)
# Which server goes down when, in seconds into the run: FAULT_OUTAGES="redis@20,postgres@45" by
# default; a longer list makes a harsher run.
OUTAGES = sorted((float(at), name) for name, _, at in (
    part.strip().partition("@") for part in os.environ.get("FAULT_OUTAGES", "redis@20,postgres@45").split(",")))
assert all(name in ("redis", "postgres") for _, name in OUTAGES), "FAULT_OUTAGES: redis@<seconds> or postgres@<seconds>"
# Seconds instead of minutes and hours, so that the scheduler's checks, recoveries and the payment
# hold all happen while the test watches. The hold must outlast a retry held up by an outage.
STATE_TIMEOUTS = {
    "CALENDLY_SCHEDULED": 15, "CALENDLY_WEBHOOK_RECEIVED": 8, "PAYMENT_PENDING": 8, "PAYMENT_PROCESSING": 8,
    "PAYMENT_SUCCEEDED": 8, "PAYMENT_FAILED": 45, "BOOKING_CANCELLED": 8, "BOOKING_RESCHEDULED": 8,
    "REFUND_PENDING": 8, "IDLE": 8, "ERROR_CALENDLY": 8, "ERROR_PAYMENT": 8, "ERROR_WEBHOOK": 8,
}
# Triggers that happen at most once in any of these paths, whatever their cause.
ONCE = ("onPaymentSucceeded", "cancelBooking", "cancelBookingProcess", "initiateRefund", "completeRefund",
        "onLatePayment", "rescheduleBooking")
# What a fault explains in a worker's or scheduler's log: the database or the broker went away.
FAULT_SIGNATURES = re.compile(
    r"OperationalError|InterfaceError|ConnectionError|ConnectionRefused|ConnectionReset|ConnectionClosed|"
    r"server closed the connection|Connection closed by server|terminating connection|connection already closed|"
    r"could not connect|could not receive data from server|Connection reset by peer|EOF detected|"
    r"Consumer encountered a connection error|"
    r"Connection refused|Error \d+ connecting|Error while reading|BusyLoadingError|TimeoutError|timed out|"
    r"the database system is (starting up|shutting down|in recovery mode)|unavailable|broker")


@dataclass(frozen=True)
class Path:
    name: str
    state: str  # where the booking must end
    kept: int  # charged less refunded
    attempts: int  # payment attempts, each exactly one Checkout Session
    refunds: int
    released: bool  # the Calendly slot freed by us (not by the invitee)


PATHS = (
    Path("paid", "BOOKING_CONFIRMED", PRICE, 1, 0, False),
    Path("failed_then_paid", "BOOKING_CONFIRMED", PRICE, 2, 0, False),
    Path("checkout_expired", "IDLE", 0, 1, 0, True),
    Path("cancelled_before_paying", "IDLE", 0, 1, 0, True),
    Path("cancelled_by_client", "REFUND_COMPLETED", 0, 1, 1, True),
    Path("cancelled_in_calendly", "REFUND_COMPLETED", PRICE // 2, 1, 1, False),
    Path("rescheduled_in_calendly", "BOOKING_CONFIRMED", PRICE, 1, 0, False),
    Path("paid_after_cancelling", "REFUND_COMPLETED", 0, 1, 1, True),
)


@dataclass
class Answers:
    """Every answer the intakes gave the client, by status."""

    statuses: Counter = field(default_factory=Counter)
    errors: list = field(default_factory=list)  # 5xx other than 503, with the body
    unanswered: list = field(default_factory=list)  # why a request got no answer (the first few)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, status, text: str = "") -> None:
        with self.lock:
            self.statuses[status] += 1
            if isinstance(status, int) and status >= 500 and status != 503:
                self.errors.append((status, text[:300]))
            elif status == "no answer" and len(self.unanswered) < 10:
                self.unanswered.append(text[:300])


class Shopper:
    """One client of the frontend, over both intakes, patient as a browser with retries: a 5xx or an
    unanswered request is tried again (POSTs carry an Idempotency-Key, so a retry is the same request);
    a 5xx other than 503 is counted against the run."""

    def __init__(self, intakes: list[str], sandbox, answers: Answers, deadline: float, address: str):
        self.intakes, self.sandbox, self.answers, self.deadline = intakes, sandbox, answers, deadline
        self.booking_id: str | None = None  # once created: a booking that never ends is looked up by it
        self.http = requests.Session()
        # Each client from an address of its own, as the load balancer in front of the intakes says.
        self.http.headers["X-Forwarded-For"] = address

    def _call(self, method: str, path: str, ok: tuple[int, ...], **kwargs) -> requests.Response:
        while True:
            try:
                response = self.http.request(method, random.choice(self.intakes) + path, timeout=15, **kwargs)
                self.answers.note(response.status_code, response.text)
                if response.status_code in ok:
                    return response
                if response.status_code == 429:
                    time.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                if response.status_code < 500:
                    raise AssertionError(f"{method} {path}: {response.status_code} {response.text[:300]}")
                # A 5xx is tried again, as a browser would; one other than 503 is counted against the run.
            except requests.RequestException as exc:
                self.answers.note("no answer", str(exc))
            if time.monotonic() > self.deadline:
                raise AssertionError(f"{method} {path}: no success before the deadline")
            time.sleep(0.5)

    def create(self, slug: str) -> dict:
        booking = self._call("POST", "/v1/bookings", (201,), json={
            "session_type": slug, "email": f"client-{secrets.token_hex(4)}@example.com", "name": "Ada Lovelace"}).json()
        self.booking_id = booking["id"]
        return booking

    def status(self, booking_id: str) -> dict:
        return self._call("GET", f"/v1/bookings/{booking_id}", (200,)).json()

    def act(self, booking_id: str, action: str, body: dict | None = None) -> requests.Response:
        """A POST action; a 409 (the booking is between two states) is tried again, like a client
        whose button is still there."""
        key = secrets.token_hex(8)
        while True:
            response = self._call("POST", f"/v1/bookings/{booking_id}/{action}", (202, 409), json=body or {},
                                  headers={"Idempotency-Key": key})
            if response.status_code == 202:
                return response
            if time.monotonic() > self.deadline:
                raise AssertionError(f"{action}: still 409 at the deadline: {response.text[:300]}")
            time.sleep(0.5)

    def wait_for(self, booking_id: str, predicate, what: str) -> dict:
        last = {}
        while time.monotonic() < self.deadline:
            last = self.status(booking_id)
            if predicate(last):
                return last
            time.sleep(random.uniform(*POLL_SECONDS))
        raise AssertionError(f"never {what}: stayed in {last.get('state')}, history "
                             f"{[(h['state'], h['trigger']) for h in last.get('history', [])]}")

    def wait_state(self, booking_id: str, state: str) -> dict:
        return self.wait_for(booking_id, lambda view: view["state"] == state, f"reached {state}")

    def sandbox_post(self, path: str, body: dict) -> dict:
        response = requests.post(self.sandbox.base + path, json=body, timeout=30)
        assert response.status_code in (200, 201), f"{path}: {response.status_code} {response.text[:300]}"
        return response.json()

    def to_checkout(self, slug: str, hours: float) -> tuple[dict, dict]:
        booking = self.create(slug)
        slot = self.sandbox_post("/calendly/_sandbox/schedule",
                                 {"scheduling_url": booking["scheduling_url"], "start_time": hours_from_now(hours)})
        self._call("POST", f"/v1/bookings/{booking['id']}/scheduled", (202,), headers={"Idempotency-Key": secrets.token_hex(8)},
                   json={"event_uri": slot["event_uri"], "invitee_uri": slot["invitee_uri"]})
        return self.wait_for(booking["id"], lambda v: v["state"] == "PAYMENT_PROCESSING" and v["checkout_url"],
                             "opened a checkout"), slot

    def pay(self, checkout_url: str, outcome: str = "paid") -> None:
        response = requests.post(checkout_url + "/pay", json={"outcome": outcome}, timeout=30)
        assert response.status_code == 200, response.text

    def confirmed(self, slug: str, hours: float) -> tuple[dict, dict]:
        view, slot = self.to_checkout(slug, hours)
        self.pay(view["checkout_url"])
        return self.wait_state(view["id"], "BOOKING_CONFIRMED"), slot


def drive(path: Path, shopper: Shopper) -> str:
    """Walk one booking down `path` as the frontend, the client and the providers would; returns its id."""
    slug = "consultation"
    if path.name == "paid":
        view, _ = shopper.confirmed(slug, 100)
    elif path.name == "failed_then_paid":
        view, _ = shopper.to_checkout(slug, 100)
        shopper.pay(view["checkout_url"], "delayed")
        settled = requests.post(view["checkout_url"] + "/settle", json={"outcome": "failed"}, timeout=30)
        assert settled.status_code == 200, settled.text
        shopper.wait_state(view["id"], "PAYMENT_FAILED")
        shopper.act(view["id"], "retry-payment")
        again = shopper.wait_for(view["id"], lambda v: v["state"] == "PAYMENT_PROCESSING" and v["checkout_url"]
                                 and v["checkout_url"] != view["checkout_url"], "opened a second checkout")
        shopper.pay(again["checkout_url"])
        view = shopper.wait_state(view["id"], "BOOKING_CONFIRMED")
    elif path.name == "checkout_expired":
        view, _ = shopper.to_checkout(slug, 100)
        session_id = view["checkout_url"].rsplit("/", 1)[1]
        response = requests.post(f"{shopper.sandbox.base}/stripe/v1/checkout/sessions/{session_id}/expire", timeout=30,
                                 headers={"Authorization": f"Bearer {shopper.sandbox.config.stripe_secret_key}"})
        assert response.status_code == 200, response.text
        shopper.wait_state(view["id"], "PAYMENT_FAILED")
        view = shopper.wait_state(view["id"], "IDLE")  # the client never retries; the hold runs out
    elif path.name == "cancelled_before_paying":
        view, _ = shopper.to_checkout(slug, 100)
        shopper.act(view["id"], "cancel", {"reason": "changed my mind"})
        view = shopper.wait_state(view["id"], "IDLE")
    elif path.name == "cancelled_by_client":
        view, _ = shopper.confirmed(slug, 72)
        shopper.act(view["id"], "cancel", {"reason": "plans changed"})
        view = shopper.wait_state(view["id"], "REFUND_COMPLETED")
    elif path.name == "cancelled_in_calendly":
        view, slot = shopper.confirmed(slug, 30)
        shopper.sandbox_post("/calendly/_sandbox/cancel", {"invitee_uri": slot["invitee_uri"], "canceler_type": "invitee"})
        view = shopper.wait_state(view["id"], "REFUND_COMPLETED")
    elif path.name == "rescheduled_in_calendly":
        view, slot = shopper.confirmed(slug, 50)
        new_start = hours_from_now(80)
        shopper.sandbox_post("/calendly/_sandbox/reschedule", {
            "invitee_uri": slot["invitee_uri"], "start_time": new_start,
            "order": random.choice(("canceled_first", "created_first"))})
        view = shopper.wait_for(view["id"], lambda v: v["state"] == "BOOKING_CONFIRMED" and v["scheduled_start"] == new_start,
                                "confirmed on the new slot")
    elif path.name == "paid_after_cancelling":
        # Paid at Stripe, and cancelled at the same moment: whichever the service learns first, the
        # money goes back in full (a late payment of an abandoned flow, or a cancellation 72 h ahead).
        view, _ = shopper.to_checkout(slug, 72)
        shopper.pay(view["checkout_url"])
        shopper.act(view["id"], "cancel", {"reason": "too slow"})
        view = shopper.wait_state(view["id"], "REFUND_COMPLETED")
    else:
        raise ValueError(path.name)
    return view["id"]


# --- faults ---------------------------------------------------------------------------------------

def signed_probe(whsec: str) -> tuple[bytes, dict]:
    """A valid delivery the intake must store and queue (a paid session of no booking of ours)."""
    body = encode(stripe_event("checkout.session.completed", checkout_session("p" * 32, 100)))
    return body, {"Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, whsec)}


class Faults:
    """Workers killed again and again, one Redis restart and one PostgreSQL restart; while either is
    down, both intakes are probed with signed deliveries (they must answer 503, never 2xx)."""

    def __init__(self, processes: ProcessSet, pg: PrivatePostgres, redis_server: PrivateRedis, intakes: list[str], whsec: str):
        self.processes, self.pg, self.redis, self.intakes, self.whsec = processes, pg, redis_server, intakes, whsec
        self.worker_kills = 0
        self.redis_restarts = self.postgres_restarts = 0
        self.outage_seconds: dict[str, float] = {}
        self.probes: dict[str, Counter] = {"redis": Counter(), "postgres": Counter()}
        self.stop = threading.Event()
        self.failure: BaseException | None = None
        self._threads = [threading.Thread(target=self._guard(self._kill_workers), daemon=True),
                         threading.Thread(target=self._guard(self._restart_servers), daemon=True)]

    def _guard(self, function):
        def run():
            try:
                function()
            except BaseException as exc:  # surfaced by the test after the run
                self.failure = exc
        return run

    def start(self) -> None:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(120)
        if self.failure is not None:
            raise self.failure

    def _kill_workers(self) -> None:
        while not self.stop.wait(random.uniform(*KILL_EVERY_SECONDS)):
            victim = f"worker.{random.randrange(WORKERS)}"
            self.processes.kill(victim)
            self.worker_kills += 1
            self.processes.start(victim)  # as a platform restarts a crashed dyno

    def _restart_servers(self) -> None:
        for at, name in OUTAGES:
            # Both outages happen even if the bookings are done sooner (a small FAULT_BOOKINGS).
            time.sleep(max(0.0, self.started + at - time.monotonic()))
            server = self.redis if name == "redis" else self.pg
            down = server.restart(while_down=lambda until, counts=self.probes[name]: self._probe(until, counts))
            self.outage_seconds[name] = self.outage_seconds.get(name, 0.0) + down
            if name == "redis":
                self.redis_restarts += 1
            else:
                self.postgres_restarts += 1

    def _probe(self, until: float, counts: Counter) -> None:
        """Signed deliveries to both intakes while the server is down (only answers that came back
        before it was started again are counted)."""
        while time.monotonic() < until:
            for intake in self.intakes:
                body, headers = signed_probe(self.whsec)
                try:
                    status = requests.post(intake + "/webhooks/stripe", data=body, headers=headers,
                                           timeout=max(0.5, until - time.monotonic())).status_code
                except requests.RequestException:
                    status = "no answer"
                counts[status] += 1
            time.sleep(0.2)


# --- the service ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def faulty_stack(tmp_path_factory):
    require_service("PostgreSQL and Redis servers of the test's own", servers_problem())
    from sandbox import Chaos, Sandbox, SandboxConfig, serve_in_thread

    tmp_path = tmp_path_factory.mktemp("faults")
    pg = PrivatePostgres()
    redis_server = PrivateRedis()
    mail = MailSink()
    secret = {"key": "sk_test_" + secrets.token_hex(8), "whsec": "whsec_" + secrets.token_hex(16),
              "token": secrets.token_hex(8), "signing": secrets.token_hex(16)}
    # Providers retry for days; here a minute or more of retries (backoff up to 5 s) outlasts every outage.
    sandbox = Sandbox(SandboxConfig(secret["key"], secret["whsec"], secret["token"], secret["signing"],
                                    delivery_attempts=60))
    server, sandbox_base = serve_in_thread(sandbox.app)
    sandbox.config.public_base = sandbox.base = sandbox_base
    database = ScratchDatabase(pg.url, name="bookingflow")
    env = {
        **base_environment(),
        "DATABASE_URL": database.url, "BROKER_URL": redis_server.url,
        "STRIPE_SECRET_KEY": secret["key"], "STRIPE_WEBHOOK_SECRET": secret["whsec"],
        "STRIPE_API_BASE": sandbox_base + "/stripe",
        "CALENDLY_API_TOKEN": secret["token"], "CALENDLY_WEBHOOK_SIGNING_KEY": secret["signing"],
        "CALENDLY_API_BASE": sandbox_base + "/calendly",
        "PUBLIC_URL": "https://frontend.example", "SWEEP_INTERVAL_SECONDS": "1", "SMTP_URL": mail.url,
        "STATE_TIMEOUTS": ",".join(f"{state}={seconds}" for state, seconds in STATE_TIMEOUTS.items()),
        "WEB_CONCURRENCY": "2", "WORKER_THREADS": "4", "TMPDIR": str(tmp_path), "TRUSTED_PROXY_COUNT": "1",
    }
    processes = ProcessSet(env, tmp_path)
    try:
        processes.release()
        import_session_types(processes.env, tmp_path, sandbox_base,
                             [{"slug": "consultation", "price": PRICE, "refund_policy": POLICY}])
        names = [f"web.{i}" for i in range(WEBS)] + [f"worker.{i}" for i in range(WORKERS)] + \
                [f"scheduler.{i}" for i in range(SCHEDULERS)]
        for name in names:
            processes.start(name)
        intakes = []
        for i in range(WEBS):
            processes.wait_answering(f"web.{i}")
            intakes.append(processes.base(f"web.{i}"))
        sandbox.config.stripe_webhook_url = intakes[0] + "/webhooks/stripe"
        sandbox.config.calendly_webhook_url = intakes[0] + "/webhooks/calendly"
        sandbox.config.chaos = Chaos(targets={
            provider: tuple(f"{intake}/webhooks/{provider}" for intake in intakes) for provider in ("stripe", "calendly")})
        yield {"processes": processes, "pg": pg, "redis": redis_server, "mail": mail, "sandbox": sandbox,
               "intakes": intakes, "database_url": database.url, "whsec": secret["whsec"], "log_dir": tmp_path}
    finally:
        processes.stop_all()
        sandbox.close()
        server.shutdown()
        mail.stop()
        redis_server.stop()
        pg.stop()


# --- what happened, counted -----------------------------------------------------------------------

def query(database_url: str, sql: str, params: tuple = ()) -> list[tuple]:
    import psycopg2

    connection = psycopg2.connect(database_url, connect_timeout=10)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        connection.close()


def where_they_stand(database_url: str, lost: dict[str, tuple[str, str]], limit: int = 8) -> list[dict]:
    """What the database says of bookings whose client gave up: enough to tell a lost message from a
    flagged booking or a check pushed far away, from the one line a CI log shows."""
    columns = ("state", "flagged_at", "flag_reason", "next_check_at", "check_attempts", "recovery_attempts",
               "error_origin", "last_error", "state_changed_at")
    found = []
    for booking_id, (path, error) in list(lost.items())[:limit]:
        rows = query(database_url, f"SELECT {', '.join(columns)} FROM booking WHERE id = %s", (booking_id,))
        row = {"booking": booking_id, "path": path, "client": error[:300]}
        if rows:
            row.update({c: str(v) for c, v in zip(columns, rows[0]) if v is not None})
            row["unprocessed"] = query(database_url, "SELECT provider, type, attempts, received_at FROM provider_event "
                                                     "WHERE booking_id = %s AND processed_at IS NULL", (booking_id,))
            row["transitions"] = [t for t, in query(database_url, "SELECT trigger FROM transition WHERE booking_id = %s "
                                                                  "ORDER BY id", (booking_id,))]
        found.append(row)
    return found


def unexplained_errors(logs: dict[str, str]) -> dict[str, list[str]]:
    """Error lines and tracebacks no injected fault explains; in the web processes, any unhandled error."""
    found: dict[str, list[str]] = {}
    for name, text in logs.items():
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            level = (record or {}).get("level", "")
            if record is not None and level.upper() not in ("ERROR", "CRITICAL"):
                continue
            if record is None and "Traceback" not in line and "Error" not in line:
                continue
            if name.startswith("web") and "unhandled error" in line:
                found.setdefault(name, []).append(line[:2000])
            elif not FAULT_SIGNATURES.search(line):
                found.setdefault(name, []).append(line[:2000])
    return found


def test_every_booking_ends_where_its_path_says_through_kills_restarts_and_chaotic_deliveries(faulty_stack):
    stack = faulty_stack
    processes, sandbox, intakes = stack["processes"], stack["sandbox"], stack["intakes"]
    answers = Answers()
    faults = Faults(processes, stack["pg"], stack["redis"], intakes, stack["whsec"])
    assigned = [PATHS[i % len(PATHS)] for i in range(BOOKINGS)]
    random.shuffle(assigned)
    outcomes: dict[int, tuple[Path, str | None, str | None]] = {}
    seconds_per_path: dict[str, list[float]] = {}

    def run(index: int) -> None:
        path = assigned[index]
        started = time.monotonic()
        shopper = Shopper(intakes, sandbox, answers, started + PATH_DEADLINE_SECONDS,
                          address=f"198.51.100.{index % 250 + 1}")
        try:
            outcomes[index] = (path, drive(path, shopper), None)
            seconds_per_path.setdefault(path.name, []).append(time.monotonic() - started)
        except Exception as exc:
            outcomes[index] = (path, shopper.booking_id, f"{exc.__class__.__name__}: {exc}"[:1500])

    began = time.monotonic()
    faults.start()
    try:
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            list(pool.map(run, range(BOOKINGS)))
    finally:
        faults.finish()
    flowed = time.monotonic() - began

    # Quiet down: every copy of every delivery sent, every closing action done.
    assert sandbox.wait_deliveries_idle(timeout=120), "the sandbox still had deliveries to send"
    done = {booking_id: path for path, booking_id, error in outcomes.values() if error is None}
    database_url = stack["database_url"]

    def closing_work_done() -> bool:
        rows = query(database_url, "SELECT count(*) FROM booking WHERE state IN ('IDLE', 'BOOKING_CANCELLED') "
                                   "AND settled_at IS NULL")
        return rows[0][0] == 0

    wait_until(closing_work_done, timeout=90, interval=0.5, message="the closing work of abandoned bookings")

    # --- the counts -----------------------------------------------------------------------------
    lost = {booking_id or f"#{i}": (path.name, error) for i, (path, booking_id, error) in outcomes.items() if error}
    states = dict(query(database_url, "SELECT id, state FROM booking"))
    wrong_end = {b: (p.name, states.get(b)) for b, p in done.items() if states.get(b) != p.state}

    sessions = [s for s in sandbox.objects("checkout.session") if s.get("client_reference_id") in done]
    per_attempt = Counter((s["client_reference_id"], s["metadata"].get("payment_attempt")) for s in sessions)
    double_sessions = {key: n for key, n in per_attempt.items() if n > 1}
    attempts = Counter(booking_id for booking_id, _ in per_attempt)
    wrong_attempts = {b: (p.name, attempts[b]) for b, p in done.items() if attempts[b] != p.attempts}
    paid_sessions = Counter(s["client_reference_id"] for s in sessions if s.get("payment_status") == "paid")
    double_charges = {b: n for b, n in paid_sessions.items() if n > 1}

    stripe_refunds = [r for r in sandbox.objects("refund") if r.get("metadata", {}).get("booking_id") in done]
    refunds = Counter(r["metadata"]["booking_id"] for r in stripe_refunds)
    double_refunds = {b: n for b, n in refunds.items() if n > done[b].refunds}
    missing_refunds = {b: p.name for b, p in done.items() if refunds[b] < p.refunds}

    intents = {s["payment_intent"]: s["client_reference_id"] for s in sessions if s.get("payment_status") == "paid"}
    charged = Counter()
    for s in sessions:
        if s.get("payment_status") == "paid":
            charged[s["client_reference_id"]] += s["amount_total"]
    refunded = Counter()
    for r in sandbox.objects("refund"):
        if r["payment_intent"] in intents and r["status"] in ("succeeded", "pending"):
            refunded[intents[r["payment_intent"]]] += r["amount"]
    books = {row[0]: (row[1], row[2]) for row in query(database_url, "SELECT id, amount_paid, amount_refunded FROM booking")}
    wrong_money = {b: (p.name, charged[b], refunded[b], books.get(b)) for b, p in done.items()
                   if charged[b] - refunded[b] != p.kept or books.get(b) != (charged[b], refunded[b])}

    transitions = query(database_url, "SELECT booking_id, trigger, cause, count(*) FROM transition "
                                      "GROUP BY booking_id, trigger, cause HAVING count(*) > 1")
    once = query(database_url, "SELECT booking_id, trigger, count(*) FROM transition WHERE trigger IN %s "
                               "GROUP BY booking_id, trigger HAVING count(*) > 1", (ONCE,))
    double_transitions = transitions + once

    releases = Counter(r["path"] for r in sandbox.api_requests("calendly")
                       if r["method"] == "POST" and r["path"].endswith("/cancellation") and r["status"] == 201)
    release_calls = Counter(r["path"] for r in sandbox.api_requests("calendly")
                            if r["method"] == "POST" and r["path"].endswith("/cancellation"))
    double_releases = {event: n for event, n in releases.items() if n > 1}
    events = {e["uri"]: e for e in sandbox.objects("scheduled_event")}
    booking_events = dict(query(database_url, "SELECT id, calendly_event_uri FROM booking"))
    unreleased = {b: p.name for b, p in done.items() if p.released
                  and events.get(booking_events.get(b), {}).get("status") != "canceled"}

    mail_ids = stack["mail"].message_ids()
    double_emails = {message_id: n for message_id, n in mail_ids.items() if n > 1}
    unsent_emails = query(database_url, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")[0][0]

    chaos = sandbox.config.chaos.tally.report()
    intake_5xx = {target: {s: n for s, n in statuses.items() if s.startswith("5") and s != "503"}
                  for target, statuses in chaos["statuses"].items()}
    intake_5xx = {target: counts for target, counts in intake_5xx.items() if counts}
    probes_2xx = {name: sum(n for s, n in counts.items() if isinstance(s, int) and 200 <= s < 300)
                  for name, counts in faults.probes.items()}
    errors_in_logs = unexplained_errors(processes.logs())

    figures = {
        "bookings": BOOKINGS,
        "bookings_per_path": dict(Counter(p.name for p in assigned)),
        "processes": {"web": WEBS, "worker": WORKERS, "scheduler": SCHEDULERS},
        "worker_kills": faults.worker_kills,
        "redis_restarts": faults.redis_restarts, "postgres_restarts": faults.postgres_restarts,
        "outage_seconds": {k: round(v, 1) for k, v in faults.outage_seconds.items()},
        "deliveries": len(sandbox.deliveries()),
        "delivery_posts": chaos["posts"], "duplicate_copies_accepted": chaos["duplicate_copies"],
        "copies_sent_to_both_intakes_at_once": chaos["copies_sent_to_all_targets_at_once"],
        "deliveries_given_up": chaos["deliveries_given_up"],
        "delivery_answers_by_intake": chaos["statuses"],
        "probes_during_outages": {name: {str(s): n for s, n in counts.items()} for name, counts in faults.probes.items()},
        "probes_2xx_during_outages": probes_2xx,
        "client_answers": {str(s): n for s, n in sorted(answers.statuses.items(), key=str)},
        "client_requests_unanswered_why": answers.unanswered,
        "503_to_deliveries": sum(statuses.get("503", 0) for statuses in chaos["statuses"].values()),
        "503_to_client": answers.statuses.get(503, 0),
        "5xx_other_than_503": len(answers.errors) + sum(sum(c.values()) for c in intake_5xx.values()),
        "lost": len(lost) + len(wrong_end),
        "double_checkout_sessions": len(double_sessions), "double_charges": len(double_charges),
        "double_refunds": len(double_refunds), "missing_refunds": len(missing_refunds),
        "money_mismatches": len(wrong_money),
        "double_transitions": len(double_transitions),
        "double_slot_releases": len(double_releases),
        "slot_release_calls": sum(release_calls.values()), "slots_released": sum(releases.values()),
        "emails_sent": sum(mail_ids.values()), "double_emails": len(double_emails), "emails_unsent": unsent_emails,
        "checkout_sessions": len(sessions), "refunds_at_stripe": len(stripe_refunds),
        # Requests that Stripe answered with an object it had already made for the same idempotency key.
        "checkout_replays": sum(1 for r in sandbox.api_requests("stripe")
                                if r["path"] == "/v1/checkout/sessions" and r["status"] == 200) - len(sessions),
        "unexplained_log_errors": {name: len(lines) for name, lines in errors_in_logs.items()},
        "process_starts": dict(processes.starts),
        # From the client's first request to the end state, faults and recoveries included.
        "path_seconds": {name: {"median": round(statistics.median(times), 1), "max": round(max(times), 1)}
                         for name, times in sorted(seconds_per_path.items())},
        "flow_seconds": round(flowed, 1), "duration_seconds": round(time.monotonic() - began, 1),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    print("\nfault suite figures:\n" + json.dumps(figures, indent=2))
    if os.environ.get("FAULT_FIGURES_PATH"):
        with open(os.environ["FAULT_FIGURES_PATH"], "w") as out:
            json.dump(figures, out, indent=2)

    assert not lost, f"{len(lost)} bookings never ended: {where_they_stand(database_url, lost)}"
    assert not wrong_end, f"bookings that ended elsewhere: {dict(list(wrong_end.items())[:10])}"
    assert not double_sessions and not wrong_attempts, (double_sessions, wrong_attempts)
    assert not double_charges, double_charges
    assert not double_refunds and not missing_refunds, (double_refunds, missing_refunds)
    assert not wrong_money, dict(list(wrong_money.items())[:10])
    assert not double_transitions, double_transitions[:10]
    assert not double_releases and not unreleased, (double_releases, unreleased)
    assert not double_emails, double_emails
    assert not answers.errors and not intake_5xx, (answers.errors[:10], intake_5xx)
    assert chaos["deliveries_given_up"] == 0
    planned = Counter(name for _, name in OUTAGES)
    assert (faults.redis_restarts, faults.postgres_restarts) == (planned["redis"], planned["postgres"])
    assert faults.worker_kills > 0
    assert all(sum(faults.probes[name].values()) for name in planned), faults.probes
    assert probes_2xx == {"redis": 0, "postgres": 0}, faults.probes
    assert not errors_in_logs, {name: lines[:5] for name, lines in errors_in_logs.items()}
