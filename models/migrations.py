"""Versioned schema migrations: `bookingflow db upgrade` applies the ones not yet recorded.

Each migration is idempotent on its own (it checks what exists before it changes it), so the first
one may create tables from the current models: on a fresh database the later ones then find their
work done. Upgrades run in one transaction under a lock, so two `release` runs cannot interleave.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import peewee

from models.db import database, is_postgres, utcnow, write_transaction
from models.tables import ALL_TABLES, UTCDateTimeField

# An arbitrary constant: the key of the PostgreSQL advisory lock held while migrating.
MIGRATION_LOCK_KEY = 0x626F6F6B


class SchemaVersion(peewee.Model):
    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField(max_length=200)
    applied_at = UTCDateTimeField(default=utcnow)

    class Meta:
        database = database
        table_name = "schema_version"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    up: Callable[[peewee.Database], None]
    down: Callable[[peewee.Database], None]


def _create_initial_tables(db: peewee.Database) -> None:
    db.create_tables(ALL_TABLES, safe=True)


def _drop_initial_tables(db: peewee.Database) -> None:
    db.drop_tables(ALL_TABLES, safe=True)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "bookings, session types, history, provider events, payments, refunds, outbox", _create_initial_tables, _drop_initial_tables),
)


def applied_versions() -> set[int]:
    if not database.table_exists(SchemaVersion._meta.table_name):
        return set()
    return {row.version for row in SchemaVersion.select(SchemaVersion.version)}


def upgrade(report: Callable[[str], None] = lambda line: None) -> list[int]:
    """Apply every pending migration; return the versions applied (empty when up to date)."""
    applied: list[int] = []
    with write_transaction():
        if is_postgres():
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        database.create_tables([SchemaVersion], safe=True)
        done = applied_versions()
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            report(f"applying {migration.version}: {migration.name}")
            migration.up(database)
            SchemaVersion.create(version=migration.version, name=migration.name)
            applied.append(migration.version)
    return applied


def current_version() -> int:
    versions = applied_versions()
    return max(versions) if versions else 0
