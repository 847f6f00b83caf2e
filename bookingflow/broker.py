"""The Dramatiq broker named by BROKER_URL, built once per process, and sending work by actor name.

The worker's entry point (`jobs`) installs it with the middleware its jobs need; the web and the
scheduler install it bare and send messages by name (`send`), so neither loads the worker's code.
In one process that does both (`bookingflow dev`, the tests) they share the one broker.
"""

from __future__ import annotations

import copy
import logging
import sys
import threading
import time
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
from dramatiq.middleware import Middleware

from bookingflow import logs, metrics


class WorkContext(Middleware):
    """Carries the request id (and the booking) from whoever enqueued a message to the job that runs
    it, and on to whatever that job enqueues: one id follows the work from the intake to the job to
    the sweep. Retries keep the message's options, so they keep the id too."""

    def before_enqueue(self, broker, message, delay):
        message.options.setdefault("request_id", logs.request_id.get() or logs.new_request_id("job-"))
        if logs.booking_id.get() and "booking_id" not in message.options:
            message.options["booking_id"] = logs.booking_id.get()

    def before_process_message(self, broker, message):
        logs.request_id.set(message.options.get("request_id"))
        logs.booking_id.set(message.options.get("booking_id"))
        logs.event_id.set(None)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        self._clear()

    def after_skip_message(self, broker, message):
        self._clear()

    @staticmethod
    def _clear():
        for variable in logs.CONTEXT.values():
            variable.set(None)
        metrics.event_received_at.set(None)


def _expose_worker_metrics(broker: dramatiq.Broker) -> None:
    """Dramatiq's own Prometheus middleware: queue and worker metrics, served on
    WORKER_METRICS_HOST:WORKER_METRICS_PORT (bookingflow.worker_metrics). The Procfile points
    dramatiq_prom_db and PROMETHEUS_MULTIPROC_DIR at one directory per port, so bookingflow's worker
    metrics are served with Dramatiq's."""
    from bookingflow.worker_metrics import WorkerPrometheus

    broker.add_middleware(WorkerPrometheus())


# pika's own defaults let one publish hang for a long time on a RabbitMQ that is down, blackholed or
# blocked (memory or disk alarm): 10 s per TCP connect, 15 s per handshake, no limit at all while
# blocked, and dramatiq tries 6 times. The web answers 503 instead, quickly, so these bound each
# attempt; a value given in BROKER_URL's query wins (pika reads the same names there).
RABBITMQ_URL_DEFAULTS = {
    "connection_attempts": "1",  # dramatiq retries the enqueue itself (on a fresh connection)
    "retry_delay": "0.5",  # only between connection_attempts, if the URL asks for several
    "socket_timeout": "2",  # TCP connect
    "stack_timeout": "4",  # TCP + AMQP handshake
    "blocked_connection_timeout": "5",  # a publisher blocked by a resource alarm gives up after this
    "heartbeat": "20",  # a dead peer is noticed within about 2 x (20 + 5) s, even mid-publish
}
# No new connection is attempted once an enqueue has spent this long: with the bounds above, an
# enqueue fails within about ENQUEUE_BUDGET + stack_timeout seconds, whatever the failure.
ENQUEUE_BUDGET_SECONDS = 3.0
READINESS_TIMEOUT_SECONDS = 2.0

# A worker that dies (OOM, SIGKILL, a lost host) leaves its unacknowledged messages in Redis until
# another worker's maintenance finds its heartbeat stale. With dramatiq's defaults (a 60 s timeout,
# maintenance on 0.1% of commands: about two minutes apart with four idle workers polling once a
# second) they came back one to three minutes later. A live worker beats about every second (its
# delay-queue consumer polls that often, busy or not), so 15 s is still far from a false death, and
# maintenance on 2% of commands runs every few seconds at the cost of one small sorted-set read.
REDIS_HEARTBEAT_TIMEOUT_MS = 15_000
REDIS_MAINTENANCE_CHANCE = 20_000  # per million commands


def rabbitmq_url(url: str) -> str:
    """BROKER_URL with RABBITMQ_URL_DEFAULTS added to its query (each of several `;`-separated URLs)."""
    bounded = []
    for one in url.split(";"):
        parts = urlsplit(one)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        bounded.append(urlunsplit(parts._replace(query=urlencode({**RABBITMQ_URL_DEFAULTS, **query}))))
    return ";".join(bounded)


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("threading"))


def _current_owner():
    """Who a connection in dramatiq's per-thread state belongs to: the thread, or, where gevent has
    patched threading (web's gevent workers), the greenlet: there `threading.local` is per greenlet,
    and the stand-in thread gevent gives a greenlet reports itself alive even after it ended."""
    if _gevent_patched():
        import greenlet

        return greenlet.getcurrent()
    return threading.current_thread()


def _has_ended(owner) -> bool:
    return owner.dead if hasattr(owner, "dead") else not owner.is_alive()


def _rabbitmq_broker_class():
    import pika
    import pika.exceptions
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    # pika logs a dozen lines per connection at INFO, and each failed attempt at ERROR: the intake
    # (503), /readyz and dramatiq's worker report a broker failure once each. A level set by the
    # operator's logging configuration wins.
    pika_log = logging.getLogger("pika")
    if pika_log.level == logging.NOTSET:
        pika_log.setLevel(logging.CRITICAL)

    base = RabbitmqBroker

    class BoundedRabbitmqBroker(base):
        """dramatiq's RabbitmqBroker (one pika connection and channel per thread, as pika requires: the
        web's request greenlets, the scheduler's and the worker's threads each publish on their own),
        with a time budget per enqueue, the connections of threads (greenlets) that ended closed (a
        server with one per connection would otherwise leave one open per client), and a readiness
        check."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self._owners: dict = {}  # connection -> the thread it belongs to
            self._owners_lock = threading.Lock()

        def _connection(self):
            if getattr(self.state, "connection", None) is not None:
                return base.connection.fget(self)
            deadline = getattr(self.state, "enqueue_deadline", None)
            if deadline is not None and time.monotonic() > deadline:
                # dramatiq catches this like any connection failure, and gives up after its attempts.
                raise pika.exceptions.AMQPConnectionError("enqueue time budget spent")
            self._close_connections_of_ended_threads()
            connection = base.connection.fget(self)
            with self._owners_lock:
                self._owners[connection] = _current_owner()
            return connection

        connection = property(_connection, None, base.connection.fdel, base.connection.__doc__)

        def _close_connections_of_ended_threads(self):
            with self._owners_lock:
                ended = [c for c, owner in self._owners.items() if _has_ended(owner) or c not in self.connections]
                for connection in ended:
                    del self._owners[connection]
            for connection in ended:
                if connection not in self.connections:
                    continue  # its thread closed it already
                self.connections.discard(connection)
                for channel in [c for c in list(self.channels) if c.connection is connection]:
                    self.channels.discard(channel)
                try:
                    if connection.is_open:
                        connection.close()  # nobody else uses it: its thread is gone
                except Exception:
                    pass

        def enqueue(self, message, *, delay=None):
            self.state.enqueue_deadline = time.monotonic() + ENQUEUE_BUDGET_SECONDS
            try:
                return super().enqueue(message, delay=delay)
            finally:
                self.state.enqueue_deadline = None

        def ping(self, timeout: float = READINESS_TIMEOUT_SECONDS) -> bool:
            """RabbitMQ answers an AMQP handshake (credentials and vhost included) within `timeout`.

            A connection of its own, opened and closed here: the calling thread's publishing connection
            may look open long after the server went away (pika notices only on I/O), and must not be
            left half-used by a check that timed out."""
            parameters = self.parameters if isinstance(self.parameters, list) else [self.parameters]
            for configured in parameters:
                probe = copy.copy(configured)  # shallow: an amqps URL carries an SSLContext
                probe.connection_attempts = 1
                probe.socket_timeout = min(probe.socket_timeout or timeout, timeout)
                probe.stack_timeout = timeout
                probe.blocked_connection_timeout = timeout
                try:
                    pika.BlockingConnection(probe).close()
                    return True
                except Exception:
                    continue
            return False

    return BoundedRabbitmqBroker


def build_broker(url: str) -> dramatiq.Broker:
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss"):
        from dramatiq.brokers.redis import RedisBroker

        # Short socket timeouts: the intake must answer 503 quickly when Redis is down, not hang.
        broker = RedisBroker(url=url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=30,
                             heartbeat_timeout=REDIS_HEARTBEAT_TIMEOUT_MS, maintenance_chance=REDIS_MAINTENANCE_CHANCE)
        _expose_worker_metrics(broker)
    elif scheme in ("amqp", "amqps"):
        # Publisher confirms: an enqueue returns once RabbitMQ has the message, or fails (then 503).
        broker = _rabbitmq_broker_class()(url=rabbitmq_url(url), confirm_delivery=True)
        _expose_worker_metrics(broker)
    elif scheme == "stub":
        from dramatiq.brokers.stub import StubBroker

        broker = StubBroker()
        broker.emit_after("process_boot")
    else:
        raise ValueError(f"unsupported broker URL scheme {scheme!r}")
    broker.add_middleware(WorkContext())
    return broker


# Every job runs on one queue: the worker processes all of them, and a message's name says its job.
QUEUE = "default"
# The actors the web and the scheduler send to (defined in jobs/).
PROCESS_EVENT = "process_event"
RECONCILE_BOOKING = "reconcile_booking"
SEND_EMAIL = "send_email"
SEND_ALERT = "send_alert"
ADVANCE_BOOKING = "advance_booking"
REPORT_DRIFT = "report_drift"
COLLECT_RECEIPTS = "collect_receipts"

_installed: dramatiq.Broker | None = None
_install_lock = threading.Lock()


def install(url: str, middleware: Iterable[Middleware] = ()) -> dramatiq.Broker:
    """This process's broker: built from `url` on the first call, with `middleware` added after the
    common ones unless a middleware of its type is already there. The worker adds those its jobs need
    last, because Dramatiq runs the after-hooks in reverse: a failure is recorded while the context
    and the database connection are still there."""
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = build_broker(url)
            _installed.declare_queue(QUEUE)
            dramatiq.set_broker(_installed)
        present = {type(existing) for existing in _installed.middleware}
        for extra in middleware:
            if type(extra) not in present:
                _installed.add_middleware(extra)
        return _installed


def installed() -> dramatiq.Broker:
    if _installed is None:
        raise RuntimeError("no broker installed in this process (bookingflow.broker.install)")
    return _installed


def send(actor_name: str, *args) -> dramatiq.Message:
    """Queue a job by its actor's name: what `actor.send(*args)` does, without the actor's code."""
    message = dramatiq.Message(queue_name=QUEUE, actor_name=actor_name, args=args, kwargs={}, options={})
    return installed().enqueue(message)
