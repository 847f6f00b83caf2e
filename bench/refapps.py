"""The reference apps the benchmarks put beside bookingflow, served by the same gunicorn command line.

    gunicorn ... 'refapps:bare_app()'        a Flask route that answers 200 and does nothing else
    gunicorn ... 'refapps:reference_app()'   stripe.Webhook.construct_event, then one dramatiq send

`bench/` is put on PYTHONPATH for all three apps alike (it holds no module named like a product
package). The reference app reads STRIPE_WEBHOOK_SECRET and BROKER_URL from the same environment
bookingflow gets, and sends to the same Redis.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request


def bare_app() -> Flask:
    app = Flask(__name__)

    @app.post("/webhooks/stripe")
    def stripe_webhook():
        return "", 200

    @app.get("/v1/bookings/<booking_id>")
    def get_booking(booking_id: str):
        return "", 200

    @app.get("/healthz")
    def healthz():
        return "", 200

    return app


def reference_app() -> Flask:
    import dramatiq
    import stripe
    from dramatiq.brokers.redis import RedisBroker

    secret = os.environ["STRIPE_WEBHOOK_SECRET"].split(",")[0].strip()
    broker = RedisBroker(url=os.environ["BROKER_URL"])
    dramatiq.set_broker(broker)

    @dramatiq.actor(queue_name="bench_reference")
    def handle_event(event_id: str) -> None:  # never consumed: the benchmark measures the intake
        pass

    app = Flask(__name__)

    @app.post("/webhooks/stripe")
    def stripe_webhook():
        body = request.get_data()
        try:
            event = stripe.Webhook.construct_event(body, request.headers.get("Stripe-Signature"), secret)
        except (ValueError, stripe.SignatureVerificationError):
            return jsonify({"error": "invalid"}), 400
        handle_event.send(event.id)
        return jsonify({"received": True}), 200

    @app.get("/healthz")
    def healthz():
        return "", 200

    return app
