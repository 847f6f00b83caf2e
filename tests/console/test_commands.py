"""`bookingflow console add-user NAME` and `bookingflow console` as operators run them: real processes."""

from __future__ import annotations

import secrets

import requests

from models.tables import ConsoleUser
from support.cli import cli_on
from support.realstack import base_environment, free_port, run_cli, start_procfile_process, stop_group
from support.suite import SUITE_SETTINGS
from support.waiting import wait_until

PASSWORD = "a long enough passphrase"


def add_user(database_url: str, *args: str, password: str = PASSWORD, check: bool = True):
    env = {**base_environment(), "DATABASE_URL": database_url}
    return run_cli(env, "console", "add-user", *args, "--password-stdin", stdin=password + "\n", check=check)


def test_add_user_stores_the_password_as_a_hash_only_and_never_prints_it(app):
    result = add_user(SUITE_SETTINGS.database_url, "grace")
    assert "console user grace saved" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    stored = ConsoleUser.get(ConsoleUser.name == "grace").password_hash
    assert stored.startswith("scrypt:") and PASSWORD not in stored


def test_the_added_user_signs_in_to_the_console(app, console_app):
    from support.console import Operator

    add_user(SUITE_SETTINGS.database_url, "grace")
    browser = Operator(console_app.test_client(), console_app)
    assert browser.sign_in("grace", PASSWORD).status_code == 302
    assert browser.get("/bookings").status_code == 200


def test_add_user_refuses_a_short_password_an_existing_name_and_a_database_without_the_schema(app, tmp_path):
    short = add_user(SUITE_SETTINGS.database_url, "grace", password="short", check=False)
    assert short.returncode == 2 and "at least 12 characters" in short.stderr and "short" not in short.stdout
    add_user(SUITE_SETTINGS.database_url, "grace")
    again = add_user(SUITE_SETTINGS.database_url, "grace", check=False)
    assert again.returncode == 2 and "--replace" in again.stderr
    assert add_user(SUITE_SETTINGS.database_url, "grace", "--replace", password="another long passphrase").returncode == 0
    empty = add_user(f"sqlite:///{tmp_path}/empty.db", "grace", check=False)
    assert empty.returncode == 2 and "bookingflow db upgrade" in empty.stderr


def test_the_procfiles_console_serves_the_sign_in_page_on_console_port(tmp_path):
    database_url = f"sqlite:///{tmp_path}/console.db"
    cli_on(database_url, "db", "upgrade")
    port = free_port()
    env = {**base_environment(), "DATABASE_URL": database_url, "BROKER_URL": "stub://", "CONSOLE_PORT": str(port),
           "CONSOLE_SECRET_KEY": secrets.token_urlsafe(32)}
    process = start_procfile_process("console", env, tmp_path / "console.log")
    try:
        def answers():
            try:
                return requests.get(f"http://127.0.0.1:{port}/sign-in", timeout=2)
            except requests.RequestException:  # not listening yet, or too busy starting to answer
                return None
        page = wait_until(answers, timeout=30, interval=0.2, message="the console to listen")
        assert page.status_code == 200 and "Sign in" in page.text
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        assert requests.get(f"http://127.0.0.1:{port}/bookings", allow_redirects=False, timeout=5).status_code == 302
    finally:
        stop_group(process)


def test_the_console_refuses_to_start_without_its_key_in_one_line(tmp_path):
    env = {**base_environment(), "DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "BROKER_URL": "stub://"}
    result = run_cli(env, "console", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "CONSOLE_SECRET_KEY" in result.stderr
