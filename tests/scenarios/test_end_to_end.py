"""End to end on real processes: gunicorn, the dramatiq CLI and the scheduler as the Procfile starts
them, against PostgreSQL and Redis, with the providers replaced by the local sandbox."""

from __future__ import annotations

import ipaddress
import json

import pytest
import requests

from support.waiting import wait_until

from support.flows import Client, history_states, sessions_of
from support.providers import encode, stripe_event, stripe_signature, checkout_session
from support.realstack import RealStack, base_environment, run_cli, running_service

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_service(tmp_path_factory.mktemp("e2e")) as running:
        yield running


def test_a_booking_walks_to_confirmed_over_http_alone(stack):
    frontend = Client(stack.base, stack.sandbox)
    try:
        view, _ = frontend.book_and_wait_for_checkout("strategy-session")
        frontend.pay(view["checkout_url"])
        confirmed = frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    except AssertionError as failure:
        raise AssertionError(f"{failure}\n--- stack log ---\n{stack.log()}") from None
    assert history_states(confirmed)[-1] == "BOOKING_CONFIRMED"
    assert (confirmed["amount"], confirmed["currency"]) == (25000, "usd")
    assert len(sessions_of(stack.sandbox, view["id"])) == 1
    assert "ada@example.com" not in stack.log()


def test_the_operator_sees_the_booking_and_its_history(stack):
    frontend = Client(stack.base, stack.sandbox)
    booking = frontend.create_booking("strategy-session")
    shown = run_cli(stack.env, "bookings", "show", booking["id"])
    assert "CALENDLY_SCHEDULING" in shown.stdout and "startCalendlyScheduling" in shown.stdout


def test_a_delivery_signed_with_the_previous_secret_during_rotation_is_accepted(stack):
    body = encode(stripe_event("checkout.session.completed", checkout_session("x" * 32, 100)))
    response = requests.post(f"{stack.base}/webhooks/stripe", data=body, timeout=10, headers={
        "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, "whsec_old_rotated")})
    assert response.status_code == 200


def test_a_delivery_is_refused_with_503_while_the_broker_is_unreachable(tmp_path):
    """No PostgreSQL or Redis needed: SQLite, and a broker URL where nothing listens."""
    from support.realstack import free_port

    env = {
        **base_environment(),
        "DATABASE_URL": f"sqlite:///{tmp_path}/down.db", "BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",
        "STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_down",
        "CALENDLY_API_TOKEN": "t", "CALENDLY_WEBHOOK_SIGNING_KEY": "k", "PUBLIC_URL": "https://frontend.example",
    }
    run_cli(env, "db", "upgrade")
    web = RealStack(env, tmp_path / "web.log", processes=("web",))
    try:
        web.wait_ready("/healthz")
        body = encode(stripe_event("checkout.session.completed", checkout_session("y" * 32, 100)))
        response = requests.post(f"{web.base}/webhooks/stripe", data=body, timeout=30, headers={
            "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, "whsec_down")})
        assert response.status_code == 503, web.log()
        assert response.json()["error"]["code"] == "unavailable"
        assert requests.get(f"{web.base}/readyz", timeout=30).status_code == 503
    finally:
        web.stop()


def test_an_operator_forces_a_transition_with_a_reason_recorded_in_the_history(stack):
    frontend = Client(stack.base, stack.sandbox)
    booking = frontend.create_booking("strategy-session")
    refused = run_cli(stack.env, "bookings", "force", booking["id"], "IDLE", check=False)
    assert refused.returncode != 0 and "--reason" in refused.stderr
    forced = run_cli(stack.env, "bookings", "force", booking["id"], "IDLE", "--reason", "client phoned to cancel")
    assert "forced to IDLE" in forced.stdout
    last = frontend.status(booking["id"])["history"][-1]
    assert (last["state"], last["trigger"]) == ("IDLE", "operatorOverride")
    assert "client phoned to cancel" in run_cli(stack.env, "bookings", "show", booking["id"]).stdout


def test_an_operator_replays_failed_events_and_reads_the_stats(stack):
    frontend = Client(stack.base, stack.sandbox)
    view, _ = frontend.book_and_wait_for_checkout("strategy-session")
    frontend.pay(view["checkout_url"])
    frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    listed = run_cli(stack.env, "events", "list").stdout
    assert "checkout.session.completed" in listed and "invitee.created" in listed
    replayed = run_cli(stack.env, "events", "replay", "--since", "2000-01-01T00:00:00Z").stdout
    assert "queued" in replayed
    assert frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")["history"][-1]["trigger"] == "confirmBooking"
    stats = run_cli(stack.env, "stats").stdout
    assert "conversion (reached BOOKING_CONFIRMED)" in stats and "average booking value" in stats
    assert run_cli(stack.env, "bookings", "list", "--flagged").stdout == "no bookings\n"


def log_entries(stack) -> list[dict]:
    """The JSON lines of every process, as honcho prefixed them ("12:00:00 web.1 | {...}")."""
    entries = []
    for line in stack.log().splitlines():
        _, sep, text = line.partition("| ")
        if sep and text.startswith("{"):
            entries.append(json.loads(text))
    return entries


def test_one_booking_can_be_followed_by_its_id_from_the_delivery_to_confirmation(stack):
    frontend = Client(stack.base, stack.sandbox)
    view, _ = frontend.book_and_wait_for_checkout("strategy-session")
    frontend.pay(view["checkout_url"])
    frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")
    steps = ("invitee.created", "-> PAYMENT_PROCESSING", "checkout.session.completed", "-> BOOKING_CONFIRMED")

    def followed():
        found = [e for e in log_entries(stack) if e.get("booking_id") == view["id"]]
        text = " ".join(e["message"] for e in found)
        return found if all(step in text for step in steps) else None

    # Each event's own line comes just after the transitions it caused: poll until all are written.
    entries = wait_until(followed, message="the booking's whole path in the logs")
    # The request id of the payment delivery's intake line follows it into the job that confirmed.
    paid = next(e for e in entries if "checkout.session.completed" in e["message"])
    intake = [e for e in log_entries(stack) if e.get("event_id") == paid["event_id"] and "/webhooks/stripe" in e["message"]]
    assert intake and intake[0]["request_id"] == paid["request_id"]
    assert "ada@example.com" not in stack.log()
    metrics = requests.get(f"{stack.base}/metrics", timeout=10,
                           headers={"Authorization": f"Bearer {stack.env['METRICS_TOKEN']}"}).text
    assert 'bookingflow_history_transitions_total{from_state="PAYMENT_SUCCEEDED",to_state="BOOKING_CONFIRMED"}' in metrics
    assert 'bookingflow_http_requests_total{method="POST",route="/webhooks/stripe",status="200"}' in metrics
    assert 'bookingflow_bookings{state="BOOKING_CONFIRMED"}' in metrics


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on `port` on this host, as the kernel lists them."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                # /proc lists each 32-bit word in host (little-endian) order
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(str(ipaddress.ip_address(words)))
    return found


@pytest.mark.abuse
def test_the_worker_serves_its_metrics_on_loopback_only_on_a_port_of_its_own(stack):
    port = int(stack.env["WORKER_METRICS_PORT"])
    # A delivery for the worker to process, so that Dramatiq's counters have a sample to show.
    body = encode(stripe_event("checkout.session.completed", checkout_session("w" * 32, 100)))
    assert requests.post(f"{stack.base}/webhooks/stripe", data=body, timeout=10, headers={
        "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, "whsec_old_rotated")}).ok

    def scraped():
        try:
            text = requests.get(f"http://127.0.0.1:{port}/", timeout=2).text
        except requests.RequestException:
            return None
        return text if "dramatiq_messages_total" in text else None

    text = wait_until(scraped, timeout=30, interval=0.2, message=f"the worker's metrics on 127.0.0.1:{port}")
    assert "bookingflow_deliveries_processed_total" in text
    assert listening_addresses(port) == {"127.0.0.1"}


@pytest.mark.abuse
def test_web_and_worker_given_one_port_on_one_host_both_run(tmp_path):
    """A platform that hands every process the same PORT: the worker's exporter keeps off it."""
    from support.services import redis_problem, require_service
    from support.realstack import REDIS_URL, free_port, start_procfile_process, stop_group

    require_service("Redis", redis_problem(REDIS_URL))
    port, metrics_port = free_port(), free_port()
    env = {
        **base_environment(), "PORT": str(port), "WORKER_METRICS_PORT": str(metrics_port), "TMPDIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/one-port.db", "BROKER_URL": REDIS_URL,
        "STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_x", "CALENDLY_API_TOKEN": "t",
        "CALENDLY_WEBHOOK_SIGNING_KEY": "k", "PUBLIC_URL": "https://frontend.example", "WEB_CONCURRENCY": "1",
    }
    run_cli(env, "db", "upgrade")
    worker = start_procfile_process("worker", env, tmp_path / "worker.log")
    web = None
    try:
        def answering(url, process, name):
            def check():
                assert process.poll() is None, f"{name} exited:\n{(tmp_path / f'{name}.log').read_text()}"
                try:
                    return requests.get(url, timeout=2).status_code == 200
                except requests.RequestException:
                    return False
            return check

        # The worker first: before, its exporter took PORT and web could not bind it.
        wait_until(answering(f"http://127.0.0.1:{metrics_port}/", worker, "worker"), timeout=60, interval=0.2,
                   message="the worker's exporter on WORKER_METRICS_PORT")
        web = start_procfile_process("web", env, tmp_path / "web.log")
        wait_until(answering(f"http://127.0.0.1:{port}/healthz", web, "web"), timeout=60, interval=0.2,
                   message="web on PORT")
        assert worker.poll() is None and web.poll() is None
    finally:
        for process in (web, worker):
            if process is not None:
                stop_group(process)
