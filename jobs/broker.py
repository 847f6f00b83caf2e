"""Build the Dramatiq broker named by BROKER_URL."""

from __future__ import annotations

from urllib.parse import urlsplit

import dramatiq
from dramatiq.middleware import Middleware

from models.db import database


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


def build_broker(url: str) -> dramatiq.Broker:
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss"):
        from dramatiq.brokers.redis import RedisBroker

        # Short socket timeouts: the intake must answer 503 quickly when Redis is down, not hang.
        broker = RedisBroker(url=url, socket_connect_timeout=3, socket_timeout=10, health_check_interval=30)
    elif scheme in ("amqp", "amqps"):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=url, confirm_delivery=True)
    elif scheme == "stub":
        from dramatiq.brokers.stub import StubBroker

        broker = StubBroker()
        broker.emit_after("process_boot")
    else:
        raise ValueError(f"unsupported broker URL scheme {scheme!r}")
    broker.add_middleware(DatabaseConnections())
    return broker
