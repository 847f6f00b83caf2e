"""Sending work to the workers from a request: a broker failure is a 503, so the caller retries."""

from __future__ import annotations

import logging

from bookingflow import broker
from intake.errors import ApiError

log = logging.getLogger(__name__)


def enqueue(actor_name: str, *args) -> None:
    try:
        broker.send(actor_name, *args)
    except Exception as exc:  # any broker failure, whatever the broker: nothing was accepted
        log.error("broker unavailable, %s not enqueued: %s", actor_name, exc.__class__.__name__)
        raise ApiError(503, "unavailable", "the job queue is unreachable; try again") from None
