"""Build the Dramatiq broker named by BROKER_URL."""

from __future__ import annotations

from urllib.parse import urlsplit

import dramatiq
from dramatiq.middleware import Middleware

from bookingflow import logs, metrics
from models.db import database


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


class DatabaseConnections(Middleware):
    """One database connection per message, opened before it and closed (returned to the pool) after."""

    def before_process_message(self, broker, message):
        database.connect(reuse_if_open=True)

    def after_process_message(self, broker, message, *, result=None, exception=None):
        self._close()

    def after_skip_message(self, broker, message):
        self._close()

    @staticmethod
    def _close():
        if not database.is_closed():
            database.close()


def _expose_worker_metrics(broker: dramatiq.Broker) -> None:
    """Dramatiq's own Prometheus middleware: queue and worker metrics, served by the worker on
    dramatiq_prom_port (the Procfile gives each worker process its own port and directory, and
    points PROMETHEUS_MULTIPROC_DIR there so bookingflow's worker metrics are served with them)."""
    from dramatiq.middleware.prometheus import Prometheus

    broker.add_middleware(Prometheus())


def build_broker(url: str) -> dramatiq.Broker:
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss"):
        from dramatiq.brokers.redis import RedisBroker

        # Short socket timeouts: the intake must answer 503 quickly when Redis is down, not hang.
        broker = RedisBroker(url=url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=30)
        _expose_worker_metrics(broker)
    elif scheme in ("amqp", "amqps"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url, confirm_delivery=True)
        _expose_worker_metrics(broker)
    elif scheme == "stub":
        from dramatiq.brokers.stub import StubBroker

        broker = StubBroker()
        broker.emit_after("process_boot")
    else:
        raise ValueError(f"unsupported broker URL scheme {scheme!r}")
    broker.add_middleware(WorkContext())
    broker.add_middleware(DatabaseConnections())
    return broker
