"""The suite's broker between tests: emptied before each, and joined the same way on every backend.

Tests wait for queued work with `broker.join(queue)` then `worker.join()`. The stub's and Redis's
joins wait for every message to be acknowledged; RabbitMQ's does not, and a message a worker still
holds at the end of a test must not leak into the next one. These helpers cover those differences;
each says which backend it is for and why.
"""

from __future__ import annotations

import time
import types

# The suite's in-process workers (the `worker` fixture registers them): RabbitMQ's join must know
# whether one of them still holds a message.
RUNNING_WORKERS: list = []


def join_work(broker, timeout: int = 30_000) -> None:
    """Every job queued so far has run, retries and delayed messages included: the queue joined, then
    the suite's workers, as above."""
    from bookingflow.broker import QUEUE

    broker.join(QUEUE, timeout=timeout)
    for worker in RUNNING_WORKERS:
        worker.join()


def on_a_live_connection(broker, operation):
    """Run a RabbitMQ operation on this thread's connection, once more on a new one if the server had
    closed it (an idle connection misses its heartbeats; dramatiq's enqueue retries, flush does not)."""
    import pika.exceptions

    try:
        return operation()
    except pika.exceptions.AMQPConnectionError:
        del broker.connection
        return operation()


def flush_broker(broker) -> None:
    """Empty the suite's queues (delay and dead-letter queues too)."""
    from dramatiq.brokers.rabbitmq import RabbitmqBroker
    from dramatiq.brokers.stub import StubBroker

    if isinstance(broker, RabbitmqBroker):
        on_a_live_connection(broker, broker.flush_all)
        return
    broker.flush_all()
    if isinstance(broker, StubBroker):
        forget_unacknowledged_stub_messages(broker)


def forget_unacknowledged_stub_messages(broker) -> None:
    """The stub broker's queues are `queue.Queue`s whose join counts unacknowledged tasks. A message
    an earlier test's worker had taken and held when it stopped (a retry waiting for its eta) is never
    acknowledged, and the stub's join would wait for it forever. Redis and RabbitMQ give such a
    message back to its queue, where flush_all drops it; the stub has no such step, and dramatiq offers
    no public call for it, so the count is reset here (under the queue's own lock)."""
    for queue in broker.queues.values():
        with queue.all_tasks_done:
            queue.unfinished_tasks = 0
            queue.all_tasks_done.notify_all()


def join_counting_held_messages(broker) -> None:
    """Give a RabbitmqBroker the stub's and Redis's join semantics, which the suite relies on.

    RabbitmqBroker.join counts only the messages waiting in RabbitMQ, not those a worker took and
    has not acknowledged yet: it could return while a job still runs. This join also waits until
    the suite's workers (RUNNING_WORKERS) hold no message, running or delayed, seen empty several
    times in a row. The broker is built by the product (`jobs`), so the method is replaced on that
    one instance rather than by a subclass."""
    from dramatiq.errors import QueueJoinTimeout

    def busy() -> bool:
        return any(worker.work_queue.unfinished_tasks
                   or any(consumer.delay_queue.unfinished_tasks for consumer in worker.consumers.values())
                   for worker in RUNNING_WORKERS)

    def join(self, queue_name, min_successes=5, idle_time=20, *, timeout=None):
        deadline = timeout and time.monotonic() + timeout / 1000
        successes = 0
        while successes < min_successes:
            if deadline and time.monotonic() >= deadline:
                raise QueueJoinTimeout(queue_name)
            ready, delayed, _dead = on_a_live_connection(self, lambda: self.get_queue_message_counts(queue_name))
            successes = successes + 1 if ready + delayed == 0 and not busy() else 0
            time.sleep(idle_time / 1000)

    broker.join = types.MethodType(join, broker)
