"""The database handle: one proxy, bound late from DATABASE_URL."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import peewee
from playhouse.db_url import connect as connect_url
from playhouse.db_url import parse as parse_url
from playhouse.pool import PooledPostgresqlDatabase

database = peewee.DatabaseProxy()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTimeField(peewee.DateTimeField):
    """Stores naive UTC, hands back UTC-aware datetimes on every database alike."""

    def db_value(self, value):
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                raise ValueError(f"{self.name}: naive datetime refused; pass a UTC-aware one")
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value):
        value = super().python_value(value)
        if isinstance(value, dt.datetime):
            value = value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
        return value


def storable(text: str) -> bool:
    """Text every database here can store and compare: no NUL (PostgreSQL refuses it) and no lone
    surrogate (not encodable as UTF-8), both of which JSON can smuggle in as escapes."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class PostgresqlPool(PooledPostgresqlDatabase):
    """peewee's PostgreSQL pool, without a round trip for a connection that was in use a moment ago.

    peewee checks every pooled connection on checkout with `SELECT 1`, under the pool's lock: under
    load that was a fifth of the web workers' time (BENCHMARKS.md). A connection returned to the pool
    within ALIVE_WINDOW seconds, idle (no transaction left open) and not closed on our side, is handed
    out as it is, as HikariCP does within its `aliveBypassWindowMs`; one idle for longer is checked
    as before, so a connection the server dropped while the service was quiet is still found out."""

    ALIVE_WINDOW = 1.0

    def __init__(self, *args, **kwargs):
        self._returned_at: dict[int, float] = {}
        super().__init__(*args, **kwargs)

    def _is_closed(self, conn) -> bool:
        returned = self._returned_at.pop(self.conn_key(conn), None)
        if (returned is not None and time.monotonic() - returned < self.ALIVE_WINDOW and not conn.closed
                and self._adapter.txn_status(conn) == self._adapter.txn_idle):
            return False
        return super()._is_closed(conn)

    def close_all(self):
        with self._pool_lock:
            self._returned_at.clear()
        return super().close_all()

    def _can_reuse(self, conn) -> bool:
        reusable = super()._can_reuse(conn)
        if reusable:  # called under the pool's lock, as the connection goes back
            self._returned_at[self.conn_key(conn)] = time.monotonic()
        return reusable


def postgres_params(url: str, role: str | None = None) -> dict:
    """psycopg2's connection parameters for a PostgreSQL URL, carrying `role` as the application_name
    ("bookingflow web", ...) unless the URL names one."""
    params = parse_url(url)
    if not params.get("database"):
        # Two slashes instead of three, say: without a name the server's default database is used.
        raise ValueError("the PostgreSQL URL has no database name (postgresql://user@host:5432/dbname)")
    if role and "application_name" not in params:
        params["application_name"] = f"bookingflow {role}"
    return params


def open_database(url: str, role: str | None = None) -> peewee.Database:
    """Build the database for `url` and bind the proxy to it.

    PostgreSQL is pooled (one pool per process, connections returned on close); SQLite runs in WAL
    mode with a busy timeout so the web, worker and scheduler threads of `bookingflow dev` can share it.
    On PostgreSQL the connections carry the process's `role` as their application_name ("bookingflow
    web", "bookingflow worker"), so pg_stat_activity says which process holds which connection.
    """
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        db = PostgresqlPool(**postgres_params(url, role), max_connections=32, stale_timeout=300, timeout=10)
    elif parts.scheme == "sqlite":
        db = connect_url(
            url,
            pragmas={"journal_mode": "wal", "busy_timeout": 10000, "foreign_keys": 1, "synchronous": "normal"},
            # RETURNING (SQLite 3.35 on): a transition hands back the booking it wrote without a second
            # read, as on PostgreSQL (models/states.py).
            returning_clause=sqlite3.sqlite_version_info >= (3, 35, 0),
        )
    else:
        raise ValueError(f"unsupported database URL scheme {parts.scheme!r}")
    database.initialize(db)
    return db


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)


def is_postgres() -> bool:
    return isinstance(database.obj, peewee.PostgresqlDatabase)


def write_transaction():
    """A transaction that takes the write lock up front.

    On SQLite a deferred transaction that reads and then writes can fail with "database is locked"
    without waiting; IMMEDIATE makes it queue behind the busy timeout instead.
    """
    if is_sqlite():
        return database.atomic("IMMEDIATE")
    return database.atomic()


def read_snapshot():
    """A transaction whose reads all see one committed state, for a view built from several queries.

    PostgreSQL's default isolation, READ COMMITTED, reads afresh at every statement, so a write
    committed between two of them would show in one and not the other; REPEATABLE READ keeps the
    transaction's first snapshot. SQLite in WAL mode keeps a deferred transaction's snapshot from its
    first read on.
    """
    if is_postgres():
        return database.atomic("REPEATABLE READ")  # BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ
    return database.atomic()


@contextmanager
def connection():
    """Open a connection for one unit of work (a request, a message, a sweep step) and close it after."""
    opened = database.connect(reuse_if_open=True)
    try:
        yield database
    finally:
        if opened and not database.in_transaction():
            database.close()
