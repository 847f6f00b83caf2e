"""What the client tells us it saw: Calendly's `event_scheduled` message (seed step 5)."""

from __future__ import annotations

import dramatiq

from jobs import events
from models.states import State, Trigger, TransitionRefused, apply
from models.tables import Booking, ProviderEvent

REPORTABLE = (State.CALENDLY_SCHEDULING, State.ERROR_WEBHOOK)


def record_scheduled(booking_id: str, event_uri: str, invitee_uri: str) -> None:
    booking = Booking.get_or_none(Booking.id == booking_id)
    if booking is None:
        return
    if State(booking.state) in REPORTABLE:
        try:
            apply(
                booking_id, Trigger.onCalendlyEventCreated, cause=f"client-{invitee_uri}",
                calendly_event_uri=event_uri, calendly_invitee_uri=invitee_uri,
            )
        except TransitionRefused:
            pass  # the webhook got there first: it carries the same URIs
    # An invitee.created that came before this report and found no booking is matched now.
    waiting = ProviderEvent.select(ProviderEvent.id).where(
        ProviderEvent.provider == "calendly", ProviderEvent.type == "invitee.created",
        ProviderEvent.subject == invitee_uri, ProviderEvent.outcome == "unmatched",
    )
    for event in waiting:
        reopened = (
            ProviderEvent.update(processed_at=None, outcome=None)
            .where(ProviderEvent.id == event.id, ProviderEvent.outcome == "unmatched")
            .execute()
        )
        if reopened:
            events.process(event.id)


@dramatiq.actor(max_retries=6, min_backoff=1_000, max_backoff=60_000, max_age=6 * 3600_000, time_limit=120_000)
def client_reported_scheduled(booking_id: str, event_uri: str, invitee_uri: str) -> None:
    record_scheduled(booking_id, event_uri, invitee_uri)
