"""What every process does first: settings, database, and a clear one-line stop when they are wrong."""

from __future__ import annotations

import logging
import os

from bookingflow import logs
from bookingflow import settings as settings_module
from bookingflow.settings import Settings, SettingsError
from models.db import open_database
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


def open_configured_database(current: Settings):
    return open_database(current.database_url)


def configure_logging(json_lines: bool = True, level: int = logging.INFO) -> None:
    """JSON lines for the serving processes; masked plain text for `bookingflow dev`'s terminal."""
    logs.configure(json_lines=json_lines, level=level)
