"""The PostgreSQL pool (models/db.py): a connection that was in use a moment ago is handed out again
without a round trip; one that sat idle longer is checked first, so a connection the server dropped
while the service was quiet is replaced, not handed to a request."""

from __future__ import annotations

import psycopg2
import pytest

from models.db import PostgresqlPool
from support import suite
from support.services import postgres_problem, require_service


@pytest.fixture
def scratch_url():
    from support.realstack import POSTGRES_URL, ScratchDatabase

    require_service("PostgreSQL", postgres_problem(suite.TEST_DATABASE_URL or POSTGRES_URL))
    scratch = ScratchDatabase(suite.TEST_DATABASE_URL or POSTGRES_URL)
    yield scratch.url, scratch.admin_url
    scratch.drop()


class RecordingCursor(psycopg2.extensions.cursor):
    """Every statement sent on the connection's cursors, peewee's own checks included."""

    sent: list[str] = []

    def execute(self, query, vars=None):
        RecordingCursor.sent.append(query if isinstance(query, str) else query.decode())
        return super().execute(query, vars)


def pool_on(url: str) -> PostgresqlPool:
    from playhouse.db_url import parse

    RecordingCursor.sent = []
    return PostgresqlPool(**parse(url), application_name="bookingflow test", max_connections=4,
                          cursor_factory=RecordingCursor)


def backend_of(pool: PostgresqlPool) -> int:
    return pool.execute_sql("SELECT pg_backend_pid()").fetchone()[0]


def terminate(admin_url: str, pid: int) -> None:
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    try:
        connection.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        connection.close()


def test_a_connection_returned_a_moment_ago_is_the_one_handed_out_again(scratch_url):
    url, _ = scratch_url
    pool = pool_on(url)
    pool.connect()
    first = backend_of(pool)
    pool.close()
    pool.connect()
    assert backend_of(pool) == first
    assert "SELECT 1" not in RecordingCursor.sent  # handed out again without peewee's check
    assert pool.execute_sql("SELECT current_setting('application_name')").fetchone()[0] == "bookingflow test"
    pool.close()
    pool.close_all()


def test_a_connection_dropped_by_the_server_while_idle_is_replaced_on_checkout(scratch_url, monkeypatch):
    url, admin_url = scratch_url
    pool = pool_on(url)
    pool.connect()
    dropped = backend_of(pool)
    pool.close()
    terminate(admin_url, dropped)
    # As if it had sat in the pool for longer than the window: it is checked, found dead, replaced.
    monkeypatch.setattr(PostgresqlPool, "ALIVE_WINDOW", 0.0)
    pool.connect()
    assert backend_of(pool) != dropped
    assert "SELECT 1" in RecordingCursor.sent  # checked, found dead, replaced
    pool.close()
    pool.close_all()


def test_a_postgresql_url_without_a_database_name_is_refused_not_taken_for_the_default_database():
    from models.db import open_database

    with pytest.raises(ValueError, match="no database name"):
        open_database("postgresql://postgres@127.0.0.1:5432/")
