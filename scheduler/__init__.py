"""The scheduler process: runs the sweeps every SWEEP_INTERVAL_SECONDS.

Only one scheduler acts at a time: on PostgreSQL each run of the sweeps holds an advisory lock, and a
second scheduler that cannot take it skips that run. (The sweeps are also safe to run twice.)
"""

from __future__ import annotations

import logging
import signal

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from bookingflow import logs
from bookingflow import settings as settings_module
from models.db import database, is_postgres, utcnow
from scheduler.subscription_health import check_calendly_subscription
from scheduler.sweeps import SWEEPS

log = logging.getLogger(__name__)

LEADER_LOCK_KEY = 0x73636864  # arbitrary: the advisory lock of the scheduler's leader


def _try_lead() -> bool:
    if not is_postgres():
        return True
    return bool(database.execute_sql("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK_KEY,)).fetchone()[0])


def _release_lead() -> None:
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK_KEY,))


def run_sweeps() -> dict[str, int]:
    """One run of every sweep, if this process is the leader. Returns what each sweep handled."""
    with logs.bound(request_id=logs.new_request_id("sweep-")):
        return _run_sweeps()


def _run_sweeps() -> dict[str, int]:
    handled: dict[str, int] = {}
    database.connect(reuse_if_open=True)
    try:
        if not _try_lead():
            return handled
        try:
            now = utcnow()
            for sweep in SWEEPS:
                try:
                    handled[sweep.__name__] = sweep(now)
                except Exception:
                    # One failing sweep must not starve the others; it runs again next time.
                    log.exception("sweep %s failed", sweep.__name__)
        finally:
            _release_lead()
    finally:
        database.close()
    for name, count in handled.items():
        if count:
            log.info("sweep %s handled %d", name, count)
    return handled


def run_subscription_check() -> int:
    """Calendly's webhook subscription, asked about outside the leader's lock: two schedulers asking
    cost one API call more and raise one alert (it is keyed per incident), and the lock must not make
    this check skip whenever its clock meets the sweeps'."""
    with logs.bound(request_id=logs.new_request_id("sweep-")):
        database.connect(reuse_if_open=True)
        try:
            return check_calendly_subscription(utcnow())
        except Exception:
            log.exception("sweep check_calendly_subscription failed")
            return 0
        finally:
            database.close()


def _add_job(scheduler, interval_seconds: int) -> None:
    scheduler.add_job(
        run_sweeps, "interval", seconds=interval_seconds, id="sweeps",
        max_instances=1, coalesce=True, next_run_time=utcnow(),
    )
    # On its own, slower clock; the first look comes one interval after start.
    scheduler.add_job(
        run_subscription_check, "interval", seconds=settings_module.get().calendly_subscription_check_seconds,
        id="calendly_subscription", max_instances=1, coalesce=True,
    )


def run_forever(interval_seconds: int) -> None:
    """The Procfile's scheduler: blocks until SIGTERM or SIGINT, then stops cleanly."""
    scheduler = BlockingScheduler(timezone="UTC")
    _add_job(scheduler, interval_seconds)

    def stop(signum, frame):
        log.info("scheduler stopping on signal %s", signum)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("scheduler started: sweeps every %ss", interval_seconds)
    scheduler.start()


def start_in_background(interval_seconds: int) -> BackgroundScheduler:
    """For `bookingflow dev`: the same sweeps on a thread."""
    scheduler = BackgroundScheduler(timezone="UTC")
    _add_job(scheduler, interval_seconds)
    scheduler.start()
    return scheduler
