"""Schema migrations through the CLI, on SQLite and on PostgreSQL: from an empty database, back to the
previous schema, and up again from it with data in it."""

from __future__ import annotations

import datetime as dt

from playhouse.db_url import connect

from models.migrations import MIGRATIONS
from support.cli import cli_on as cli

NOW = dt.datetime(2026, 11, 1, 12, 0)


def schema(database_url: str) -> dict[str, set[tuple[str, bool]]]:
    db = connect(database_url)
    try:
        return {table: {(c.name, c.null) for c in db.get_columns(table)} for table in db.get_tables()}
    finally:
        db.close()


def test_upgrade_from_an_empty_database_creates_everything_and_is_safe_to_repeat(database_url):
    assert f"schema at version {MIGRATIONS[-1].version}" in cli(database_url, "db", "upgrade").stdout
    tables = schema(database_url)
    assert {"booking", "session_type", "transition", "provider_event", "payment", "refund", "outbox",
            "alert", "feature_flag", "schema_version"} <= set(tables)
    assert ("collect_payment", False) in tables["session_type"]
    assert "already up to date" in cli(database_url, "db", "upgrade").stdout


def test_downgrade_then_upgrade_returns_to_the_same_schema(database_url):
    cli(database_url, "db", "upgrade")
    fresh = schema(database_url)
    out = cli(database_url, "db", "downgrade", "--to", "1").stdout
    assert "rolling back 2" in out and "schema at version 1" in out
    previous = schema(database_url)
    assert "feature_flag" not in previous
    assert "collect_payment" not in {name for name, _ in previous["session_type"]}
    cli(database_url, "db", "upgrade")
    assert schema(database_url) == fresh


def test_upgrade_from_the_previous_schema_keeps_its_data(database_url):
    cli(database_url, "db", "upgrade")
    cli(database_url, "db", "downgrade", "--to", "1")
    db = connect(database_url)
    mark = "%s" if "postgres" in database_url else "?"
    try:  # rows written by the previous release, in its schema
        db.execute_sql(
            "INSERT INTO session_type (slug, name, duration_minutes, price, currency, calendly_event_type,"
            f" scheduling_url, refund_policy, active, created_at, updated_at) VALUES ('old-type', 'Old type', 30,"
            f" 4200, 'eur', 'https://api.calendly.com/event_types/OLD', 'https://calendly.com/old', NULL, {mark},"
            f" {mark}, {mark})", (True, NOW, NOW))
        type_id = db.execute_sql("SELECT id FROM session_type WHERE slug = 'old-type'").fetchone()[0]
        db.execute_sql(
            "INSERT INTO booking (id, session_type_id, state, version, email, name, amount, currency, amount_due,"
            " amount_paid, amount_refunded, payment_attempt, check_attempts, recovery_attempts, state_changed_at,"
            f" created_at, updated_at) VALUES ('previousreleasebooking0000000001', {mark}, 'BOOKING_CONFIRMED',"
            f" 3, 'old@example.com', 'Old Client', 4200, 'eur', 4200, 4200, 0, 1, 0, 0, {mark}, {mark}, {mark})",
            (type_id, NOW, NOW, NOW))
        db.execute_sql(
            "INSERT INTO transition (booking_id, from_state, state, trigger, cause, at) VALUES"
            f" ('previousreleasebooking0000000001', 'PAYMENT_SUCCEEDED', 'BOOKING_CONFIRMED', 'confirmBooking',"
            f" 'old', {mark})", (NOW,))
    finally:
        db.close()
    assert "applying 2" in cli(database_url, "db", "upgrade").stdout
    shown = cli(database_url, "bookings", "show", "previousreleasebooking0000000001").stdout
    assert "BOOKING_CONFIRMED" in shown and "€42.00" in shown and "confirmBooking" in shown
    db = connect(database_url)
    try:
        assert db.execute_sql("SELECT collect_payment FROM session_type WHERE slug = 'old-type'").fetchone()[0] in (True, 1)
    finally:
        db.close()


def test_downgrade_to_nothing_removes_every_table_but_the_version_record(database_url):
    cli(database_url, "db", "upgrade")
    assert "schema at version 0" in cli(database_url, "db", "downgrade", "--to", "0").stdout
    assert set(schema(database_url)) == {"schema_version"}


def columns_of(database_url: str, table: str) -> set[str]:
    return {name for name, _ in schema(database_url)[table]}


def test_migration_7_adds_the_invitee_and_the_withheld_emails_and_rolls_back_without_letting_one_out(database_url):
    cli(database_url, "db", "upgrade")
    out = cli(database_url, "db", "downgrade", "--to", "5").stdout
    assert "rolling back 7" in out
    assert not {"invitee_email", "invitee_name"} & columns_of(database_url, "booking")
    assert not {"recipient_hash", "withheld_at", "withheld_reason"} & columns_of(database_url, "outbox")
    db = connect(database_url)
    mark = db.param
    try:  # the previous release's rows: a confirmed booking, one still scheduling, an e-mail
        db.execute_sql(
            "INSERT INTO session_type (slug, name, duration_minutes, price, currency, calendly_event_type,"
            f" scheduling_url, refund_policy, active, collect_payment, created_at, updated_at) VALUES ('old-type',"
            f" 'Old type', 30, 4200, 'eur', 'https://api.calendly.com/event_types/OLD', 'https://calendly.com/old',"
            f" NULL, {mark}, {mark}, {mark}, {mark})", (True, True, NOW, NOW))
        type_id = db.execute_sql("SELECT id FROM session_type WHERE slug = 'old-type'").fetchone()[0]
        for booking_id, state, email in (("confirmedbooking0000000000000001", "BOOKING_CONFIRMED", "old@example.com"),
                                         ("schedulingbooking000000000000001", "CALENDLY_SCHEDULING", "typed@example.org")):
            db.execute_sql(
                "INSERT INTO booking (id, session_type_id, state, version, email, name, amount, currency, amount_due,"
                " amount_paid, amount_refunded, payment_attempt, check_attempts, recovery_attempts, state_changed_at,"
                f" created_at, updated_at) VALUES ({mark}, {mark}, {mark}, 3, {mark}, 'Old Client', 4200, 'eur', 4200,"
                f" 0, 0, 1, 0, 0, {mark}, {mark}, {mark})", (booking_id, type_id, state, email, NOW, NOW, NOW))
            db.execute_sql("INSERT INTO transition (booking_id, from_state, state, trigger, cause, at) VALUES"
                           f" ({mark}, NULL, {mark}, 'old', 'old', {mark})", (booking_id, state, NOW))
    finally:
        db.close()

    assert "applying 7" in cli(database_url, "db", "upgrade").stdout
    assert "already up to date" in cli(database_url, "db", "upgrade").stdout
    db = connect(database_url)
    try:
        invitees = dict(db.execute_sql("SELECT id, invitee_email FROM booking").fetchall())
        # Past Calendly's confirmation, the booking's address was Calendly's invitee's: it keeps its e-mails.
        assert invitees == {"confirmedbooking0000000000000001": "old@example.com",
                            "schedulingbooking000000000000001": None}
        db.execute_sql("INSERT INTO outbox (key, kind, recipient, subject, body, created_at, attempts, withheld_at,"
                       f" withheld_reason) VALUES ('held-mail', 'cancelled', 'x,victim@example.org', 'Cancelled',"
                       f" 'Hello,', {mark}, 0, {mark}, 'recipient refused: a list')", (NOW, NOW))
    finally:
        db.close()

    assert "rolling back 7" in cli(database_url, "db", "downgrade", "--to", "5").stdout
    db = connect(database_url)
    try:
        sent_at, last_error = db.execute_sql("SELECT sent_at, last_error FROM outbox WHERE key = 'held-mail'").fetchone()
    finally:
        db.close()
    # The previous release sends what it finds unsent: the withheld e-mail must not look unsent to it.
    assert sent_at is not None and last_error == "withheld, never sent: recipient refused: a list"
    assert "applying 7" in cli(database_url, "db", "upgrade").stdout


def test_migration_10_adds_pricing_that_the_previous_release_can_still_write_beside(database_url):
    cli(database_url, "db", "upgrade")
    cli(database_url, "db", "downgrade", "--to", "9")
    mark = "%s" if "postgres" in database_url else "?"

    def previous_release_writes(slug: str, session_id: str) -> None:
        """A session type, a booking and its paid payment, with only the columns version 9 has."""
        db = connect(database_url)
        try:
            db.execute_sql(
                "INSERT INTO session_type (slug, name, duration_minutes, price, currency, calendly_event_type,"
                f" scheduling_url, active, collect_payment, created_at, updated_at) VALUES ({mark}, 'Old', 30, 4200,"
                f" 'eur', 'https://api.calendly.com/event_types/OLD', 'https://calendly.com/old', {mark}, {mark},"
                f" {mark}, {mark})", (slug, True, True, NOW, NOW))
            type_id = db.execute_sql(f"SELECT id FROM session_type WHERE slug = {mark}", (slug,)).fetchone()[0]
            booking_id = f"previousrelease{slug}".ljust(32, "0")
            db.execute_sql(
                "INSERT INTO booking (id, session_type_id, state, version, email, name, amount, currency, amount_due,"
                " amount_paid, amount_refunded, payment_attempt, check_attempts, recovery_attempts, state_changed_at,"
                f" created_at, updated_at) VALUES ({mark}, {mark}, 'BOOKING_CONFIRMED', 3, 'old@example.com', 'Old',"
                f" 4200, 'eur', 4200, 4200, 0, 1, 0, 0, {mark}, {mark}, {mark})", (booking_id, type_id, NOW, NOW, NOW))
            db.execute_sql(
                "INSERT INTO payment (booking_id, attempt, checkout_session_id, amount, currency, status,"
                f" payment_intent_id, created_at, updated_at) VALUES ({mark}, 1, {mark}, 4200, 'eur', 'paid',"
                f" 'pi_old', {mark}, {mark})", (booking_id, session_id, NOW, NOW))
        finally:
            db.close()

    def pricing_of(slug: str) -> tuple:
        db = connect(database_url)
        try:
            return db.execute_sql(
                "SELECT t.promotion_codes, t.automatic_tax, t.invoice, t.prices, p.amount_subtotal, p.amount_discount,"
                " p.amount_tax FROM session_type t JOIN booking b ON b.session_type_id = t.id JOIN payment p ON"
                f" p.booking_id = b.id WHERE t.slug = {mark}", (slug,)).fetchone()
        finally:
            db.close()

    previous_release_writes("before", "cs_old_before")
    assert "applying 10" in cli(database_url, "db", "upgrade").stdout
    # Paid before discounts and tax existed: its subtotal is what it charged.
    assert tuple(pricing_of("before")) in ((False, False, False, None, 4200, 0, 0), (0, 0, 0, None, 4200, 0, 0))
    # The previous release, still running during the deploy, inserts without the new columns.
    previous_release_writes("during", "cs_old_during")
    assert tuple(pricing_of("during")) in ((False, False, False, None, None, 0, 0), (0, 0, 0, None, None, 0, 0))
    out = cli(database_url, "db", "downgrade", "--to", "9").stdout
    assert "rolling back 10" in out
    assert "prices" not in {name for name, _ in schema(database_url)["session_type"]}
    assert "receipt_url" not in {name for name, _ in schema(database_url)["payment"]}


CONSOLE_TABLES = {"console_user", "console_session", "sign_in_attempt", "audit_entry"}


def test_migration_11_adds_the_consoles_tables_and_rolls_back_to_the_previous_schema_untouched(database_url):
    cli(database_url, "db", "upgrade")
    upgraded = schema(database_url)
    assert CONSOLE_TABLES <= set(upgraded)
    assert "rolling back 11" in cli(database_url, "db", "downgrade", "--to", "10").stdout
    previous = schema(database_url)
    assert not CONSOLE_TABLES & set(previous)
    assert previous == {table: columns for table, columns in upgraded.items() if table not in CONSOLE_TABLES}
    cli(database_url, "db", "upgrade")
    assert schema(database_url) == upgraded
