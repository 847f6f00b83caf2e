"""A status poll whose ETag still matches is answered by gunicorn's worker from the versions PostgreSQL
tells it as they commit, without reading the database; and it never keeps answering 304 once the
booking has changed, whoever changed it and whether or not the notification reached the web."""

from __future__ import annotations

import psycopg2
import pytest
import requests

from support.flows import Client
from support.realstack import running_service
from support.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # One web worker, so that every poll reaches the process whose versions the test warmed.
    with running_service(tmp_path_factory.mktemp("poll-versions"), extra_env={"WEB_CONCURRENCY": "1"}) as running:
        yield running


def sql(stack, statement: str, params=()):
    """One statement, committed, on a connection of its own (closed after: psycopg2's `with` only commits)."""
    connection = psycopg2.connect(stack.env["DATABASE_URL"])
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else None
    finally:
        connection.close()


def poll(stack, booking_id: str, etag: str, timeout: float = 15) -> requests.Response:
    return requests.get(f"{stack.base}/v1/bookings/{booking_id}", headers={"If-None-Match": etag}, timeout=timeout)


def new_booking(stack) -> tuple[str, str]:
    booking = Client(stack.base, stack.sandbox).create_booking("strategy-session")
    response = requests.get(f"{stack.base}/v1/bookings/{booking['id']}", timeout=15)
    return booking["id"], response.headers["ETag"]


def answered_while_the_bookings_are_locked(stack, booking_id: str, etag: str) -> None:
    """Polls answered 304 while no one can read the booking table: they did not read it."""
    locker = psycopg2.connect(stack.env["DATABASE_URL"])
    try:
        locker.cursor().execute("LOCK TABLE booking IN ACCESS EXCLUSIVE MODE")
        for _ in range(5):
            # A poll that read the table would wait for the lock: its 5 s timeout ends the test.
            response = poll(stack, booking_id, etag, timeout=5)
            assert response.status_code == 304 and response.headers["ETag"] == etag
    finally:
        locker.rollback()
        locker.close()


def changed_version(stack, booking_id: str, etag: str) -> str:
    """Polls with the old ETag until the body comes (a few milliseconds, on a quiet machine); its new
    ETag."""
    fresh = wait_until(lambda: (lambda r: r if r.status_code == 200 else None)(poll(stack, booking_id, etag)),
                       timeout=20, message="a poll with the old ETag to be answered with the new body")
    assert fresh.headers["ETag"] != etag and fresh.json()["id"] == booking_id
    return fresh.headers["ETag"]


def logged_since(stack, start: int) -> str:
    """The stack's log from character `start` on."""
    stack.log()  # flushes it
    return stack.log_path.read_text()[start:]


def listener_pids(stack) -> set[int]:
    rows = sql(stack, "SELECT pid FROM pg_stat_activity WHERE application_name = 'bookingflow web versions' "
                      "AND datname = current_database()")
    return {pid for (pid,) in rows}


def listening_workers(stack) -> float:
    """What /metrics says of the web workers listening for versions."""
    text = requests.get(f"{stack.base}/metrics", timeout=15,
                        headers={"Authorization": f"Bearer {stack.env['METRICS_TOKEN']}"}).text
    lines = [line for line in text.splitlines() if line.startswith("bookingflow_web_versions_listening ")]
    assert len(lines) == 1, text[-2000:]
    return float(lines[0].split()[1])


def test_a_matching_poll_is_answered_without_reading_the_database(stack):
    wait_until(lambda: listening_workers(stack) == 1, timeout=30, message="/metrics to show the worker listening")
    booking_id, etag = new_booking(stack)
    assert poll(stack, booking_id, etag).status_code == 304
    answered_while_the_bookings_are_locked(stack, booking_id, etag)


@pytest.mark.abuse
def test_an_etag_a_client_makes_up_is_never_taken_for_the_version(stack):
    """Only what the database said enters what the web knows: a made-up ETag, a newer one included, is
    answered with the body, and the real one is still answered 304 without a read."""
    booking_id, etag = new_booking(stack)
    assert poll(stack, booking_id, etag).status_code == 304
    for forged in ('"v999999"', '"v0"', '"' + booking_id + '"'):
        response = poll(stack, booking_id, forged)
        assert response.status_code == 200 and response.headers["ETag"] == etag, forged
    answered_while_the_bookings_are_locked(stack, booking_id, etag)


def test_a_version_an_operator_commits_in_sql_reaches_the_next_polls(stack):
    booking_id, etag = new_booking(stack)
    assert poll(stack, booking_id, etag).status_code == 304
    sql(stack, "UPDATE booking SET version = version + 1 WHERE id = %s", (booking_id,))
    new_etag = changed_version(stack, booking_id, etag)
    assert poll(stack, booking_id, new_etag).status_code == 304


def test_a_poll_never_answers_from_versions_kept_across_a_lost_listening_connection(stack):
    booking_id, etag = new_booking(stack)
    assert poll(stack, booking_id, etag).status_code == 304
    first = wait_until(lambda: listener_pids(stack), timeout=30, message="the web's listening connection")
    cut = len(logged_since(stack, 0))
    sql(stack, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY(%s)", (list(first),))
    # Committed while the web may not be listening: its notification can be lost, so what the web
    # knew from before must not answer.
    sql(stack, "UPDATE booking SET version = version + 1 WHERE id = %s", (booking_id,))
    etag = changed_version(stack, booking_id, etag)
    # The line comes once the new connection listens and the worker answers from it again.
    wait_until(lambda: "listening for booking versions again" in logged_since(stack, cut), timeout=20,
               message="the web to listen again")
    assert "not listening for booking versions" in logged_since(stack, cut)
    assert poll(stack, booking_id, etag).status_code == 304
    answered_while_the_bookings_are_locked(stack, booking_id, etag)
    sql(stack, "UPDATE booking SET version = version + 1 WHERE id = %s", (booking_id,))
    changed_version(stack, booking_id, etag)


def test_without_the_trigger_that_notifies_every_poll_reads_the_database(stack):
    """A trigger switched off while the web listens (or a schema downgraded below version 12) tells the
    web nothing more, and its connection stays up: the web finds out when it has heard nothing for
    CHECK_SECONDS (15 s) and asks, and from then on answers no poll from what it knew."""
    booking_id, etag = new_booking(stack)
    assert poll(stack, booking_id, etag).status_code == 304
    start = len(logged_since(stack, 0))
    sql(stack, "ALTER TABLE booking DISABLE TRIGGER booking_version_notify")
    try:
        wait_until(lambda: "no trigger notifies the bookings' versions" in logged_since(stack, start), timeout=40,
                   interval=0.2, message="the web to find the trigger off")
        refused = len(logged_since(stack, 0))
        assert listening_workers(stack) == 0
        sql(stack, "UPDATE booking SET version = version + 1 WHERE id = %s", (booking_id,))
        response = poll(stack, booking_id, etag)
        assert response.status_code == 200 and response.headers["ETag"] != etag
        etag = response.headers["ETag"]
    finally:
        sql(stack, "ALTER TABLE booking ENABLE TRIGGER booking_version_notify")
    wait_until(lambda: "listening for booking versions again" in logged_since(stack, refused), timeout=60,
               message="the web to listen again once the trigger is back")
    assert poll(stack, booking_id, etag).status_code == 304
    answered_while_the_bookings_are_locked(stack, booking_id, etag)


def test_a_version_changed_without_a_notification_is_read_again_within_the_trust_bound(stack):
    """Notifications can stop without the listener knowing (a pooler that drops NOTIFY, a session that
    writes with triggers off): what the web was told is trusted for TRUST_SECONDS (30 s) at most, then
    the next poll reads the version again."""
    booking_id, etag = new_booking(stack)
    assert poll(stack, booking_id, etag).status_code == 304
    # A replica session does not fire the trigger: the version changes and nobody is told.
    sql(stack, "SET LOCAL session_replication_role = replica; "
               "UPDATE booking SET version = version + 1 WHERE id = %s", (booking_id,))
    # Answered from what the web knew: the write was silent indeed.
    assert poll(stack, booking_id, etag).status_code == 304
    fresh = wait_until(lambda: (lambda r: r if r.status_code == 200 else None)(poll(stack, booking_id, etag)),
                       timeout=60, interval=0.5, message="the version read again once its trust ran out")
    assert fresh.headers["ETag"] != etag
    assert poll(stack, booking_id, fresh.headers["ETag"]).status_code == 304
