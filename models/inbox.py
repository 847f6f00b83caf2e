"""The inbox: every delivery and client request accepted from outside, stored before it is answered.

These functions are the only writers of its rows: stored once (a repeat finds the first), claimed
for processing, marked processed by a compare-and-set (a second worker, a retry or a replay finds it
done), and reopened for a replay.
"""

from __future__ import annotations

import peewee

from bookingflow.deliveries import is_handled
from models.db import utcnow
from models.statements import RenderedInsert, RenderedUpdate
from models.tables import ProviderEvent

# Once per delivery, on the intake's hot path: rendered once (models/statements.py).
_INSERT_EVENT = RenderedInsert(ProviderEvent, ("provider", "event_id", "type", "subject", "payload", "received_at",
                                               "processed_at", "outcome", "attempts"))


def store(provider: str, event_id: str, event_type: str, subject: str | None, payload: str) -> tuple[ProviderEvent, bool]:
    """Store once; (row, True) if it was new. A type bookingflow does not act on is kept, marked
    ignored at once: there is nothing to do with it."""
    handled = is_handled(provider, event_type)
    now = utcnow()
    values = dict(provider=provider, event_id=event_id[:255], type=event_type[:100], subject=subject, payload=payload,
                  received_at=now, processed_at=None if handled else now, outcome=None if handled else "ignored",
                  attempts=0)
    try:
        return _INSERT_EVENT.instance(_INSERT_EVENT.execute(**values), **values), True
    except peewee.IntegrityError:
        return ProviderEvent.get(ProviderEvent.provider == provider, ProviderEvent.event_id == event_id[:255]), False


def store_answered(provider: str, event_id: str, event_type: str, booking_id: str, outcome: str) -> ProviderEvent:
    """Store a request answered in the request itself (a booking's creation): processed at once, with
    its booking. A second one with the same id raises peewee.IntegrityError, which rolls back the
    caller's transaction."""
    return ProviderEvent.create(provider=provider, event_id=event_id[:255], type=event_type[:100], subject=booking_id,
                                booking=booking_id, processed_at=utcnow(), outcome=outcome, payload=None)


def stored(provider: str, event_id: str) -> ProviderEvent | None:
    return ProviderEvent.get_or_none(ProviderEvent.provider == provider, ProviderEvent.event_id == event_id[:255])


def is_stored(provider: str, event_id: str) -> bool:
    return ProviderEvent.select().where(ProviderEvent.provider == provider,
                                        ProviderEvent.event_id == event_id[:255]).exists()


def take_unprocessed(event_pk: int) -> ProviderEvent | None:
    """The event, if it is still unprocessed, with this attempt at it counted; None if it is done or
    gone. One statement where the database returns the row it wrote."""
    return _TAKE.execute(event_pk)


def finish(event: ProviderEvent, outcome: str, booking_id: str | None, detail: str | None) -> bool:
    """Mark the event processed unless someone already did; True if we did."""
    return _FINISH.execute(event.id, processed_at=utcnow(), outcome=outcome, detail=(detail or "")[:1000] or None,
                           booking=booking_id or event.booking_id) == 1


# Both only while the event is unprocessed: a second worker on the same event finds nothing to take.
_TAKE = RenderedUpdate(ProviderEvent, ProviderEvent.id, condition=ProviderEvent.processed_at.is_null(),
                       counter=ProviderEvent.attempts, returning=True)
_FINISH = RenderedUpdate(ProviderEvent, ProviderEvent.id, condition=ProviderEvent.processed_at.is_null())


def reopen_event(event_pk: int, only_if_outcome: str | None = None, fresh: bool = False) -> bool:
    """Make a processed event unprocessed again (a replay); with `only_if_outcome`, only if that is
    still its outcome (a compare-and-set: one reopener wins); `fresh` (an operator's replay) also
    forgets its attempts, so the scheduler's sweep of unprocessed events queues it again even after
    it gave up on it. True if it was reopened."""
    changes = {"processed_at": None, "outcome": None, "detail": None, **({"attempts": 0} if fresh else {})}
    query = ProviderEvent.update(**changes).where(ProviderEvent.id == event_pk)
    if only_if_outcome is not None:
        query = query.where(ProviderEvent.outcome == only_if_outcome)
    return bool(query.execute())
