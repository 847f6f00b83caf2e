"""The database handle: one proxy, bound late from DATABASE_URL."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import peewee
from playhouse.db_url import connect as connect_url

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


def open_database(url: str) -> peewee.Database:
    """Build the database for `url` and bind the proxy to it.

    PostgreSQL is pooled (one pool per process, connections returned on close); SQLite runs in WAL
    mode with a busy timeout so the web, worker and scheduler threads of `bookingflow dev` can share it.
    """
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        pooled = urlunsplit(parts._replace(scheme="postgresql+pool"))
        db = connect_url(pooled, max_connections=32, stale_timeout=300, timeout=10)
    elif parts.scheme == "sqlite":
        db = connect_url(
            url,
            pragmas={"journal_mode": "wal", "busy_timeout": 10000, "foreign_keys": 1, "synchronous": "normal"},
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


@contextmanager
def connection():
    """Open a connection for one unit of work (a request, a message, a sweep step) and close it after."""
    opened = database.connect(reuse_if_open=True)
    try:
        yield database
    finally:
        if opened and not database.in_transaction():
            database.close()
