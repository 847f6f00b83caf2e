"""The web process: provider webhooks in, the client API out. `gunicorn 'intake:create_app()'`."""

from __future__ import annotations

from flask import Flask

from bookingflow import settings as settings_module
from bookingflow.settings import Settings

MAX_BODY_BYTES = 256 * 1024


def create_app(test_config: Settings | None = None) -> Flask:
    if test_config is not None:
        settings_module.configure(test_config)
    # Importing jobs validates the settings, opens the database and builds the broker, once.
    import jobs  # noqa: F401
    from intake import api, errors, health, webhooks
    from models.db import database

    app = Flask(__name__)
    app.config["SETTINGS"] = settings_module.get()
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    errors.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(api.bp)

    @app.before_request
    def open_connection():
        database.connect(reuse_if_open=True)

    @app.teardown_request
    def close_connection(exc):
        if not database.is_closed():
            database.close()

    return app
