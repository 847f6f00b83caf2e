"""The console's commands, called by `bookingflow console ...` (ops/cli.py): add an operator, serve."""

from __future__ import annotations

import getpass
import sys

from bookingflow import settings as settings_module
from bookingflow.settings import SettingsError
from models import bootstrap

CONSOLE_SCHEMA = 11  # the migration that made the console's tables


def add_user(name: str, password_stdin: bool, replace: bool) -> int:
    """Ask for the password twice (or read one line from stdin, for scripts), store only its hash."""
    from console.passwords import AccountRefused
    from console.passwords import add_user as store

    from models import migrations

    bootstrap.open_existing_database(bootstrap.plain_settings())  # or one line: no file, no schema, unreachable
    if migrations.current_version() < CONSOLE_SCHEMA:
        bootstrap.fail(f"the database is at schema version {migrations.current_version()}, without the console's "
                       f"tables: run bookingflow db upgrade first")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            bootstrap.fail("the two passwords differ; nothing was changed")
    try:
        user = store(name, password, replace=replace)
    except AccountRefused as exc:
        bootstrap.fail(f"{exc}; nothing was changed")
    print(f"console user {user.name} saved: sign in at the console "
          f"(bookingflow console, port {settings_module.get().console_port})")
    return 0


def serve() -> int:
    bootstrap.configure_logging()
    try:
        current = settings_module.require_console(bootstrap.checked(settings_module.get()))
    except SettingsError as exc:
        bootstrap.fail(str(exc))
    from console.serve import serve as run

    return run(current)
