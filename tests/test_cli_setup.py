"""What the operator commands need, and how they stop without it: run as real processes from a folder
of their own, with only the environment the test gives.

Commands over the database need DATABASE_URL alone (by default the `bookingflow.db` of the folder they
run in, as `bookingflow dev` does); `retry` and `replay` send to the workers when BROKER_URL is set and
otherwise leave the work to the scheduler's next sweep; a missing file, a database without schema or
one that cannot be reached is one line saying what to do, and creates nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from support.realstack import procfile_command

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("bookingflow")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "ops.cli"]
# Nothing listens on port 1: a PostgreSQL server that cannot be reached, and its password.
UNREACHABLE = "postgresql://bookingflow:s3cret-pw@127.0.0.1:1/bookingflow"
SERVICE = {"BROKER_URL": "stub://", "STRIPE_SECRET_KEY": "sk_test_x", "STRIPE_WEBHOOK_SECRET": "whsec_x",
           "CALENDLY_API_TOKEN": "token", "CALENDLY_WEBHOOK_SIGNING_KEY": "key", "PUBLIC_URL": "http://127.0.0.1:5000"}

# Every operator command that reads or writes the database alone.
DATABASE_COMMANDS = [
    ("bookings", "list"), ("bookings", "show", "bk_1"), ("bookings", "retry", "bk_1"),
    ("bookings", "force", "bk_1", "IDLE", "--reason", "test"), ("events", "list"), ("events", "replay", "--failed"),
    ("stats",), ("flags", "list"), ("session-types", "enable", "intro"), ("session-types", "list"),
    ("outbox", "list"), ("outbox", "show", "1"), ("console", "add-user", "ada", "--password-stdin"),
]


def _environment(**variables: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return {**env, "PYTHONPATH": str(ROOT), **variables}


def run(folder: Path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], cwd=folder, env=_environment(**variables), capture_output=True,
                          text=True, timeout=60)


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
def test_a_command_run_where_there_is_no_database_says_what_to_run_and_creates_none(tmp_path, command):
    line = one_line(run(tmp_path, *command))

    assert f"no database at {tmp_path / 'bookingflow.db'}" in line
    assert "bookingflow db upgrade" in line and "bookingflow dev" in line
    assert list(tmp_path.iterdir()) == []


def test_a_database_file_without_the_schema_is_named_with_what_to_run(tmp_path):
    (tmp_path / "bookingflow.db").touch()  # what earlier releases left behind

    line = one_line(run(tmp_path, "bookings", "list"))

    assert "has no schema" in line and "bookingflow db upgrade" in line


@pytest.mark.parametrize("command", [*DATABASE_COMMANDS, ("db", "upgrade"), ("db", "downgrade", "--to", "0"), ("dev",)],
                         ids=" ".join)
def test_an_unreachable_database_is_one_line_without_its_password(tmp_path, command):
    line = one_line(run(tmp_path, *command, DATABASE_URL=UNREACHABLE))

    assert "cannot reach the database at postgresql://bookingflow:***@127.0.0.1:1/bookingflow" in line
    assert "s3cret-pw" not in line


def test_the_scheduler_stops_with_one_line_when_its_database_is_unreachable(tmp_path):
    line = one_line(run(tmp_path, "scheduler", DATABASE_URL=UNREACHABLE, **SERVICE))

    assert "cannot reach the database" in line


def test_the_scheduler_names_every_setting_it_misses_in_one_line(tmp_path):
    line = one_line(run(tmp_path, "scheduler", STRIPE_SECRET_KEY="sk_test_x"))

    for variable in ("BROKER_URL", "STRIPE_WEBHOOK_SECRET", "CALENDLY_API_TOKEN", "CALENDLY_WEBHOOK_SIGNING_KEY",
                     "PUBLIC_URL"):
        assert variable in line.split(" not set")[0]
    assert "STRIPE_SECRET_KEY" not in line.split(" not set")[0]


def test_the_worker_stops_at_its_start_with_one_line_when_its_database_is_unreachable(tmp_path):
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])
    # A broker nobody listens on either: the database is checked first, before the broker is used.
    env = _environment(**{**SERVICE, "BROKER_URL": "redis://127.0.0.1:1/0"}, DATABASE_URL=UNREACHABLE, PATH=path,
                       TMPDIR=str(tmp_path))
    result = subprocess.run(["sh", "-c", procfile_command("worker")], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)

    ours = [line for line in result.stderr.splitlines() if line.startswith("bookingflow:")]
    assert ours == ["bookingflow: cannot reach the database at postgresql://bookingflow:***@127.0.0.1:1/bookingflow: "
                    "connection to server at \"127.0.0.1\", port 1 failed: Connection refused"]
    assert "Traceback" not in result.stderr


def test_reconcile_report_names_everything_it_needs_in_one_line(tmp_path):
    assert run(tmp_path, "db", "upgrade").returncode == 0

    line = one_line(run(tmp_path, "reconcile", "report", STRIPE_SECRET_KEY="sk_test_x"))

    assert line.startswith("bookingflow: BROKER_URL (or REDIS_URL") and "CALENDLY_API_TOKEN are not set" in line
    assert "reconcile report needs them (and STRIPE_SECRET_KEY)" in line


# --- beside a running `bookingflow dev`: DATABASE_URL alone ----------------------------------------

def _insert(connection: sqlite3.Connection, table: str, **values) -> None:
    """A row as the models write it; NOT NULL integer columns left out (counters, whose default lives in
    the model) get 0."""
    for _, column, kind, not_null, default, primary_key in connection.execute(f'PRAGMA table_info("{table}")'):
        if not_null and default is None and not primary_key and kind == "INTEGER":
            values.setdefault(column, 0)
    connection.execute(f'INSERT INTO "{table}" ({", ".join(values)}) VALUES ({", ".join("?" for _ in values)})',
                       tuple(values.values()))


@pytest.fixture
def dev_folder(tmp_path) -> Path:
    """A folder whose bookingflow.db holds a flagged booking and a failed delivery, as `dev` leaves them."""
    assert run(tmp_path, "db", "upgrade").returncode == 0
    (tmp_path / "types.json").write_text(json.dumps([{
        "slug": "intro", "name": "Intro", "duration_minutes": 30, "price": 5000, "currency": "eur",
        "calendly_event_type": "https://api.calendly.com/event_types/intro",
        "scheduling_url": "https://calendly.com/acme/intro"}]))
    assert run(tmp_path, "session-types", "import", "types.json").returncode == 0
    at = "2024-05-01 10:00:00"
    with closing(sqlite3.connect(tmp_path / "bookingflow.db")) as connection, connection:
        _insert(connection, "booking", id="bk_1", session_type_id=1, state="ERROR_RECOVERY", version=1,
                email="ada@example.com", name="Ada", amount=5000, currency="eur", recovery_attempts=3,
                state_changed_at=at, created_at=at, updated_at=at, flagged_at=at,
                flag_reason="gave up after 3 attempts")
        _insert(connection, "provider_event", provider="stripe", event_id="evt_1", type="checkout.session.completed",
                received_at=at, processed_at=at, outcome="conflict", attempts=20, payload="{}")
    return tmp_path


def _row(folder: Path, sql: str) -> tuple:
    with closing(sqlite3.connect(folder / "bookingflow.db")) as connection:
        return connection.execute(sql).fetchone()


def test_retry_without_a_broker_makes_the_booking_due_for_the_schedulers_next_sweep(dev_folder):
    result = run(dev_folder, "bookings", "retry", "bk_1")

    assert result.returncode == 0, result.stderr
    assert "due now" in result.stdout and "scheduler's next sweep" in result.stdout
    flagged_at, next_check_at = _row(dev_folder, "SELECT flagged_at, next_check_at FROM booking WHERE id = 'bk_1'")
    assert flagged_at is None and next_check_at is not None


def test_replay_without_a_broker_reopens_the_event_for_the_schedulers_next_sweep(dev_folder):
    result = run(dev_folder, "events", "replay", "evt_1")

    assert result.returncode == 0, result.stderr
    assert "reopened 1/1: stripe checkout.session.completed evt_1" in result.stdout
    # Unprocessed, and its attempts forgotten: the sweep queues it again even after it had given up.
    assert _row(dev_folder, "SELECT processed_at, outcome, attempts FROM provider_event") == (None, None, 0)


def test_every_read_command_runs_on_the_database_alone(dev_folder):
    for command in (("bookings", "list"), ("bookings", "show", "bk_1"), ("events", "list"), ("stats",),
                    ("flags", "list"), ("session-types", "list"), ("outbox", "list")):
        result = run(dev_folder, *command)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
