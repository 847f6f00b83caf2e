"""What every process does first: settings, database, and a clear one-line stop when they are wrong."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import peewee

from bookingflow import logs
from bookingflow import settings as settings_module
from bookingflow.settings import Settings, SettingsError
from models.db import database, open_database
from models.states import State

fail = settings_module.stop  # one line on stderr, exit 2


def checked(settings: Settings) -> Settings:
    """What the settings module cannot check below the models: STATE_TIMEOUTS names real states."""
    unknown = sorted(set(settings.state_timeouts) - set(State.__members__))
    if unknown:
        raise SettingsError(f"STATE_TIMEOUTS names no state {unknown[0]}; states are {', '.join(State.__members__)}")
    return settings


def service_settings() -> Settings:
    """The settings of a serving process (web, worker, scheduler), or stop with one line."""
    try:
        return checked(settings_module.require_service(settings_module.get()))
    except SettingsError as exc:
        fail(str(exc))


def plain_settings() -> Settings:
    """The settings of a command that needs only the database."""
    try:
        return checked(settings_module.get())
    except SettingsError as exc:
        fail(str(exc))


def prepare_metrics(current: Settings) -> None:
    """prometheus_client's multiprocess mode writes one file per process into this directory: it must
    exist before the first metric is made (bookingflow.metrics)."""
    if current.prometheus_multiproc_dir:
        os.makedirs(current.prometheus_multiproc_dir, exist_ok=True)


def open_configured_database(current: Settings, role: str = "cli"):
    """Bind DATABASE_URL without connecting: the web answers 503 while it is unreachable. `role` names
    the process to PostgreSQL (its connections' application_name)."""
    return open_database(current.database_url, role)


def shown_url(url: str) -> str:
    """A database URL fit for a message: its password left out."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL (relative to the folder the command runs in); None for another
    database or an in-memory one."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.path[1:] in ("", ":memory:"):
        return None
    return Path(parts.path[1:]).absolute()


def _where(current: Settings) -> str:
    path = sqlite_path(current.database_url)
    if path is None:
        return shown_url(current.database_url)
    if current.database_url == settings_module.DEFAULT_DATABASE_URL:
        return f"{path} (DATABASE_URL is unset: bookingflow.db in the folder the command runs in)"
    return str(path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].strip() if text else exc.__class__.__name__


@contextmanager
def _connection():
    """A connection for a check, closed after unless it was open before (a caller's, maybe in a
    transaction)."""
    opened = database.connect(reuse_if_open=True)
    try:
        yield
    finally:
        if opened and not database.in_transaction():
            database.close()


def _reach(current: Settings, create: bool) -> None:
    path = sqlite_path(current.database_url)
    if path is not None and not create and not path.exists():
        fail(f"no database at {_where(current)}: create it with `bookingflow db upgrade` "
             f"(or run `bookingflow dev` there), or set DATABASE_URL to yours")
    try:
        with _connection():
            database.execute_sql("SELECT 1")
    except peewee.PeeweeException as exc:
        fail(f"cannot reach the database at {_where(current)}: {_first_line(exc)}")


def _schema(current: Settings) -> None:
    from models import migrations

    try:
        with _connection():
            version = migrations.current_version()
    except peewee.PeeweeException as exc:
        fail(f"cannot read the database at {_where(current)}: {_first_line(exc)}")
    if version == 0:
        fail(f"the database at {_where(current)} has no schema: run `bookingflow db upgrade` "
             f"(or `bookingflow dev`, which creates it)")


def open_reachable_database(current: Settings, *, create: bool = False) -> None:
    """DATABASE_URL opened and reached once, or a one-line stop. A SQLite file that is not there is
    created only when `create` (`db upgrade`): any other command would make an empty file and fail."""
    open_configured_database(current)
    _reach(current, create)


def require_existing_database(current: Settings) -> None:
    """The database already opened is reachable and holds bookingflow's schema, or a one-line stop
    saying what to run: what every process but `db upgrade`, `dev` and web (which answers 503 while
    its database is away) checks before its first query."""
    _reach(current, create=False)
    _schema(current)


def open_existing_database(current: Settings, role: str = "cli") -> None:
    open_configured_database(current, role)
    require_existing_database(current)


def configure_logging(json_lines: bool = True, level: int = logging.INFO) -> None:
    """JSON lines for the serving processes; masked plain text for `bookingflow dev`'s terminal."""
    logs.configure(json_lines=json_lines, level=level)
