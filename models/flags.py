"""Feature flags: switches kept in the database, flipped by operators with `bookingflow flags`."""

from __future__ import annotations

from dataclasses import dataclass

from models.db import utcnow
from models.tables import FeatureFlag


@dataclass(frozen=True)
class Flag:
    name: str
    default: bool
    meaning: str


BOOKINGS_OPEN = Flag("bookings_open", True, "new bookings are accepted (off: POST /v1/bookings answers 503; "
                                            "webhooks and existing bookings carry on)")
KNOWN = {flag.name: flag for flag in (BOOKINGS_OPEN,)}


def is_enabled(flag: Flag) -> bool:
    row = FeatureFlag.get_or_none(FeatureFlag.name == flag.name)
    return flag.default if row is None else row.enabled


def set_enabled(flag: Flag, enabled: bool, note: str | None = None) -> None:
    updated = (FeatureFlag.update(enabled=enabled, note=note, updated_at=utcnow())
               .where(FeatureFlag.name == flag.name).execute())
    if not updated:
        FeatureFlag.create(name=flag.name, enabled=enabled, note=note)


def all_flags() -> list[tuple[Flag, bool, str | None]]:
    rows = {row.name: row for row in FeatureFlag.select()}
    return [(flag, rows[name].enabled if name in rows else flag.default, rows[name].note if name in rows else None)
            for name, flag in KNOWN.items()]
