"""`bookingflow ...` as operators run it: a real process, on a database named by URL."""

from __future__ import annotations

from support.realstack import base_environment, run_cli
from support.suite import SUITE_SETTINGS


def cli_on(database_url: str, *args: str):
    """The CLI on `database_url` (a migration test's own database), failing the test if it fails."""
    return run_cli({**base_environment(), "DATABASE_URL": database_url}, *args)


def suite_cli(*args: str, keys: tuple[str, ...] = (), check: bool = True):
    """The CLI on the suite's database, with DATA_ENCRYPTION_KEY = keys."""
    env = {**base_environment(), "DATABASE_URL": SUITE_SETTINGS.database_url}
    if keys:
        env["DATA_ENCRYPTION_KEY"] = ",".join(keys)
    return run_cli(env, *args, check=check)
