"""The servers a test may need (PostgreSQL, Redis, RabbitMQ): whether they answer, and what a test
does when one does not. Locally it skips, so a plain checkout runs the rest; under CI=true it fails,
so a leg that should have the server cannot pass by skipping."""

from __future__ import annotations

import os

import pytest

CI = os.environ.get("CI", "").lower() == "true"


def require_service(name: str, problem: str | None) -> None:
    """Skip (locally) or fail (CI) when a service the test needs is missing."""
    if problem is None:
        return
    if CI:
        pytest.fail(f"{name} is required under CI=true: {problem}")
    pytest.skip(f"{name} not available: {problem}")


def postgres_problem(url: str) -> str | None:
    import psycopg2

    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except Exception as exc:
        return f"{url}: {exc.__class__.__name__}"
    return None


def redis_problem(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"{url}: {exc.__class__.__name__}"
    return None


def rabbitmq_problem(url: str) -> str | None:
    import pika

    try:
        parameters = pika.URLParameters(url)
        parameters.connection_attempts, parameters.socket_timeout, parameters.stack_timeout = 1, 3, 5
        pika.BlockingConnection(parameters).close()
    except Exception as exc:
        return f"{url}: {exc.__class__.__name__}"
    return None
