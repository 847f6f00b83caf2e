"""The web process: provider webhooks in, the client API out. `gunicorn 'intake:create_app()'`."""

from __future__ import annotations

import logging
import time

from flask import Flask, g, request

from bookingflow import broker, logs, metrics
from bookingflow import settings as settings_module
from bookingflow.settings import Settings
from models import bootstrap

MAX_BODY_BYTES = 256 * 1024
log = logging.getLogger("intake")
access_log = logging.getLogger("intake.access")  # `bookingflow dev` writes its own access line instead


def create_app(test_config: Settings | None = None) -> Flask:
    if test_config is not None:
        settings_module.configure(test_config)
    # The web's start: its settings (or a one-line stop), the database, and the broker it sends work
    # to by name (it never loads the workers' code).
    settings = bootstrap.service_settings()
    bootstrap.prepare_metrics(settings)
    bootstrap.open_configured_database(settings, "web")
    broker.install(settings.broker_url)
    from intake import api, errors, health, openapi, poll_versions, ratelimit, sources, webhooks
    from intake.client_ip import trust_proxies
    from models.db import database

    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    trust_proxies(app, settings.trusted_proxy_count)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    errors.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(openapi.bp)
    # Started in each of gunicorn's workers once forked (bookingflow/gunicorn_conf.py): the listener of
    # the bookings' versions, which answers a status poll whose ETag still matches without a query.
    app.extensions["after_worker_fork"] = [poll_versions.start_listening]

    @app.before_request
    def start_request():
        g.started = time.perf_counter()
        logs.request_id.set(logs.valid_request_id(request.headers.get("X-Request-ID")) or logs.new_request_id())
        logs.booking_id.set(None)
        logs.event_id.set(None)

    # Refusals by address come before anything else is done, a database connection included.
    sources.init_app(app, settings)
    ratelimit.init_app(app, settings)

    # No connection is opened up front: peewee opens one at a request's first query, so a refused
    # signature, /healthz's liveness or /metrics costs no pool checkout.

    @app.after_request
    def finish_request(response):
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.request(route, request.method, response.status_code, time.perf_counter() - g.get("started", time.perf_counter()))
        response.headers["X-Request-ID"] = logs.request_id.get() or ""
        if request.method != "GET" or response.status_code >= 500:
            access_log.info("%s %s %s", request.method, route, response.status_code)
        return response

    @app.teardown_request
    def close_connection(exc):
        if not database.is_closed():
            database.close()

    return app
