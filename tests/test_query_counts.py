"""SQL statements on the hot paths, counted (playhouse's count_queries: every statement peewee sends),
and the Dramatiq messages of a booking, so that what was made cheaper stays cheap (BENCHMARKS.md,
issue 17). A path that needs one more statement or message than here should say why, and the ceiling
move with it."""

from __future__ import annotations

from collections import Counter

import dramatiq
from playhouse.test_utils import count_queries

from bookingflow import broker as broker_names
from models.db import is_postgres
from models.tables import Outbox, ProviderEvent
from support.brokers import join_work
from support.flows import hours_from_now
from support.providers import checkout_session, encode, stripe_event, stripe_signature
from support.suite import STRIPE_WEBHOOK_SECRET
from support.waiting import wait_until


def statements(counted: count_queries, threads: set[int] | None = None) -> list[str]:
    return [record.msg[0] for record in counted.get_queries() if threads is None or record.thread in threads]


def test_a_signed_delivery_is_stored_in_one_statement_and_a_refused_one_in_none(client):
    body = encode(stripe_event("checkout.session.completed", checkout_session("b" * 32, 5000)))
    signature = stripe_signature(body, STRIPE_WEBHOOK_SECRET)
    with count_queries() as first:
        assert client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": signature}).status_code == 200
    assert [sql.split(" (")[0] for sql in statements(first)] == ['INSERT INTO "provider_event"']
    # A repeat: the INSERT meets the unique key, then the stored row is read to answer "duplicate".
    with count_queries() as repeat:
        assert client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": signature}).get_json()["duplicate"]
    assert len(statements(repeat)) == 2
    with count_queries() as refused:
        assert client.post("/webhooks/stripe", data=body, headers={"Stripe-Signature": "t=1,v1=00"}).status_code == 400
    assert statements(refused) == []
    assert ProviderEvent.select().count() == 1


def test_a_status_poll_with_its_etag_reads_only_the_version(client, session_type):
    created = client.post("/v1/bookings", json={"session_type": session_type.slug, "email": "ada@example.com",
                                                 "name": "Ada Lovelace"})
    assert created.status_code == 201, created.get_json()
    url = f"/v1/bookings/{created.get_json()['id']}"
    etag = client.get(url).headers["ETag"]
    with count_queries() as polled:
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert [sql.split(" FROM")[0] for sql in statements(polled)] == ['SELECT "t1"."version"']


# The whole happy path in the workers, from Calendly's delivery to the confirmation e-mail sent: two
# deliveries, five transitions, a Checkout Session recorded, the payment and its receipt, the e-mail:
# 79 statements before issue 17 (on SQLite), 46 since. PostgreSQL takes one more: the per-address
# lock before an e-mail is counted against its cap (jobs/outbox.py). The client's own report of the
# slot is left out: it races the delivery, and which of the two comes first changes the count.
WORKER_STATEMENTS_PER_BOOKING = 46
# And the messages queued for it: one job per delivery, which advances the booking as far as it can
# (no job per transition), and the e-mail, sent by a job of its own so that a slow or refusing mail
# server never holds a booking's work.
WORKER_MESSAGES_PER_BOOKING = Counter({broker_names.PROCESS_EVENT: 2, broker_names.SEND_EMAIL: 1})


class CountingEnqueues(dramatiq.Middleware):
    """The distinct messages queued, by actor. A retry of a job that failed, or a webhook the sandbox
    sent again because a loaded machine answered it late, queues the same work twice: not a cost of
    the path."""

    def __init__(self):
        self.messages: set[tuple[str, str]] = set()

    def after_enqueue(self, broker, message, delay):
        if not message.options.get("retries"):
            self.messages.add((message.actor_name, repr(message.args)))

    @property
    def sent(self) -> Counter:
        return Counter(actor for actor, _ in self.messages)


def test_a_booking_from_scheduled_to_confirmed_costs_the_workers_bounded_statements_and_messages(
        frontend, worker, broker):
    worker_threads = {thread.ident for thread in worker.workers}
    assert worker_threads
    enqueues = CountingEnqueues()
    broker.add_middleware(enqueues)
    try:
        with count_queries() as counted:
            booking = _confirmed_and_mailed(frontend, broker)
    finally:
        broker.middleware.remove(enqueues)
    sent = statements(counted, worker_threads)
    ceiling = WORKER_STATEMENTS_PER_BOOKING + (1 if is_postgres() else 0)
    assert len(sent) <= ceiling, "\n".join(sql[:120] for sql in sent)
    assert enqueues.sent == WORKER_MESSAGES_PER_BOOKING, (booking["id"], enqueues.sent)


def _confirmed_and_mailed(frontend, broker) -> dict:
    """One booking from its creation to its confirmation e-mail sent, every queue drained."""
    booking = frontend.create_booking("coaching-hour")
    frontend.schedule_in_calendly(booking["scheduling_url"], start_time=hours_from_now(100))
    view = frontend.wait_for_state(booking["id"], "PAYMENT_PROCESSING")
    frontend.pay(view["checkout_url"])
    frontend.wait_for_state(booking["id"], "BOOKING_CONFIRMED")
    wait_until(lambda: Outbox.select().where(Outbox.booking == booking["id"], Outbox.sent_at.is_null(False)).exists(),
               message="the confirmation e-mail sent")
    frontend.sandbox.wait_deliveries_idle()
    wait_until(lambda: not ProviderEvent.select().where(ProviderEvent.processed_at.is_null()).exists(),
               message="every delivery processed")
    join_work(broker)
    return booking
