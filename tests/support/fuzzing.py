"""What the fuzz suites share: hypothesis settings, hostile inputs, and the checks every answer to
them must pass (no 5xx, no traceback or secret, a refusal changes nothing).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from intake import MAX_BODY_BYTES
from support.suite import CALENDLY_KEY, CALENDLY_TOKEN, STRIPE_KEY, STRIPE_WEBHOOK_SECRET

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
E2E_EXAMPLES = max(5, EXAMPLES // 5)


HEALTH_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                 HealthCheck.large_base_example, HealthCheck.filter_too_much]


def fuzz_settings(examples: int = EXAMPLES):
    return settings(max_examples=examples, deadline=None, database=None, suppress_health_check=HEALTH_CHECKS)


SUITE_SECRETS = (STRIPE_WEBHOOK_SECRET, CALENDLY_KEY, STRIPE_KEY, CALENDLY_TOKEN)
LEAK_MARKERS = (
    "Traceback", 'File "', "SELECT ", "INSERT INTO", "UPDATE ", "psycopg2", "sqlite3", "peewee",
    "Error:", "Exception", "RecursionError", "UnicodeDecodeError", "UnicodeEncodeError", "ValueError",
    "TypeError", "KeyError", "AttributeError", "OverflowError", "IntegrityError", "OperationalError",
    "DataError", "JSONDecodeError", "SignatureInvalid", "SignatureVerificationError", "ApiError",
)


def assert_safe_answer(status: int, text: str, content_type: str, sent: bytes = b"", secrets=SUITE_SECRETS,
                       from_gunicorn: bool = False) -> None:
    """< 500; an error is the contract's JSON shape; nothing internal shows. A marker the request itself
    carried may come back in an error message that quotes the input, so only the others count."""
    assert status < 500, f"{status}: {text[:500]}"
    # A rate limit would answer these requests before any of the code under test runs.
    assert status != 429, "rate limited: the fuzzed requests never reached the code they test"
    for secret in secrets:
        assert secret not in text, "a secret reached the client"
    echoed = sent.decode("latin-1")
    for marker in LEAK_MARKERS:
        assert marker in echoed or marker not in text, f"{marker!r} in the answer: {text[:500]}"
    if status >= 400 and not from_gunicorn and text:  # a HEAD request's answer has no body
        assert content_type.startswith("application/json"), content_type
        error = json.loads(text)["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)


def assert_safe(response, sent: bytes = b"") -> None:
    assert_safe_answer(response.status_code, response.get_data(as_text=True), response.content_type or "", sent)


def queued_messages(broker) -> dict:
    """What waits in the broker, per queue (delay queues included), empty queues left out."""
    from dramatiq.brokers.stub import StubBroker
    from dramatiq.common import dq_name

    if isinstance(broker, StubBroker):
        found = {name: sorted(queue.queue) for name, queue in broker.queues.items()}
    elif getattr(broker, "client", None) is not None:  # Redis keeps every queued message in <queue>.msgs
        names = [n for q in broker.get_declared_queues() for n in (q, dq_name(q))]
        found = {n: sorted(broker.client.hkeys(f"{broker.namespace}:{n}.msgs")) for n in names}
    else:  # RabbitMQ: counts are what it tells
        found = {q: broker.get_queue_message_counts(q)[:2] for q in broker.get_declared_queues()}
    return {name: messages for name, messages in found.items() if messages and messages != (0, 0)}


def snapshot(broker) -> dict:
    from models.tables import Booking, Outbox, Payment, ProviderEvent, Refund, Transition

    tables = {model.__name__: list(model.select().order_by(model._meta.primary_key).tuples())
              for model in (ProviderEvent, Booking, Transition, Payment, Refund, Outbox)}
    return {"tables": tables, "queued": queued_messages(broker)}


def send_and_check(client, broker, path: str, body: bytes, headers: dict, method: str = "POST"):
    """One request through the in-process app, with every property checked; returns the response."""
    before = snapshot(broker)
    response = client.open(path, method=method, data=body, headers=headers)
    with described(method, path, headers, body):
        assert_safe(response, body + repr(headers).encode())
        if 400 <= response.status_code < 500:
            assert snapshot(broker) == before, f"a refused request ({response.status_code}) changed the state"
    return response


@contextmanager
def described(method: str, path: str, headers: dict, body: bytes):
    """A failed check names the request that failed it (hypothesis shows the drawn values only)."""
    try:
        yield
    except AssertionError as failure:
        raise AssertionError(f"{method} {path!r} headers={headers!r} body={body[:300]!r} ({len(body)} bytes): "
                             f"{failure}") from None


# Header values a WSGI server can hand over: latin-1 text without CR or LF.
header_text = st.text(st.characters(max_codepoint=255, blacklist_characters="\r\n"), max_size=200)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=30,
)


def deeply_nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def sized(size: int) -> bytes:
    """A JSON object of exactly `size` bytes."""
    head, tail = b'{"padding":"', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


hostile_bodies = st.one_of(
    st.binary(max_size=2000),
    json_values.map(lambda value: json.dumps(value).encode()),
    json_values.map(lambda value: json.dumps(value).encode("utf-16")),
    st.builds(deeply_nested, st.integers(min_value=900, max_value=50_000), st.sampled_from(["array", "object"])),
    st.sampled_from([MAX_BODY_BYTES - 1, MAX_BODY_BYTES, MAX_BODY_BYTES + 1, 2 * MAX_BODY_BYTES]).map(sized),
    st.sampled_from([b"", b"\xff\xfe\xfd", b'{"id": "\xc3\x28"}', b'\xef\xbb\xbf{"id": "evt_1"}', b"\x00" * 10,
                     b'{"id": "evt_\\u0000", "type": "x"}', b'{"id": "\\ud800", "type": "x"}', b"NaN", b"1" * 5000]),
)

content_types = st.one_of(
    st.sampled_from(["application/json", "application/json; charset=utf-16", "text/plain", "application/xml",
                     "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "", "*/*",
                     "application/json; charset=\x00"]),
    header_text,
)


def stack_snapshot(stack, daily_report: bool = False) -> dict:
    """Rows of the watched tables and the message ids waiting in Redis, read from outside the stack;
    without the day's drift report unless `daily_report`."""
    import psycopg2
    import redis

    from models.tables import Booking, Outbox, Payment, ProviderEvent, Refund, Transition

    connection = psycopg2.connect(stack.env["DATABASE_URL"], connect_timeout=10)
    try:
        with connection.cursor() as cursor:
            tables = {}
            for model in (ProviderEvent, Booking, Transition, Payment, Refund, Outbox):
                cursor.execute(f'SELECT * FROM "{model._meta.table_name}" ORDER BY 1')
                tables[model.__name__] = cursor.fetchall()
    finally:
        connection.close()
    client = redis.Redis.from_url(stack.redis_url)
    queued = {key: sorted(message_id for message_id, message in client.hgetall(key).items()
                          if daily_report or not _the_days_own(message))
              for key in client.scan_iter("dramatiq:*.msgs")}
    return {"tables": tables, "queued": {k: v for k, v in queued.items() if v}}


def _the_days_own(message: bytes) -> bool:
    """The drift report the scheduler queues once a day: when the UTC date turns during a run, it comes
    whatever the requests do."""
    import json

    from bookingflow.broker import REPORT_DRIFT

    try:
        return json.loads(message).get("actor_name") == REPORT_DRIFT
    except ValueError:
        return False


# The e2e stacks of the fuzz suites run the scheduler's once-a-day work at once (from hour 0), and
# the suites wait for it to be done: a refused request must find nothing else moving.
EARLY_DAILY_RUN = {"DRIFT_REPORT_HOUR": "0"}


def wait_quiet(stack) -> None:
    """The stack's start-up work done: the day's drift report claimed, sent and taken off the queue."""
    import psycopg2

    from support.waiting import wait_until

    def claimed() -> bool:
        connection = psycopg2.connect(stack.env["DATABASE_URL"], connect_timeout=10)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM scheduled_run WHERE job = 'drift_report'")
                return cursor.fetchone()[0] > 0
        finally:
            connection.close()

    wait_until(lambda: claimed() and not stack_snapshot(stack, daily_report=True)["queued"], timeout=60,
               message="the scheduler's daily run done")


def stack_secrets(stack) -> tuple[str, ...]:
    names = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "CALENDLY_API_TOKEN", "CALENDLY_WEBHOOK_SIGNING_KEY")
    return tuple(secret for name in names for secret in stack.env[name].split(",") if secret)


def send_over_http(stack, path: str, body: bytes, headers: dict, method: str = "POST") -> requests.Response | None:
    """One request to the real stack with every property checked; None when `requests` itself
    refuses to send such a request (nothing reached the server then)."""
    before = stack_snapshot(stack)
    try:
        response = requests.request(method, stack.base + path, data=body, headers=headers, timeout=60)
    except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, ValueError, UnicodeError):
        return None
    # gunicorn answers what it cannot parse itself, in HTML, before our app sees it.
    content_type = response.headers.get("Content-Type", "")
    from_gunicorn = 400 <= response.status_code < 500 and content_type.startswith("text/html")
    with described(method, path, headers, body):
        assert_safe_answer(response.status_code, response.text, content_type, body + repr(headers).encode(),
                           secrets=stack_secrets(stack), from_gunicorn=from_gunicorn)
        if 400 <= response.status_code < 500:
            assert stack_snapshot(stack) == before, f"a refused request ({response.status_code}) changed the state"
    return response


# Raw header values: any byte a client can put on the wire but CR and LF.
raw_header_values = st.binary(max_size=200).filter(lambda value: b"\r" not in value and b"\n" not in value)
