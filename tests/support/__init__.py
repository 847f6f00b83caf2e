"""What the tests share besides fixtures (those are in tests/conftest.py).

- suite: the suite's secrets, service URLs and settings (the one place that reads TEST_* variables).
- services: skip locally, fail under CI=true, when PostgreSQL, Redis or RabbitMQ is missing.
- brokers: emptying and joining the suite's broker, whichever backend it is.
- catalogue: session types as an operator imports them.
- waiting: polling with a deadline (never a bare sleep).
- providers: signed Stripe and Calendly deliveries from tests/fixtures.
- flows: the frontend's side of a booking, over HTTP.
- realstack, faultstack: the service on real processes, and servers a test may break.
"""
