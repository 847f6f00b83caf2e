"""The reference apps the benchmarks put beside bookingflow, served by the same gunicorn command line.

    gunicorn ... 'refapps:bare_app()'        a Flask route that answers 200 and does nothing else
    gunicorn ... 'refapps:reference_app()'   stripe.Webhook.construct_event, then one dramatiq send
    gunicorn ... 'refapps:duties_app()'      the least that keeps the intake's duties: verify the
                                             signature, store the delivery durably, send, answer

`bench/` is put on PYTHONPATH for all the apps alike (it holds no module named like a product
package). The reference and duties apps read STRIPE_WEBHOOK_SECRET, BROKER_URL (and DATABASE_URL) from the
same environment bookingflow gets, and send to the same Redis (and store in the same database).
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request


def _app_with_health() -> Flask:
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz():
        return "", 200

    return app


def bare_app() -> Flask:
    app = _app_with_health()

    @app.post("/webhooks/stripe")
    def stripe_webhook():
        return "", 200

    @app.get("/v1/bookings/<booking_id>")
    def get_booking(booking_id: str):
        return "", 200

    return app


def _webhook_secret() -> str:
    return os.environ["STRIPE_WEBHOOK_SECRET"].split(",")[0].strip()


def _unconsumed_actor(queue_name: str):
    """A dramatiq actor on the environment's Redis whose messages nobody consumes: the benchmark
    measures the intake, not the jobs."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    dramatiq.set_broker(RedisBroker(url=os.environ["BROKER_URL"]))

    def handle(value) -> None:
        pass

    return dramatiq.actor(handle, actor_name=queue_name, queue_name=queue_name)


def reference_app() -> Flask:
    import stripe

    secret = _webhook_secret()
    handle_event = _unconsumed_actor("bench_reference")
    app = _app_with_health()

    @app.post("/webhooks/stripe")
    def stripe_webhook():
        body = request.get_data()
        try:
            event = stripe.Webhook.construct_event(body, request.headers.get("Stripe-Signature"), secret)
        except (ValueError, stripe.SignatureVerificationError):
            return jsonify({"error": "invalid"}), 400
        handle_event.send(event.id)
        return jsonify({"received": True}), 200

    return app


def duties_app() -> Flask:
    """The intake's duties and nothing else, each done the cheapest way this stack allows: the HMAC
    checked by stripe-python's verify_header (no StripeObject built), the event's id and type read
    with json.loads, one INSERT of the row bookingflow stores (plain SQL through bookingflow's pool,
    committed on its own), one dramatiq send. No card-data stripping, no checks of the fields, no
    log line, no metrics, no error handling. What it costs is about the least an app keeping those
    duties can cost on this stack, so its ratio to the reference is about the most one can reach."""
    import datetime as dt
    import json

    import stripe

    from models.db import database, open_database

    secret = _webhook_secret()
    process_stored_event = _unconsumed_actor("bench_duties")
    open_database(os.environ["DATABASE_URL"], role="web")
    insert = ("INSERT INTO provider_event (provider, event_id, type, subject, payload, received_at, attempts) "
              "VALUES (%s, %s, %s, %s, %s, %s, 0) RETURNING id")
    app = _app_with_health()

    @app.post("/webhooks/stripe")
    def stripe_webhook():
        body = request.get_data()
        try:
            stripe.WebhookSignature.verify_header(body.decode(), request.headers.get("Stripe-Signature"), secret)
        except stripe.SignatureVerificationError:
            return jsonify({"error": "invalid"}), 400
        event = json.loads(body)
        subject = event["data"]["object"].get("id")
        # One statement, committed on its own (peewee's autocommit): one round trip, as bookingflow's.
        row_id = database.execute_sql(insert, ("stripe", event["id"], event["type"], subject, body.decode(),
                                               dt.datetime.now(dt.timezone.utc))).fetchone()[0]
        database.close()
        process_stored_event.send(row_id)
        return jsonify({"received": True}), 200

    return app
