"""`bookingflow session-types sync`: session types filled from Calendly's event types, through the CLI."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest

from support.suite import CALENDLY_TOKEN
from support.realstack import base_environment, run_cli


@pytest.fixture
def cli_env(sandbox, tmp_path):
    env = {**base_environment(), "DATABASE_URL": f"sqlite:///{tmp_path}/sync.db",
           "CALENDLY_API_TOKEN": CALENDLY_TOKEN, "CALENDLY_API_BASE": sandbox.base + "/calendly"}
    run_cli(env, "db", "upgrade")
    return env


def rows(env) -> dict[str, dict]:
    with closing(sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///"))) as connection:
        connection.row_factory = sqlite3.Row
        return {r["calendly_event_type"]: dict(r) for r in connection.execute("SELECT * FROM session_type")}


def test_sync_fills_names_durations_and_links_and_keeps_the_operators_prices(sandbox, cli_env, tmp_path):
    coaching = sandbox.calendly.add_event_type("sync-coaching", "Coaching (Calendly name)", 45)
    intro = sandbox.calendly.add_event_type("sync-intro", "Intro", 15)
    catalogue = tmp_path / "types.json"
    catalogue.write_text(json.dumps([{
        "slug": "coaching", "name": "Old name", "duration_minutes": 60, "price": 9900, "currency": "eur",
        "calendly_event_type": coaching["uri"], "scheduling_url": "https://calendly.com/old",
        "refund_policy": {"full_before_hours": 24}}]))
    run_cli(cli_env, "session-types", "import", str(catalogue))

    out = run_cli(cli_env, "session-types", "sync").stdout
    assert "1 created" in out and "1 updated" in out

    synced = rows(cli_env)
    kept = synced[coaching["uri"]]
    assert (kept["name"], kept["duration_minutes"], kept["scheduling_url"]) == (
        "Coaching (Calendly name)", 45, coaching["scheduling_url"])
    assert (kept["price"], kept["currency"], json.loads(kept["refund_policy"]), kept["active"]) == (
        9900, "eur", {"full_before_hours": 24}, 1)
    new = synced[intro["uri"]]
    assert (new["slug"], new["duration_minutes"], new["price"], new["active"]) == ("sync-intro", 15, 0, 0)

    again = run_cli(cli_env, "session-types", "sync").stdout
    assert "0 created" in again and len(rows(cli_env)) == len(synced)  # never duplicates


def test_an_event_type_deactivated_in_calendly_is_switched_off(sandbox, cli_env, tmp_path):
    retired = sandbox.calendly.add_event_type("sync-retired", "Retired", 30)
    catalogue = tmp_path / "types.json"
    catalogue.write_text(json.dumps([{
        "slug": "retired", "name": "Retired", "duration_minutes": 30, "price": 100, "currency": "usd",
        "calendly_event_type": retired["uri"], "scheduling_url": retired["scheduling_url"]}]))
    run_cli(cli_env, "session-types", "import", str(catalogue))
    sandbox.calendly.add_event_type("sync-retired", "Retired", 30, active=False)
    assert "1 switched off" in run_cli(cli_env, "session-types", "sync").stdout
    assert rows(cli_env)[retired["uri"]]["active"] == 0


def test_sync_without_a_calendly_token_says_so(cli_env):
    env = {k: v for k, v in cli_env.items() if k != "CALENDLY_API_TOKEN"}
    result = run_cli(env, "session-types", "sync", check=False)
    assert result.returncode == 2 and result.stderr.strip() == "bookingflow: CALENDLY_API_TOKEN is not set"
