"""The broker, for each kind BROKER_URL may name: Dramatiq's in-process stub (always), Redis and
RabbitMQ (`TEST_REDIS_URL`, `TEST_RABBITMQ_URL`, else the local defaults of realstack; skipped when
unreachable, failed under CI=true). Each test builds its own broker with the product's build_broker,
on a queue of its own, so it neither sees nor disturbs the suite's broker."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections import Counter
from urllib.parse import unquote, urlsplit

import dramatiq
import pytest
import requests

from bookingflow.settings import EMBEDDED_BROKER_URL
from support.services import rabbitmq_problem, redis_problem, require_service
from support.waiting import wait_until
from support.flows import Client, history_states, sessions_of
from support.providers import checkout_session, encode, stripe_event, stripe_signature
from support.realstack import RABBITMQ_URL, REDIS_URL, RealStack, base_environment, free_port, run_cli, running_service

URLS = {"stub": EMBEDDED_BROKER_URL, "redis": REDIS_URL, "rabbitmq": RABBITMQ_URL}
# Where nothing listens: the broker is down.
DOWN = {"redis": "redis://127.0.0.1:{port}/0", "rabbitmq": "amqp://guest:guest@127.0.0.1:{port}/%2F"}


def require_broker(kind: str) -> None:
    if kind == "redis":
        require_service("Redis", redis_problem(URLS[kind]))
    elif kind == "rabbitmq":
        require_service("RabbitMQ", rabbitmq_problem(URLS[kind]))


class OwnQueue:
    """A broker built as the service builds it, a queue name of its own, and its workers."""

    def __init__(self, kind: str):
        from bookingflow.broker import build_broker

        self.kind = kind
        self.broker = build_broker(URLS[kind])
        self.queue = f"bookingflow_test_{secrets.token_hex(4)}"
        self.workers: list[dramatiq.Worker] = []

    def actor(self, **options):
        def declare(fn):
            return dramatiq.actor(fn, broker=self.broker, queue_name=self.queue,
                                  actor_name=f"{self.queue}_{fn.__name__}", **options)
        return declare

    def start_worker(self) -> dramatiq.Worker:
        worker = dramatiq.Worker(self.broker, worker_threads=4, worker_timeout=50)
        worker.start()
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        while self.workers:
            self.workers.pop().stop()

    def left_in_queue(self) -> int:
        """Messages still in the queue and its delay queue (none taken by a worker at the time)."""
        if self.kind == "rabbitmq":
            return sum(self.broker.get_queue_message_counts(self.queue)[:2])
        if self.kind == "redis":
            return self.broker.do_qsize(self.queue)
        return self.broker.queues[self.queue].qsize() + self.broker.queues[f"{self.queue}.DQ"].qsize()

    def remove(self) -> None:
        self.stop_workers()
        if self.kind == "rabbitmq":
            for name in (self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"):
                self.broker.channel.queue_delete(name)
        else:
            self.broker.flush(self.queue)
        self.broker.close()


@pytest.fixture(params=["stub", "redis", "rabbitmq"])
def own(request, service_settings):
    """(service_settings: the database the broker's middleware opens for each message exists.)"""
    require_broker(request.param)
    queue = OwnQueue(request.param)
    yield queue
    queue.remove()


def test_a_message_sent_is_processed_once_by_a_worker(own):
    seen, lock = Counter(), threading.Lock()

    @own.actor(max_retries=0)
    def record(n):
        with lock:
            seen[n] += 1

    own.start_worker()
    for n in range(20):
        record.send(n)
    wait_until(lambda: sum(seen.values()) >= 20, message="20 messages processed")
    # Acknowledged, not only processed: a worker started after this one stopped gets nothing again.
    own.stop_workers()
    assert own.left_in_queue() == 0
    own.start_worker()
    time.sleep(0.5)
    assert seen == Counter(range(20))


def test_messages_sent_from_many_threads_at_once_are_each_processed_once(own):
    """The web sends from its request threads at once: pika's connections are not thread-safe, so the
    RabbitMQ broker keeps one per thread, and closes the ones of threads that ended."""
    seen, lock = Counter(), threading.Lock()

    @own.actor(max_retries=0)
    def record(n):
        with lock:
            seen[n] += 1

    own.start_worker()
    barrier, used = threading.Barrier(8), []

    def send(first):
        barrier.wait()
        for n in range(first, first + 10):
            record.send(n)
        if own.kind == "rabbitmq":
            used.append(own.broker.connection)  # this thread's own, opened by its first send

    threads = [threading.Thread(target=send, args=(10 * i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: sum(seen.values()) >= 80, message="80 messages processed")
    record.send(80)  # from this thread: its new connection is where the ended threads' are closed
    wait_until(lambda: seen[80], message="the last message processed")
    time.sleep(0.3)
    assert seen == Counter(range(81))
    if own.kind == "rabbitmq":
        assert len({id(connection) for connection in used}) == 8
        assert not any(connection.is_open or connection in own.broker.connections for connection in used)


def test_a_failing_actor_is_retried_until_it_succeeds(own):
    attempts, done = Counter(), threading.Event()

    @own.actor(max_retries=5, min_backoff=10, max_backoff=100)
    def flaky(key):
        attempts[key] += 1
        if attempts[key] < 3:
            raise RuntimeError("not yet")
        done.set()

    own.start_worker()
    flaky.send("once")
    assert done.wait(20), f"attempts so far: {attempts}"
    time.sleep(0.3)
    assert attempts == Counter({"once": 3})


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_a_send_to_an_unreachable_broker_fails_within_seconds(kind):
    """What lets the web answer 503 quickly (intake/queue.py turns any send failure into one; the
    gunicorn test below checks the answer itself): a send fails, it does not hang on the client
    library's own timeouts."""
    from bookingflow.broker import build_broker

    broker = build_broker(DOWN[kind].format(port=free_port()))

    @dramatiq.actor(broker=broker, queue_name=f"bookingflow_test_{secrets.token_hex(4)}", actor_name=f"down_{kind}")
    def job(n):
        pass

    try:
        for attempt in range(2):  # the first send also declares the queue; the second does not
            started = time.monotonic()
            with pytest.raises(Exception) as refused:
                job.send(attempt)
            assert not isinstance(refused.value, (TypeError, ValueError)), refused.value  # a failure to send, not a misuse
            assert time.monotonic() - started < 8
    finally:
        broker.close()


def test_the_rabbitmq_readiness_check_is_a_handshake_of_its_own():
    """/readyz asks the broker's ping(): a real AMQP handshake (a wrong password is not ready), on a
    connection it does not keep, within a short timeout."""
    from bookingflow.broker import build_broker

    require_broker("rabbitmq")
    reachable = build_broker(RABBITMQ_URL)
    assert reachable.ping(timeout=10) is True  # the server is shared with a leg of the suite: give it time
    assert not reachable.connections  # nothing kept: the request threads' connections are their own
    for url in (RABBITMQ_URL.replace("guest:guest@", "guest:wrong@"), DOWN["rabbitmq"].format(port=free_port())):
        started = time.monotonic()
        assert build_broker(url).ping() is False
        assert time.monotonic() - started < 8  # bounded: pika's own timeouts are 10 s and more


class Forwarder:
    """A TCP relay to `target` on a local port, whose connections can be cut (as a server does with a
    connection that missed its heartbeats) and which can go away altogether (as a server does)."""

    def __init__(self, target: tuple[str, int]):
        self.target, self.pairs, self.lock, self.running = target, [], threading.Lock(), True
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            client.settimeout(None)
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.pairs.append((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def cut(self):
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass

    def stop(self):
        self.running = False
        self.listener.close()
        self.cut()


@pytest.fixture
def relayed_rabbitmq():
    """The product's RabbitMQ broker, reaching RabbitMQ through a Forwarder; a queue of its own."""
    from urllib.parse import urlsplit

    from bookingflow.broker import build_broker

    require_broker("rabbitmq")
    parts = urlsplit(RABBITMQ_URL)
    relay = Forwarder((parts.hostname, parts.port or 5672))
    broker = build_broker(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{relay.port}").geturl())
    queue = f"bookingflow_test_{secrets.token_hex(4)}"
    yield relay, broker, queue
    relay.stop()
    direct = build_broker(RABBITMQ_URL)
    for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
        direct.channel.queue_delete(name)
    direct.close()


def test_readiness_notices_a_rabbitmq_that_went_away_after_the_web_connected(relayed_rabbitmq):
    relay, broker, _ = relayed_rabbitmq
    connection = broker.connection  # a request thread's, opened by an earlier enqueue
    assert broker.ping() is True
    relay.stop()
    assert connection.is_open  # what pika believes until it next reads: no proof of anything
    started = time.monotonic()
    assert broker.ping() is False
    assert time.monotonic() - started < 8  # bounded: pika's own timeouts are 10 s and more


def test_a_send_on_a_connection_the_server_dropped_goes_through_on_a_new_one(relayed_rabbitmq):
    """An idle request thread's connection misses its heartbeats and RabbitMQ closes it: the next
    enqueue from that thread must still succeed, not answer 503."""
    relay, broker, queue = relayed_rabbitmq

    @dramatiq.actor(broker=broker, queue_name=queue, actor_name=f"{queue}_job")
    def job(n):
        pass

    job.send(1)
    first = broker.connection
    relay.cut()
    job.send(2)
    assert broker.connection is not first and not first.is_open
    assert broker.get_queue_message_counts(queue)[0] == 2


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_readyz_and_the_webhooks_answer_503_on_gunicorn_while_the_broker_is_unreachable(kind, tmp_path):
    """The Procfile's web process (gunicorn, several threads), with a broker URL where nothing listens."""
    env = {
        **base_environment(),
        "DATABASE_URL": f"sqlite:///{tmp_path}/down.db", "BROKER_URL": DOWN[kind].format(port=free_port()),
        "STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_down",
        "CALENDLY_API_TOKEN": "t", "CALENDLY_WEBHOOK_SIGNING_KEY": "k", "PUBLIC_URL": "https://frontend.example",
    }
    run_cli(env, "db", "upgrade")
    web = RealStack(env, tmp_path / "web.log", processes=("web",))
    try:
        web.wait_ready("/healthz")
        body = encode(stripe_event("checkout.session.completed", checkout_session("z" * 32, 100)))
        started = time.monotonic()
        response = requests.post(f"{web.base}/webhooks/stripe", data=body, timeout=30, headers={
            "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, "whsec_down")})
        assert response.status_code == 503, web.log()
        assert response.json()["error"]["code"] == "unavailable"
        assert time.monotonic() - started < 5, web.log()
        ready = requests.get(f"{web.base}/readyz", timeout=30)
        assert ready.status_code == 503, web.log()
        assert ready.json()["checks"] == {"database": "ok", "broker": "unreachable"}
    finally:
        web.stop()


@pytest.mark.e2e
def test_a_booking_walks_to_confirmed_over_http_alone_on_rabbitmq(tmp_path):
    """The Procfile's processes with BROKER_URL=amqp://... (a scratch vhost): web, worker, scheduler."""
    with running_service(tmp_path, broker_url=RABBITMQ_URL) as stack:
        assert stack.env["BROKER_URL"].startswith("amqp://")
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
        assert requests.get(f"{stack.base}/readyz", timeout=10).json()["checks"]["broker"] == "ok"


@pytest.mark.e2e
def test_web_closes_the_rabbitmq_connection_of_each_client_connection_once_it_ended(tmp_path):
    """web's gevent workers serve each client connection in a greenlet of its own, and pika's
    connections are per thread, so per greenlet: one is opened for each client connection that sends a
    delivery. They must be closed once their greenlet ended, or RabbitMQ fills with one per client."""
    import subprocess

    with running_service(tmp_path, broker_url=RABBITMQ_URL) as stack:
        vhost = urlsplit(stack.broker_url).path.lstrip("/")
        secret = stack.env["STRIPE_WEBHOOK_SECRET"].split(",")[-1]

        def deliver(count: int) -> None:
            for _ in range(count):  # requests.post: a new client connection each time
                body = encode(stripe_event("checkout.session.completed", checkout_session("r" * 32, 100)))
                response = requests.post(f"{stack.base}/webhooks/stripe", data=body, timeout=10, headers={
                    "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, secret)})
                assert response.status_code == 200, stack.log()

        def connections() -> int:
            listed = subprocess.run(["rabbitmqctl", "list_connections", "-q", "-p", unquote(vhost), "name"],
                                    capture_output=True, text=True, timeout=60, check=True).stdout
            return len([line for line in listed.splitlines() if line.strip() and line.strip() != "name"])

        deliver(10)  # every process has opened what it keeps open: consumers, each thread's publisher
        before = connections()
        deliver(30)
        # The last greenlet of each of the 2 web workers may still hold its connection; a worker thread
        # that had not published yet may open its own.
        wait_until(lambda: connections() <= before + 2 + int(stack.env["WORKER_THREADS"]), timeout=30,
                   interval=0.5, message=f"RabbitMQ connections back near {before} after 30 client connections")
