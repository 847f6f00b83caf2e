"""The outbox: an e-mail row is written in the transaction of the transition it announces, then an
actor sends it. A row is claimed before it is sent and marked after, so a retried job never sends
an e-mail that was already sent.

Whom to: the invitee Calendly reported for the booking, never the address typed at POST /v1/bookings
(anyone may type anyone's), so a booking Calendly never confirmed an invitee for sends nothing. An
e-mail whose recipient is not exactly one plain address, or whose address already had
MAIL_PER_ADDRESS_PER_HOUR e-mails in the past hour, is written all the same, as withheld with the
reason, and never sent."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time

import dramatiq
import peewee

from bookingflow import broker, crypto, mailer
from bookingflow import settings as settings_module
from bookingflow.addresses import AddressRefused, single_address
from jobs import emails
from models.db import database, is_postgres, utcnow
from models.states import State, Trigger
from models.tables import Booking, Outbox

log = logging.getLogger(__name__)

# How long a sender keeps trying to mark its sent row while the database is down (within send_email's
# 60 s time limit, after an SMTP exchange of at most 20 s).
MARK_SENT_PATIENCE_SECONDS = 30
# The window MAIL_PER_ADDRESS_PER_HOUR counts over.
CAP_WINDOW = dt.timedelta(hours=1)


def queue_for_transition(booking: Booking, from_state: State, trigger: Trigger) -> bool:
    """The `effects` of a transition: its e-mail, if it has one. Runs inside the transition; True if
    it wrote one (to send, or withheld)."""
    kind = emails.kind_for(booking, from_state, trigger)
    if kind is None:
        return False
    if not booking.invitee_email:
        log.info("booking %s: no %s e-mail: Calendly has reported no invitee for it", booking.id, kind)
        return False
    now = utcnow()
    try:
        recipient = single_address(booking.invitee_email)
    except AddressRefused as refused:
        recipient, withheld = booking.invitee_email, f"recipient refused: {refused}"
    else:
        withheld = _over_cap(recipient, now)
    if withheld:
        log.warning("booking %s: %s e-mail withheld, not sent: %s", booking.id, kind, withheld)
    subject, body = emails.render(kind, booking)
    Outbox.create(
        booking=booking.id, key=f"{kind}:{booking.id}:{booking.version}", kind=kind,
        recipient=recipient, subject=subject, body=body, created_at=now,
        withheld_at=now if withheld else None, withheld_reason=withheld[:300] if withheld else None,
    )
    return True


def _to_address(address: str) -> peewee.Expression:
    """Outbox rows to `address`: by its keyed hash (under every listed key, so a rotation under way still
    counts them), or by the plaintext recipient of rows written without a key, which have no hash."""
    normalized = crypto.normalize_email(address)
    plain = Outbox.recipient_hash.is_null() & peewee.fn.LOWER(peewee.fn.TRIM(Outbox.recipient)).in_(
        (normalized, crypto.ESCAPED + normalized))
    hashes = crypto.email_hashes(address)
    return (Outbox.recipient_hash.in_(hashes) | plain) if hashes else plain


def _over_cap(address: str, now: dt.datetime) -> str | None:
    """Why an e-mail to `address` written now must be withheld, if it must: the address had its share
    of the past hour. Withheld e-mails do not count: they reached no one."""
    cap = settings_module.get().mail_per_address_per_hour
    if is_postgres():
        # Two transitions e-mailing one address at once would both count below the cap: the second
        # waits here for the first to commit. (SQLite's write transactions are one at a time already.)
        digest = hashlib.blake2b(crypto.normalize_email(address).encode("utf-8"), digest_size=8,
                                 person=b"outbox-cap").digest()
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (int.from_bytes(digest, "big", signed=True),))
    recent = (Outbox.select().where(_to_address(address), Outbox.created_at > now - CAP_WINDOW,
                                    Outbox.withheld_at.is_null()).count())
    if recent >= cap:
        return f"over MAIL_PER_ADDRESS_PER_HOUR: this address had {recent} e-mail(s) in the past hour (at most {cap})"
    return None


def send_waiting(booking_id: str) -> None:
    for row in Outbox.select(Outbox.id).where(Outbox.booking == booking_id, Outbox.sent_at.is_null(),
                                              Outbox.claimed_at.is_null(), Outbox.withheld_at.is_null()):
        send_email.send(row.id)


def _claim(row_id: int, now: dt.datetime) -> bool:
    return bool(
        Outbox.update(claimed_at=now, attempts=Outbox.attempts + 1)
        .where(Outbox.id == row_id, Outbox.sendable(now))
        .execute()
    )


def _withhold(row_id: int, reason: str) -> None:
    Outbox.update(withheld_at=utcnow(), withheld_reason=reason[:300], claimed_at=None).where(Outbox.id == row_id).execute()


def deliver(row_id: int) -> bool:
    """Send one outbox row unless it was sent, withheld or someone else is sending it; True if we sent it."""
    if not _claim(row_id, utcnow()):
        return False
    row = Outbox.get_by_id(row_id)
    try:
        # Read again at the door: a row written before recipients were checked (an older release's) is
        # held to the same rule.
        recipient = single_address(row.recipient)
    except AddressRefused as refused:
        log.warning("outbox row %s withheld, not sent: recipient refused: %s", row_id, refused)
        _withhold(row_id, f"recipient refused: {refused}")
        return False
    try:
        mailer.send(recipient, row.subject, row.body,
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


@dramatiq.actor(actor_name=broker.SEND_EMAIL, max_retries=8, min_backoff=5_000, max_backoff=600_000, max_age=3 * 24 * 3600_000, time_limit=60_000)
def send_email(row_id: int) -> None:
    deliver(row_id)
