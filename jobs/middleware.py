"""The worker's middleware: a database connection per message, and failures recorded by class."""

from __future__ import annotations

import logging

import peewee
from dramatiq.middleware import Middleware

from bookingflow import logs
from bookingflow import settings as settings_module
from bookingflow.error_classes import CLIENT_MESSAGES, ErrorClass, classify
from models.alerts import raise_alert
from models.bootstrap import require_existing_database
from models.db import database
from models.states import record_failure

log = logging.getLogger(__name__)


class DatabaseConnections(Middleware):
    """One database connection per message, opened before it and closed (returned to the pool) after;
    and at the worker's start, its database reached and migrated, or a one-line stop."""

    def before_worker_boot(self, broker, worker):
        require_existing_database(settings_module.get())

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


class ErrorClassification(Middleware):
    """After a job fails: record the class and the client-safe message on its booking, log the retry
    with its context, and alert on a system error (once per booking and kind of exception)."""

    def after_process_message(self, broker, message, *, result=None, exception=None):
        if exception is None:
            return
        error_class = classify(exception)
        booking_id = logs.booking_id.get() or message.options.get("booking_id")
        log.warning("job %s failed (%s, attempt %d): %s: %s", message.actor_name, error_class.value,
                    message.options.get("retries", 0) + 1, exception.__class__.__name__, str(exception)[:300])
        if booking_id:
            _record(booking_id, error_class, exception)
        if error_class == ErrorClass.SYSTEM:
            raise_alert(f"system:{booking_id or message.actor_name}:{exception.__class__.__name__}", "system_error",
                        f"{message.actor_name} failed with {exception.__class__.__name__} "
                        f"for booking {booking_id or '-'}: {str(exception)[:300]}", booking_id)


def _record(booking_id: str, error_class: ErrorClass, exception: BaseException) -> None:
    try:
        record_failure(booking_id, error_class.value, CLIENT_MESSAGES[error_class],
                       last_error=f"{exception.__class__.__name__}: {exception}")
    except peewee.PeeweeException:
        log.warning("could not record the failure on booking %s (the database is down?)", booking_id)
