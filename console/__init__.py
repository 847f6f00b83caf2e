"""The operator console: a separate process (`bookingflow console`, the Procfile's `console`), on its own
port (CONSOLE_PORT), never served by `web`. Server-rendered pages in plain HTML and CSS, behind a
sign-in, where operators look at bookings and deliveries and act on them, every action audited.

It reads the models and sends work to the workers by name through the broker (like the web), and
never loads the workers', the web's or the command line's code. `create_app(settings)` is its entry
point, for gunicorn (console/serve.py) and for whoever mounts it (`bookingflow dev`, the tests).
"""

from __future__ import annotations

from flask import Flask

from bookingflow import broker
from bookingflow import settings as settings_module
from bookingflow.settings import Settings, SettingsError
from models import bootstrap
from models.db import database


def create_app(settings: Settings | None = None) -> Flask:
    if settings is not None:
        settings_module.configure(settings)
    try:
        current = settings_module.require_console(bootstrap.checked(settings_module.get()))
    except SettingsError as exc:
        bootstrap.fail(str(exc))
    if database.obj is None:  # `bookingflow dev` mounts the console in a process whose database is open
        bootstrap.open_configured_database(current, "console")
    broker.install(current.broker_url)
    from console import web

    return web.build(current)
