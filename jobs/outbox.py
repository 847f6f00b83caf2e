"""The outbox: an e-mail row is written in the transaction of the transition it announces, then an
actor sends it. A row is claimed before it is sent and marked after, so a retried job never sends
an e-mail that was already sent."""

from __future__ import annotations

import datetime as dt
import logging
import time

import dramatiq
import peewee

from bookingflow import mailer
from jobs import emails
from models.db import database, utcnow
from models.states import State, Trigger
from models.tables import Booking, Outbox

log = logging.getLogger(__name__)

# A claim older than this belongs to a sender that died; the row may be sent again. Past send_email's
# time limit (60 s, the SMTP timeout of 20 s within it), no live sender still holds it: an e-mail
# whose worker was killed mid-send waits two minutes, not ten.
CLAIM_TIMEOUT = dt.timedelta(minutes=2)
# How long a sender keeps trying to mark its sent row while the database is down (within send_email's
# 60 s time limit, after an SMTP exchange of at most 20 s).
MARK_SENT_PATIENCE_SECONDS = 30


def queue_for_transition(booking: Booking, from_state: State, trigger: Trigger) -> None:
    """The `effects` of a transition: its e-mail, if it has one. Runs inside the transition."""
    kind = emails.kind_for(booking, from_state, trigger)
    if kind is None:
        return
    subject, body = emails.render(kind, booking)
    Outbox.create(
        booking=booking.id, key=f"{kind}:{booking.id}:{booking.version}", kind=kind,
        recipient=booking.email, subject=subject, body=body,
    )


def send_waiting(booking_id: str) -> None:
    for row in Outbox.select(Outbox.id).where(Outbox.booking == booking_id, Outbox.sent_at.is_null(),
                                              Outbox.claimed_at.is_null()):
        send_email.send(row.id)


def _claim(row_id: int, now: dt.datetime) -> bool:
    return bool(
        Outbox.update(claimed_at=now, attempts=Outbox.attempts + 1)
        .where(Outbox.id == row_id, Outbox.sent_at.is_null(),
               Outbox.claimed_at.is_null() | (Outbox.claimed_at < now - CLAIM_TIMEOUT))
        .execute()
    )


def deliver(row_id: int) -> bool:
    """Send one outbox row unless it was sent or someone else is sending it; True if we sent it."""
    if not _claim(row_id, utcnow()):
        return False
    row = Outbox.get_by_id(row_id)
    try:
        mailer.send(row.recipient, row.subject, row.body,
                    message_id=f"<outbox-{row.id}.{int(row.created_at.timestamp())}@bookingflow>")
    except Exception as exc:
        Outbox.update(claimed_at=None, last_error=f"{exc.__class__.__name__}: {exc}"[:500]).where(Outbox.id == row_id).execute()
        raise
    _mark_sent(row_id)
    return True


def _mark_sent(row_id: int) -> None:
    """Record the send, waiting out a database outage: the e-mail is gone, and a row left unmarked
    would be sent again once its claim times out."""
    deadline = time.monotonic() + MARK_SENT_PATIENCE_SECONDS
    while True:
        try:
            Outbox.update(sent_at=utcnow(), last_error=None).where(Outbox.id == row_id).execute()
            return
        except (peewee.OperationalError, peewee.InterfaceError):
            if time.monotonic() > deadline:
                raise
            log.warning("outbox row %s sent, not yet marked: the database is unreachable, trying again", row_id)
            time.sleep(1)
            _reconnect()


def _reconnect() -> None:
    """Let go of a connection the server cut (the pool drops it); the next query opens a new one."""
    try:
        if not database.is_closed():
            database.close()
    except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is gone either way
        pass


@dramatiq.actor(max_retries=8, min_backoff=5_000, max_backoff=600_000, max_age=3 * 24 * 3600_000, time_limit=60_000)
def send_email(row_id: int) -> None:
    deliver(row_id)
