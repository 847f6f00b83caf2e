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


def catalog_env(tmp_path) -> dict:
    """The CLI's environment on a fresh SQLite database of the test's own, its schema upgraded."""
    env = {**base_environment(), "DATABASE_URL": f"sqlite:///{tmp_path}/catalog.db"}
    run_cli(env, "db", "upgrade")
    return env


def import_session_types(env: dict, tmp_path, *items: dict, **defaults):
    """`bookingflow session-types import` of `items` (each completed with a name, a duration, Calendly
    links and `defaults`), not failing the test when the import is refused."""
    import json

    path = tmp_path / "types.json"
    path.write_text(json.dumps([{"name": item["slug"], "duration_minutes": 30,
                                 "calendly_event_type": f"https://api.calendly.com/event_types/{item['slug']}",
                                 "scheduling_url": f"https://calendly.com/x/{item['slug']}", **defaults, **item}
                                for item in items]))
    return run_cli(env, "session-types", "import", str(path), check=False)
