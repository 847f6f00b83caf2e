"""Which handler processes which provider event, and what a handler reports back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    name: str  # what happened: "advanced", "unmatched", "ignored", "stale", "invalid", ...
    booking_id: str | None = None
    detail: str | None = None


HANDLERS: dict[tuple[str, str], Callable] = {}


def handles(provider: str, *types: str):
    """Register a handler `(event: ProviderEvent, body: dict) -> Outcome` for event types."""

    def register(function):
        for event_type in types:
            HANDLERS[(provider, event_type)] = function
        return function

    return register


def handler_for(provider: str, event_type: str):
    return HANDLERS.get((provider, event_type))
