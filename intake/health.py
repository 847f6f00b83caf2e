"""Liveness, readiness and metrics for the platform."""

from __future__ import annotations

import hmac

import dramatiq
from flask import Blueprint, Response, abort, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from models.gauges import DatabaseCollector
from intake.errors import error_response

from models.db import database

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


def _broker_reachable() -> bool:
    broker = dramatiq.get_broker()
    client = getattr(broker, "client", None)  # Redis
    if client is not None:
        return bool(client.ping())
    ping = getattr(broker, "ping", None)  # RabbitMQ (jobs.broker): a short AMQP handshake of its own
    if ping is not None:
        return bool(ping())
    return True  # the in-process broker of `bookingflow dev` and the tests


@bp.get("/readyz")
def readyz():
    checks = {}
    try:
        database.execute_sql("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unreachable"
    try:
        checks["broker"] = "ok" if _broker_reachable() else "unreachable"
    except Exception:
        checks["broker"] = "unreachable"
    ready = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ready" if ready else "unavailable", "checks": checks}), 200 if ready else 503


_database_metrics = CollectorRegistry()
_database_metrics.register(DatabaseCollector())


def _bearer_token() -> bytes:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip().encode() if scheme.lower() == "bearer" else b""


@bp.get("/metrics")
def metrics():
    # Bookings by state, traffic and error rates are business data: only a scraper holding
    # METRICS_TOKEN reads them, and without a token configured the route is not there at all.
    token = current_app.config["SETTINGS"].metrics_token
    if not token:
        abort(404)  # the same answer as any route that does not exist
    if not hmac.compare_digest(_bearer_token(), token.encode()):
        response = error_response(401, "unauthorized", "/metrics needs Authorization: Bearer <METRICS_TOKEN>")
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if current_app.config["SETTINGS"].prometheus_multiproc_dir:
        # Several gunicorn workers: add up what each has counted.
        process_metrics = CollectorRegistry()
        multiprocess.MultiProcessCollector(process_metrics)
    else:
        process_metrics = REGISTRY
    body = generate_latest(process_metrics) + generate_latest(_database_metrics)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)
