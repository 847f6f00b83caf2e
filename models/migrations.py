"""Versioned schema migrations: `bookingflow db upgrade` applies the ones not yet recorded, and
`bookingflow db downgrade --to N` rolls back those above N, newest first.

Each migration is idempotent on its own (it checks what exists before it changes it), so the first
one may create tables from the current models: on a fresh database the later ones then find their
work done, and on an older one they do it. Every migration is backwards-compatible: it adds, with
defaults, and never renames or drops what the running code reads, so the previous release keeps
working while the new one is deployed. Each runs in one transaction under a lock, so two `release`
runs cannot interleave.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import peewee

from playhouse.migrate import SchemaMigrator, migrate

from models.db import database, is_postgres, is_sqlite, utcnow, write_transaction
from models.tables import (
    ALL_TABLES, CONSOLE_TABLES, OFF, ZERO, Booking, Dispute, FeatureFlag, ScheduledRun, SessionType,
    UTCDateTimeField,
)

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


def _columns(db: peewee.Database, table: str) -> set[str]:
    return {column.name for column in db.get_columns(table)}


def _add_flags_and_free_sessions(db: peewee.Database) -> None:
    db.create_tables([FeatureFlag], safe=True)
    if "collect_payment" not in _columns(db, SessionType._meta.table_name):
        migrate(SchemaMigrator.from_database(db).add_column(
            SessionType._meta.table_name, "collect_payment", peewee.BooleanField(default=True)))


def _drop_flags_and_free_sessions(db: peewee.Database) -> None:
    if "collect_payment" in _columns(db, SessionType._meta.table_name):
        migrate(SchemaMigrator.from_database(db).drop_column(SessionType._meta.table_name, "collect_payment"))
    db.drop_tables([FeatureFlag], safe=True)


ERROR_COLUMNS = {
    "booking": (("error_class", 20), ("error_message", 300)),
    "transition": (("error_class", 20), ("error_message", 300)),
}


# The retention sweep looks only at events that still carry a payload; without this partial index
# its scan grew with the whole history (BENCHMARKS.md, item 3).
PAYLOAD_KEPT_INDEX = "provider_event_payload_kept"


def _add_error_classes(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    for table, columns in ERROR_COLUMNS.items():
        existing = _columns(db, table)
        for name, length in columns:
            if name not in existing:
                migrate(migrator.add_column(table, name, peewee.CharField(max_length=length, null=True)))
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS {PAYLOAD_KEPT_INDEX} ON provider_event (received_at) "
                   "WHERE payload IS NOT NULL")


def _drop_columns(db: peewee.Database, columns_by_table: dict) -> None:
    """Drop each table's listed columns (`(name, ...)` pairs) that exist, newest first."""
    migrator = SchemaMigrator.from_database(db)
    for table, columns in columns_by_table.items():
        existing = _columns(db, table)
        for name, _ in reversed(columns):
            if name in existing:
                migrate(migrator.drop_column(table, name))


def _drop_error_classes(db: peewee.Database) -> None:
    db.execute_sql(f"DROP INDEX IF EXISTS {PAYLOAD_KEPT_INDEX}")
    _drop_columns(db, ERROR_COLUMNS)


# The personal-data columns of booking and their widths before migration 4.
PERSONAL_COLUMNS = (("email", 320), ("name", 200))
EMAIL_HASH_INDEX = "booking_email_hash"


def _column_type(db: peewee.Database, table: str, column: str) -> str:
    return next(c.data_type.lower() for c in db.get_columns(table) if c.name == column)


def _add_encrypted_personal_data(db: peewee.Database) -> None:
    """Widen booking.email and booking.name to TEXT, to hold ciphertext (`enc1:` + a Fernet token),
    and add booking.email_hash (indexed, nullable), the keyed hash bookings are found by. Rows already
    there stay as they are, plaintext and readable; `bookingflow data rotate-key` encrypts them and
    fills their hashes once DATA_ENCRYPTION_KEY is set."""
    migrator = SchemaMigrator.from_database(db)
    table = Booking._meta.table_name
    for column, _ in PERSONAL_COLUMNS:
        if _column_type(db, table, column) != "text":
            migrate(migrator.alter_column_type(table, column, peewee.TextField()))
    if "email_hash" not in _columns(db, table):
        migrate(migrator.add_column(table, "email_hash", peewee.CharField(max_length=64, null=True)))
    if EMAIL_HASH_INDEX not in {index.name for index in db.get_indexes(table)}:
        migrate(migrator.add_index(table, ("email_hash",), False, name=EMAIL_HASH_INDEX))


def _drop_encrypted_personal_data(db: peewee.Database) -> None:
    """Back to VARCHAR(320) and VARCHAR(200) columns without email_hash. Nothing is decrypted: a rollback
    with encrypted rows keeps them encrypted, and the previous release would read their ciphertext as
    the address and name. On PostgreSQL a stored value longer than its old column (a long name, once
    encrypted) cannot be narrowed back: the rollback then refuses and changes nothing."""
    migrator = SchemaMigrator.from_database(db)
    table = Booking._meta.table_name
    if is_postgres():
        for column, width in PERSONAL_COLUMNS:
            longer = db.execute_sql(f'SELECT COUNT(*) FROM "{table}" WHERE LENGTH("{column}") > %s', (width,)).fetchone()[0]
            if longer:
                raise ValueError(f"cannot roll back 4: {longer} booking(s) hold a {column} longer than the "
                                 f"previous {width} characters (encrypted); nothing was rolled back")
    if EMAIL_HASH_INDEX in {index.name for index in db.get_indexes(table)}:
        migrate(migrator.drop_index(table, EMAIL_HASH_INDEX))
    if "email_hash" in _columns(db, table):
        migrate(migrator.drop_column(table, "email_hash"))
    for column, width in PERSONAL_COLUMNS:
        if _column_type(db, table, column) == "text":
            migrate(migrator.alter_column_type(table, column, peewee.CharField(max_length=width)))


# outbox.recipient's width before migration 5.
OUTBOX_RECIPIENT_WIDTH = 320


def _widen_outbox_recipient(db: peewee.Database) -> None:
    """outbox.recipient becomes TEXT, to hold ciphertext; outbox.body is TEXT already. Rows already
    there stay as they are, plaintext and readable; `bookingflow data rotate-key` encrypts them."""
    if _column_type(db, "outbox", "recipient") != "text":
        migrate(SchemaMigrator.from_database(db).alter_column_type("outbox", "recipient", peewee.TextField()))


def _narrow_outbox_recipient(db: peewee.Database) -> None:
    """Back to VARCHAR(320). Nothing is decrypted; on PostgreSQL an encrypted address longer than the
    old column cannot be narrowed back: the rollback then refuses and changes nothing."""
    if is_postgres():
        longer = db.execute_sql('SELECT COUNT(*) FROM "outbox" WHERE LENGTH("recipient") > %s',
                                (OUTBOX_RECIPIENT_WIDTH,)).fetchone()[0]
        if longer:
            raise ValueError(f"cannot roll back 5: {longer} e-mail(s) in the outbox hold a recipient longer than "
                             f"the previous {OUTBOX_RECIPIENT_WIDTH} characters (encrypted); nothing was rolled back")
    if _column_type(db, "outbox", "recipient") == "text":
        migrate(SchemaMigrator.from_database(db).alter_column_type(
            "outbox", "recipient", peewee.CharField(max_length=OUTBOX_RECIPIENT_WIDTH)))


# Migration 6's booking columns: the frozen refund policy and the reschedule's request time and
# given-up start.
MONEY_INTEGRITY_COLUMNS = (
    ("reschedule_requested_at", lambda: UTCDateTimeField(null=True)),
    ("rescheduled_from_start", lambda: UTCDateTimeField(null=True)),
    ("refund_policy", lambda: peewee.TextField(null=True)),
    ("refund_policy_frozen_at", lambda: UTCDateTimeField(null=True)),
    ("refund_percent_cap", lambda: peewee.IntegerField(null=True)),
)


def _add_money_integrity_columns(db: peewee.Database) -> None:
    """Add the columns, then freeze every existing booking to its session type's current policy: the
    terms its client is taken to have paid under (the best that can be known of them now)."""
    migrator = SchemaMigrator.from_database(db)
    table = Booking._meta.table_name
    existing = _columns(db, table)
    for name, column in MONEY_INTEGRITY_COLUMNS:
        if name not in existing:
            migrate(migrator.add_column(table, name, column()))
    current_policy = SessionType.select(SessionType.refund_policy).where(SessionType.id == Booking.session_type)
    Booking.update(refund_policy=current_policy, refund_policy_frozen_at=utcnow()).where(
        Booking.refund_policy_frozen_at.is_null()).execute()


def _drop_money_integrity_columns(db: peewee.Database) -> None:
    migrator = SchemaMigrator.from_database(db)
    table = Booking._meta.table_name
    existing = _columns(db, table)
    for name, _ in reversed(MONEY_INTEGRITY_COLUMNS):
        if name in existing:
            migrate(migrator.drop_column(table, name))


# Migration 7's columns. It needs none of migration 6's: each finds and changes only its own.
INVITEE_COLUMNS = ("invitee_email", "invitee_name")
OUTBOX_HOLD_COLUMNS = (("recipient_hash", peewee.CharField(max_length=64, null=True)),
                       ("withheld_at", UTCDateTimeField(null=True)),
                       ("withheld_reason", peewee.CharField(max_length=300, null=True)))
OUTBOX_RECIPIENT_INDEX = "outbox_recipient_hash_created_at"
# States a booking reaches only once Calendly (its webhook, or its API for the reconciliation) has
# confirmed an invitee for it.
CONFIRMED_BY_CALENDLY = ("CALENDLY_WEBHOOK_RECEIVED", "PAYMENT_PENDING", "BOOKING_CONFIRMED")


def _add_invitee_and_outbox_holds(db: peewee.Database) -> None:
    """booking.invitee_email and booking.invitee_name (TEXT, nullable, encrypted like the client's
    e-mail and name): the invitee Calendly reported, the only recipient of the client's e-mails.
    outbox.recipient_hash (the keyed hash the per-address cap counts by, indexed with created_at),
    outbox.withheld_at and outbox.withheld_reason (an e-mail kept and never sent, and why).

    Independent of migration 6: it reads and writes none of 6's columns.

    Bookings already past Calendly's confirmation (their history went through a state only Calendly
    leads to) get their stored e-mail as the invitee's: Calendly was handed that address prefilled,
    and without it they would send no more e-mails. The value is copied as stored (ciphertext stays
    ciphertext). Outbox rows already there get no hash: the cap counts them by their plaintext
    recipient, and `bookingflow data rotate-key` fills the hash."""
    migrator = SchemaMigrator.from_database(db)
    booking = Booking._meta.table_name
    existing = _columns(db, booking)
    for column in INVITEE_COLUMNS:
        if column not in existing:
            migrate(migrator.add_column(booking, column, peewee.TextField(null=True)))
    existing = _columns(db, "outbox")
    for column, field in OUTBOX_HOLD_COLUMNS:
        if column not in existing:
            migrate(migrator.add_column("outbox", column, field))
    if OUTBOX_RECIPIENT_INDEX not in {index.name for index in db.get_indexes("outbox")}:
        migrate(migrator.add_index("outbox", ("recipient_hash", "created_at"), False, name=OUTBOX_RECIPIENT_INDEX))
    marks = ", ".join([db.param] * len(CONFIRMED_BY_CALENDLY))
    db.execute_sql(
        f'UPDATE "{booking}" SET invitee_email = email WHERE invitee_email IS NULL AND id IN '
        f'(SELECT booking_id FROM "transition" WHERE state IN ({marks}))', CONFIRMED_BY_CALENDLY)


def _drop_invitee_and_outbox_holds(db: peewee.Database) -> None:
    """Without the columns. The previous release would send the withheld e-mails it finds unsent: they
    are marked sent first, their reason kept in last_error, so a rollback never lets them out."""
    migrator = SchemaMigrator.from_database(db)
    existing = _columns(db, "outbox")
    if "withheld_at" in existing:
        db.execute_sql("UPDATE outbox SET sent_at = withheld_at, last_error = 'withheld, never sent: ' || "
                       "withheld_reason WHERE withheld_at IS NOT NULL AND sent_at IS NULL")
    if OUTBOX_RECIPIENT_INDEX in {index.name for index in db.get_indexes("outbox")}:
        migrate(migrator.drop_index("outbox", OUTBOX_RECIPIENT_INDEX))
    for column, _ in reversed(OUTBOX_HOLD_COLUMNS):
        if column in existing:
            migrate(migrator.drop_column("outbox", column))
    existing = _columns(db, Booking._meta.table_name)
    for column in INVITEE_COLUMNS:
        if column in existing:
            migrate(migrator.drop_column(Booking._meta.table_name, column))


def _add_disputes_and_refund_attempts(db: peewee.Database) -> None:
    """The dispute table, and refund.attempt (0 for every refund already there: its key stays the
    one it was first sent with)."""
    db.create_tables([Dispute], safe=True)
    if "attempt" not in _columns(db, "refund"):
        migrate(SchemaMigrator.from_database(db).add_column("refund", "attempt", peewee.IntegerField(default=0)))


def _drop_disputes_and_refund_attempts(db: peewee.Database) -> None:
    if "attempt" in _columns(db, "refund"):
        migrate(SchemaMigrator.from_database(db).drop_column("refund", "attempt"))
    db.drop_tables([Dispute], safe=True)


def _add_scheduled_runs(db: peewee.Database) -> None:
    db.create_tables([ScheduledRun], safe=True)


def _drop_scheduled_runs(db: peewee.Database) -> None:
    db.drop_tables([ScheduledRun], safe=True)


# Migration 10's columns: pricing per session type, and the breakdown and documents of each payment.
# Those that are NOT NULL carry a database default, so the previous release's inserts still work.
PRICING_COLUMNS = {
    "session_type": (("prices", lambda: peewee.TextField(null=True)),
                     ("promotion_codes", lambda: peewee.BooleanField(default=False, constraints=[OFF])),
                     ("automatic_tax", lambda: peewee.BooleanField(default=False, constraints=[OFF])),
                     ("invoice", lambda: peewee.BooleanField(default=False, constraints=[OFF]))),
    "payment": (("amount_subtotal", lambda: peewee.BigIntegerField(null=True)),
                ("amount_discount", lambda: peewee.BigIntegerField(default=0, constraints=[ZERO])),
                ("amount_tax", lambda: peewee.BigIntegerField(default=0, constraints=[ZERO])),
                ("receipt_url", lambda: peewee.TextField(null=True)),
                ("invoice_id", lambda: peewee.CharField(max_length=255, null=True)),
                ("invoice_url", lambda: peewee.TextField(null=True)),
                ("documents_checked_at", lambda: UTCDateTimeField(null=True))),
}


DOCUMENTS_MISSING_INDEX = "payment_documents_missing"


def _add_pricing(db: peewee.Database) -> None:
    """The new columns, off or empty. A payment already paid gets its amount as its subtotal: it was
    charged without discount or tax (nothing could give either before this release)."""
    migrator = SchemaMigrator.from_database(db)
    for table, columns in PRICING_COLUMNS.items():
        existing = _columns(db, table)
        for name, column in columns:
            if name not in existing:
                migrate(migrator.add_column(table, name, column()))
    db.execute_sql("UPDATE payment SET amount_subtotal = amount WHERE status = 'paid' AND amount_subtotal IS NULL")
    # Payments paid before this release have no receipt on record: the sweep asks for those of the
    # last few days (by created_at), and the index keeps its look at the others free.
    db.execute_sql(f"CREATE INDEX IF NOT EXISTS {DOCUMENTS_MISSING_INDEX} ON payment (created_at) WHERE status = 'paid' "
                   "AND ((receipt_url IS NULL AND payment_intent_id IS NOT NULL) "
                   "OR (invoice_url IS NULL AND invoice_id IS NOT NULL))")


def _drop_pricing(db: peewee.Database) -> None:
    db.execute_sql(f"DROP INDEX IF EXISTS {DOCUMENTS_MISSING_INDEX}")
    _drop_columns(db, PRICING_COLUMNS)


def _add_console(db: peewee.Database) -> None:
    """New tables only: nothing the previous release reads or writes changes."""
    db.create_tables(CONSOLE_TABLES, safe=True)


def _drop_console(db: peewee.Database) -> None:
    db.drop_tables(CONSOLE_TABLES, safe=True)


# PostgreSQL tells listeners on this channel each booking's new version, as "<id> <version>", when the
# transaction that wrote it commits: the web answers a status poll whose ETag still matches from what it
# was told (intake/poll_versions.py). A trigger rather than the code that writes, so that no write is
# missed, an operator's SQL included. SQLite has no notifications: the web reads the version there.
VERSION_CHANNEL = "booking_version"


def _add_version_notifications(db: peewee.Database) -> None:
    if not is_postgres():
        return
    db.execute_sql(f"""
        CREATE OR REPLACE FUNCTION {VERSION_CHANNEL}_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.version IS DISTINCT FROM OLD.version THEN
                PERFORM pg_notify('{VERSION_CHANNEL}', NEW.id || ' ' || NEW.version);
            END IF;
            RETURN NULL;
        END $$""")
    db.execute_sql(f"DROP TRIGGER IF EXISTS {VERSION_CHANNEL}_notify ON booking")
    db.execute_sql(f"CREATE TRIGGER {VERSION_CHANNEL}_notify AFTER UPDATE ON booking FOR EACH ROW "
                   f"EXECUTE FUNCTION {VERSION_CHANNEL}_notify()")


def _drop_version_notifications(db: peewee.Database) -> None:
    if not is_postgres():
        return
    db.execute_sql(f"DROP TRIGGER IF EXISTS {VERSION_CHANNEL}_notify ON booking")
    db.execute_sql(f"DROP FUNCTION IF EXISTS {VERSION_CHANNEL}_notify()")


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "bookings, session types, history, provider events, payments, refunds, outbox, alerts",
              _create_initial_tables, _drop_initial_tables),
    Migration(2, "feature flags, and free sessions (payment collection per session type)",
              _add_flags_and_free_sessions, _drop_flags_and_free_sessions),
    Migration(3, "error classes and client-safe messages on bookings and their history; "
                 "an index for the retention sweep",
              _add_error_classes, _drop_error_classes),
    Migration(4, "client e-mail and name encrypted at rest (wider columns), and the e-mail lookup hash",
              _add_encrypted_personal_data, _drop_encrypted_personal_data),
    Migration(5, "e-mails in the outbox encrypted at rest (a wider recipient column)",
              _widen_outbox_recipient, _narrow_outbox_recipient),
    Migration(6, "refund policy frozen on each booking; reschedule requests that expire and price by the slot given up",
              _add_money_integrity_columns, _drop_money_integrity_columns),
    Migration(7, "the invitee's e-mail and name as Calendly reported them; e-mails withheld from sending, "
                 "and the recipient hash the per-address cap counts by",
              _add_invitee_and_outbox_holds, _drop_invitee_and_outbox_holds),
    Migration(8, "disputes on a booking's payments; the attempt number in a refund's idempotency key",
              _add_disputes_and_refund_attempts, _drop_disputes_and_refund_attempts),
    Migration(9, "the claims of periodic jobs (the daily drift report), one per job and period",
              _add_scheduled_runs, _drop_scheduled_runs),
    Migration(10, "pricing: prices per currency, promotion codes, tax and invoices per session type; each "
                  "payment's subtotal, discount and tax, its receipt and invoice",
              _add_pricing, _drop_pricing),
    Migration(11, "the operator console: its users, their sessions, sign-in attempts, and the audit of their actions",
              _add_console, _drop_console),
    Migration(12, "a notification of each booking's new version as it commits, for the web's status polls "
                  "(PostgreSQL; nothing to do on SQLite)",
              _add_version_notifications, _drop_version_notifications),
)


def applied_versions() -> set[int]:
    if not database.table_exists(SchemaVersion._meta.table_name):
        return set()
    return {row.version for row in SchemaVersion.select(SchemaVersion.version)}


@contextmanager
def _schema_change():
    """One transaction under the migration lock. On SQLite, where changing a column rebuilds its
    table, foreign keys are off while it happens (they can only be switched outside a transaction)
    and checked once it is done, as SQLite's documentation prescribes."""
    if is_sqlite():
        database.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        with write_transaction():
            if is_postgres():
                database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            yield
            if is_sqlite() and database.execute_sql("PRAGMA foreign_key_check").fetchall():
                raise RuntimeError("the migration left rows whose foreign keys point nowhere; rolled back")
    finally:
        if is_sqlite():
            database.execute_sql("PRAGMA foreign_keys = ON")


def upgrade(report: Callable[[str], None] = lambda line: None) -> list[int]:
    """Apply every pending migration; return the versions applied (empty when up to date)."""
    applied: list[int] = []
    with _schema_change():
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


def downgrade(target: int, report: Callable[[str], None] = lambda line: None) -> list[int]:
    """Roll back every applied migration above `target`, newest first; return the versions undone."""
    newest = max(migration.version for migration in MIGRATIONS)
    if target < 0 or target > newest:
        raise ValueError(f"no schema version {target}: versions run from 0 to {newest}")
    undone: list[int] = []
    with _schema_change():
        done = applied_versions()
        for migration in reversed(MIGRATIONS):
            if migration.version <= target or migration.version not in done:
                continue
            report(f"rolling back {migration.version}: {migration.name}")
            migration.down(database)
            SchemaVersion.delete().where(SchemaVersion.version == migration.version).execute()
            undone.append(migration.version)
    return undone


def current_version() -> int:
    versions = applied_versions()
    return max(versions) if versions else 0
