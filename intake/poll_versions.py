"""Each booking's version as this web process was last told it, so that a status poll whose ETag still
matches is answered 304 without a round trip to PostgreSQL.

A status poll with a matching ETag was one indexed read, and that read (the round trip, the pool
checkout) was two thirds of the poll's CPU (BENCHMARKS.md, item 4). PostgreSQL now tells every
listener a booking's new version as the transaction that wrote it commits (migration 12's trigger, on
the channel `booking_version`); a greenlet of each web worker listens and keeps what it is told.

What a poll answered from here may miss is a version committed so recently that its notification has
not reached this process yet: a few milliseconds, the same as if the poll had come in that much
earlier. Everything else keeps the view exact:
- a version is known only while the listener is connected, and forgotten when it is not: what was
  committed while nobody listened is never answered from here;
- what the process reads from the database is kept only if nothing was forgotten meanwhile, and
  never replaces a newer version (versions only grow);
- a version is trusted for TRUST_SECONDS at most, then read again: the bound on how stale an answer
  can be should notifications stop arriving unnoticed (a connection pooler that does not carry
  LISTEN, for instance);
- only a 304 is answered from here: a body is always read from the database.

The listener also checks that the trigger is there and on, when it connects and whenever it has
been quiet for a while: a database that tells nothing is never trusted.

Only gunicorn's workers listen (create_app asks bookingflow/gunicorn_conf.py to start it in each worker
once forked); anywhere else, and on SQLite, every poll reads the database.
"""

from __future__ import annotations

import itertools
import logging
import time

from bookingflow import metrics
from bookingflow import settings as settings_module
from models.db import is_postgres, postgres_params
from models.migrations import VERSION_CHANNEL

log = logging.getLogger("intake.poll_versions")

TRUST_SECONDS = 30.0
# Bookings being polled at once are a few thousand; a bound keeps a flood of ids from growing the
# process. Past it everything is forgotten, and the versions are read again as polls come.
MAX_BOOKINGS = 100_000
# How long the listener waits for a notification before it checks that its connection still answers.
CHECK_SECONDS = 15.0
CHECK_TIMEOUT_SECONDS = 5.0
RECONNECT_SECONDS = (0.5, 30.0)  # the first wait after a lost connection, and the longest


class KnownVersions:
    """What the listener was told and the polls read, valid for one unbroken listening connection
    (one `epoch`). Greenlets of one process share it; no method yields, so each runs whole."""

    def __init__(self):
        self._versions: dict[str, tuple[int, float]] = {}  # booking id -> (version, when confirmed)
        self._epochs = itertools.count(1)  # never the same twice: a read begun in one is never kept in another
        self.epoch: int | None = None  # None while nobody listens

    def version(self, booking_id: str) -> int | None:
        """The booking's version if it is known and recent enough to answer from, else None."""
        if self.epoch is None:
            return None
        known = self._versions.get(booking_id)
        if known is None or time.monotonic() - known[1] > TRUST_SECONDS:
            return None
        return known[0]

    def read(self, booking_id: str, version: int, epoch: int | None) -> None:
        """A version read from the database in `epoch` (the one current when the read began)."""
        if epoch is not None and epoch == self.epoch:
            self._keep(booking_id, version)

    def notified(self, payload: str) -> None:
        booking_id, _, version = payload.rpartition(" ")
        if booking_id and version.isdigit() and self.epoch is not None:
            self._keep(booking_id, int(version))

    def _keep(self, booking_id: str, version: int) -> None:
        known = self._versions.get(booking_id)
        if known is not None and known[0] > version:
            return  # a read that began before a newer commit's notification came
        if known is None and len(self._versions) >= MAX_BOOKINGS:
            self.start()
        self._versions[booking_id] = (version, time.monotonic())

    def start(self) -> None:
        """A new epoch (the listener connected): nothing from before is kept, reads begun before included."""
        self._versions.clear()
        self.epoch = next(self._epochs)
        metrics.VERSIONS_LISTENING.set(1)

    def stop(self) -> None:
        self._versions.clear()
        self.epoch = None
        metrics.VERSIONS_LISTENING.set(0)


KNOWN = KnownVersions()


def start_listening() -> None:
    """In a gevent worker, listen for the versions in a greenlet of its own (PostgreSQL only)."""
    if not is_postgres():
        return
    import gevent

    gevent.spawn(_listen_forever, settings_module.get().database_url)


def _connect(url: str):
    import psycopg2

    # The role names the connection in pg_stat_activity, unless the URL names it ("bookingflow web versions").
    return psycopg2.connect(**postgres_params(url, "web versions"))


def _listen_forever(url: str) -> None:
    import gevent

    wait, lost = RECONNECT_SECONDS[0], False
    while True:
        connection = None
        try:
            connection = _connect(url)
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f"LISTEN {VERSION_CHANNEL}")
            _check(connection)
            KNOWN.start()
            if lost:
                log.info("listening for booking versions again")
            wait = RECONNECT_SECONDS[0]
            _receive(connection)
        except Exception as exc:  # a lost connection, or one never made: polls read the database meanwhile
            lost = True
            log.warning("not listening for booking versions (%s: %s); status polls read the database "
                        "until it is back", type(exc).__name__, str(exc).strip()[:200])
        finally:
            KNOWN.stop()
            if connection is not None:
                connection.close()
        gevent.sleep(wait)
        wait = min(wait * 2, RECONNECT_SECONDS[1])


class NotNotified(Exception):
    """The database does not notify versions (its schema is older than version 12, or the trigger is off)."""


def _check(connection) -> None:
    """The connection answers, and the trigger that notifies is there and on: without it nothing would
    tell this process that a version changed."""
    import gevent

    with gevent.Timeout(CHECK_TIMEOUT_SECONDS, TimeoutError("the listening connection did not answer")):
        with connection.cursor() as cursor:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = %s AND tgrelid = 'booking'::regclass "
                           "AND tgenabled <> 'D')", (f"{VERSION_CHANNEL}_notify",))
            if not cursor.fetchone()[0]:
                raise NotNotified("no trigger notifies the bookings' versions: run `bookingflow db upgrade`")


def _receive(connection) -> None:
    """Keep what PostgreSQL tells, until the connection fails (which raises)."""
    import socket

    from gevent.socket import wait_read

    while True:
        try:
            wait_read(connection.fileno(), timeout=CHECK_SECONDS)
        except socket.timeout:
            # Quiet for a while: a connection silently gone (a host or a network that vanished) only
            # shows when asked something.
            _check(connection)
        connection.poll()
        while connection.notifies:
            KNOWN.notified(connection.notifies.pop(0).payload)
