"""The client's e-mail and name at rest (DATA_ENCRYPTION_KEY): encrypted when a key is set, readable
when written before one was, re-encrypted by `bookingflow data rotate-key`, found by a keyed hash with
`bookings list --email`; a malformed key stops the process; migration 4 up and back down on SQLite and
PostgreSQL.

In-process, the app runs with a key by `settings.configure(...)`; the CLI, a real process, takes it from
the environment. Assertions on what is stored read the columns as they are, without the model.
"""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet, InvalidToken
from playhouse.db_url import connect

from bookingflow import crypto
from bookingflow import settings as settings_module
from support.waiting import wait_until
from support.flows import confirmed_booking
from models.db import database
from models.migrations import EMAIL_HASH_INDEX, MIGRATIONS
from support.realstack import base_environment, run_cli
from support.cli import cli_on as migration_cli
from support.cli import suite_cli
from support.mail import drain

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


@pytest.fixture
def use_keys(app):
    """Switch the in-process app (web and workers) to these keys; the settings come back after the test."""
    original = settings_module.get()

    def use(*keys: str) -> None:
        settings_module.configure(settings_module.get().replace(data_encryption_keys=tuple(keys)))

    yield use
    settings_module.configure(original)


def stored(booking_id: str) -> tuple[str, str, str | None]:
    """(email, name, email_hash) as the booking row holds them."""
    row = database.execute_sql(f"SELECT email, name, email_hash FROM booking WHERE id = {database.param}",
                               (booking_id,)).fetchone()
    return tuple(row)


def opened(value: str, key: str) -> str:
    assert value.startswith("enc1:"), "stored in the clear"
    return Fernet(key.encode()).decrypt(value[len("enc1:"):].encode()).decode()


def listed(result) -> list[str]:
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def create(client, email: str, name: str = "Ada Lovelace") -> str:
    response = client.post("/v1/bookings", json={"session_type": "coaching-hour", "email": email, "name": name})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


# --- the service with a key ----------------------------------------------------------------------

def test_with_a_key_the_email_and_name_are_stored_encrypted_and_the_client_still_gets_the_emails(
        use_keys, mailbox, frontend, broker):  # noqa: F811
    use_keys(KEY_A)
    view = confirmed_booking(frontend, "short-call")  # ada@example.com, Ada Lovelace

    email, name, email_hash = stored(view["id"])
    assert "@" not in email and " " not in name  # neither is in the clear: base64 has no @ and no space
    assert (opened(email, KEY_A), opened(name, KEY_A)) == ("ada@example.com", "Ada Lovelace")
    # A keyed digest, nothing of the address in it (a substring check would trip on hex like "ada").
    assert email_hash == crypto.email_hash("ADA@example.com ", (KEY_A,)) and set(email_hash) <= set("0123456789abcdef")
    assert frontend.status(view["id"])["email"] == "a***@example.com"
    mailbox.wait_for(1)
    drain(broker)
    (mail,) = mailbox.mails
    assert mail.recipients == ("ada@example.com",) and mail.message["To"] == "ada@example.com"
    assert "Hello Ada Lovelace," in mail.body
    # The outbox keeps the address and the text (the name is in it) encrypted too.
    (recipient, body), = database.execute_sql(
        f"SELECT recipient, body FROM outbox WHERE booking_id = {database.param}", (view["id"],)).fetchall()
    assert "@" not in recipient and "Ada" not in body
    assert (opened(recipient, KEY_A), "Hello Ada Lovelace," in opened(body, KEY_A)) == ("ada@example.com", True)


def test_with_a_key_stored_deliveries_are_encrypted_still_processed_and_rotated(use_keys, frontend, broker):
    use_keys(KEY_A)
    view = confirmed_booking(frontend, "short-call")  # through Calendly's and Stripe's signed deliveries

    def deliveries() -> dict[str, list[str]]:
        rows = database.execute_sql(f"SELECT provider, payload FROM provider_event WHERE booking_id = {database.param} "
                                    f"AND provider <> 'client'", (view["id"],)).fetchall()
        found: dict[str, list[str]] = {}
        for provider, payload in rows:
            found.setdefault(provider, []).append(payload)
        return found

    def from_both() -> dict[str, list[str]] | None:
        found = deliveries()
        return found if set(found) == {"calendly", "stripe"} else None

    # A delivery names its booking once processed, which may finish just after the booking moved.
    stored_now = wait_until(from_both, message="both providers' deliveries processed")
    invitees = [json.loads(opened(payload, KEY_A)) for payload in stored_now["calendly"]]
    assert any(body["payload"]["email"] == "ada@example.com" for body in invitees)
    assert not any("@" in payload for payloads in stored_now.values() for payload in payloads)

    use_keys(KEY_B, KEY_A)
    result = suite_cli("data", "rotate-key", keys=(KEY_B, KEY_A))
    assert "stored deliveries encrypted with the first key" in result.stdout
    rotated = [payload for payloads in deliveries().values() for payload in payloads]
    assert len(rotated) >= sum(map(len, stored_now.values()))
    assert all(isinstance(json.loads(opened(payload, KEY_B)), dict) for payload in rotated)


def test_a_booking_written_before_a_key_was_set_stays_readable_and_goes_through(use_keys, mailbox, frontend, broker):  # noqa: F811
    created = frontend.create_booking("short-call", email="early@example.com", name="Early Bird")
    assert stored(created["id"]) == ("early@example.com", "Early Bird", None)

    use_keys(KEY_A)
    assert frontend.status(created["id"])["email"] == "e***@example.com"
    slot = frontend.schedule_in_calendly(created["scheduling_url"])
    assert frontend.report_scheduled(created["id"], slot).status_code == 202
    view = frontend.wait_for_state(created["id"], "PAYMENT_PROCESSING")
    frontend.pay(view["checkout_url"])
    frontend.wait_for_state(created["id"], "BOOKING_CONFIRMED")
    mailbox.wait_for(1)
    drain(broker)
    (mail,) = mailbox.mails
    assert mail.recipients == ("early@example.com",) and "Hello Early Bird," in mail.body


def test_the_invitee_calendly_reported_is_encrypted_too_and_rotation_covers_it_and_the_outbox_hash(
        use_keys, mailbox, frontend, broker):  # noqa: F811
    use_keys(KEY_A)
    view = confirmed_booking(frontend, "short-call")  # Calendly's invitee: ada@example.com, Ada Lovelace
    mailbox.wait_for(1)
    drain(broker)

    def invitee() -> tuple[str, str]:
        return tuple(database.execute_sql(f"SELECT invitee_email, invitee_name FROM booking WHERE id = {database.param}",
                                          (view["id"],)).fetchone())

    def recipient_hash() -> str:
        return database.execute_sql(f"SELECT recipient_hash FROM outbox WHERE booking_id = {database.param}",
                                    (view["id"],)).fetchone()[0]

    email, name = invitee()
    assert (opened(email, KEY_A), opened(name, KEY_A)) == ("ada@example.com", "Ada Lovelace")
    assert recipient_hash() == crypto.email_hash("ada@example.com", (KEY_A,))

    use_keys(KEY_B, KEY_A)
    suite_cli("data", "rotate-key", keys=(KEY_B, KEY_A))
    email, name = invitee()
    assert (opened(email, KEY_B), opened(name, KEY_B)) == ("ada@example.com", "Ada Lovelace")
    assert recipient_hash() == crypto.email_hash("ada@example.com", (KEY_B,))


def test_plaintext_that_looks_like_ciphertext_is_kept_as_written_without_a_key(client, session_type):
    booking_id = create(client, "enc1:ada@example.com", name="enc1:gAAAAA")
    assert client.get(f"/v1/bookings/{booking_id}").get_json()["email"] == "e***@example.com"
    assert [booking_id] == listed(suite_cli("bookings", "list", "--email", "ENC1:ada@example.com"))


# --- rotation and lookup -------------------------------------------------------------------------

def test_rotation_re_encrypts_every_booking_with_the_new_key_and_the_old_one_can_go(use_keys, client, session_type):
    legacy = create(client, "Legacy@Example.com", name="Legacy Client")  # before any key
    use_keys(KEY_A)
    ada, grace = create(client, "ada@example.com"), create(client, "grace@example.org", name="Grace Hopper")

    # The new key first, the old one still listed: everything reads, lookups still find A's hashes.
    use_keys(KEY_B, KEY_A)
    assert client.get(f"/v1/bookings/{ada}").get_json()["email"] == "a***@example.com"
    assert listed(suite_cli("bookings", "list", "--email", "ada@example.com", keys=(KEY_B, KEY_A))) == [ada]

    result = suite_cli("data", "rotate-key", "--batch-size", "2", keys=(KEY_B, KEY_A))
    assert [line for line in result.stdout.splitlines() if line.startswith("rotated")] == ["rotated 2/3", "rotated 3/3"]

    for booking_id, email, name in ((legacy, "Legacy@Example.com", "Legacy Client"),
                                    (ada, "ada@example.com", "Ada Lovelace"),
                                    (grace, "grace@example.org", "Grace Hopper")):
        stored_email, stored_name, email_hash = stored(booking_id)
        assert (opened(stored_email, KEY_B), opened(stored_name, KEY_B)) == (email, name)
        with pytest.raises(InvalidToken):
            opened(stored_email, KEY_A)
        assert email_hash == crypto.email_hash(email, (KEY_B,))

    use_keys(KEY_B)  # the old key dropped
    assert [client.get(f"/v1/bookings/{b}").get_json()["email"] for b in (legacy, ada, grace)] == [
        "L***@Example.com", "a***@example.com", "g***@example.org"]
    assert listed(suite_cli("bookings", "list", "--email", " legacy@EXAMPLE.com", keys=(KEY_B,))) == [legacy]
    assert listed(suite_cli("bookings", "list", "--email", "grace@example.org", keys=(KEY_B,))) == [grace]
    shown = suite_cli("bookings", "show", ada, keys=(KEY_B,)).stdout
    assert "client a***@example.com" in shown


def test_rotate_key_refuses_without_a_key_in_one_line(client, session_type):
    booking_id = create(client, "ada@example.com")
    result = suite_cli("data", "rotate-key", check=False)
    assert result.returncode != 0
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "DATA_ENCRYPTION_KEY is not set" in line and "Traceback" not in result.stderr
    assert stored(booking_id)[0] == "ada@example.com"


def test_bookings_list_by_email_finds_by_the_hash_and_by_the_plaintext_of_older_rows(use_keys, client, session_type):
    older = create(client, "ada@example.com")  # no key: plaintext, no hash
    use_keys(KEY_A)
    newer = create(client, "Ada@Example.com ")  # the same client: the hash is of the normalized address
    other = create(client, "grace@example.org")
    assert stored(newer)[2] == crypto.email_hash("ada@example.com", (KEY_A,)) != stored(other)[2]

    found = suite_cli("bookings", "list", "--email", "ADA@example.com", keys=(KEY_A,))
    assert listed(found) == [newer, older]  # newest first
    assert "ada@example.com" not in found.stdout.lower()  # still masked
    assert listed(suite_cli("bookings", "list", "--email", "nobody@example.com", keys=(KEY_A,))) == []
    # Without a key only the plaintext row can be compared.
    assert listed(suite_cli("bookings", "list", "--email", "ada@example.com")) == [older]
    assert other not in listed(suite_cli("bookings", "list", "--email", "ada@example.com", keys=(KEY_A,)))


# --- the setting ---------------------------------------------------------------------------------

def test_keys_are_read_in_order_and_kept_out_of_the_repr():
    loaded = settings_module.load({"DATA_ENCRYPTION_KEY": f" {KEY_B} ,{KEY_A},"})
    assert loaded.data_encryption_keys == (KEY_B, KEY_A)
    assert KEY_A not in repr(loaded) and KEY_B not in repr(loaded)
    assert settings_module.load({}).data_encryption_keys == ()


@pytest.mark.parametrize("value", ["not-a-key", f"{KEY_A},{KEY_B[:-4]}", KEY_A.rstrip("=") + "!"])
@pytest.mark.parametrize("command", [("db", "upgrade"), ("data", "rotate-key"), ("scheduler",)], ids=" ".join)
def test_a_malformed_key_stops_the_process_at_start_with_one_line_naming_it(tmp_path, command, value):
    from support.suite import service_environment

    database_file = tmp_path / "never.db"
    env = {**base_environment(), **service_environment("http://127.0.0.1:9", f"sqlite:///{database_file}",
                                                        "redis://127.0.0.1:9/0"), "DATA_ENCRYPTION_KEY": value}
    result = run_cli(env, *command, check=False)
    assert result.returncode != 0
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "DATA_ENCRYPTION_KEY" in line and "Traceback" not in result.stderr
    assert all(part not in result.stdout + result.stderr for part in value.split(",") if len(part) > 8)
    assert not database_file.exists()


# --- migration 4 ---------------------------------------------------------------------------------

def booking_columns(url: str) -> dict[str, tuple[str, bool]]:
    db = connect(url)
    try:
        return {c.name: (c.data_type.lower(), c.null) for c in db.get_columns("booking")}
    finally:
        db.close()


def booking_indexes(url: str) -> set[str]:
    db = connect(url)
    try:
        return {index.name for index in db.get_indexes("booking")}
    finally:
        db.close()


def raw_booking(url: str, booking_id: str) -> tuple:
    db = connect(url)
    try:
        return tuple(db.execute_sql(f"SELECT email, name FROM booking WHERE id = {db.param}", (booking_id,)).fetchone())
    finally:
        db.close()


def insert_booking(url: str, tmp_path, booking_id: str, email: str, name: str) -> None:
    """A booking as the previous release wrote it: plaintext, no hash (the columns every version has),
    of a session type written the same way (today's import writes columns that version lacks)."""
    db = connect(url)
    mark = db.param
    try:
        db.execute_sql(
            "INSERT INTO session_type (slug, name, duration_minutes, price, currency, calendly_event_type, scheduling_url,"
            f" active, collect_payment, created_at, updated_at) VALUES ('old-type', 'Old type', 30, 4200, 'eur',"
            f" 'https://api.calendly.com/event_types/OLD', 'https://calendly.com/old', {mark}, {mark}, {mark}, {mark})",
            (True, True, "2026-11-01 12:00:00", "2026-11-01 12:00:00"))
        type_id = db.execute_sql("SELECT id FROM session_type WHERE slug = 'old-type'").fetchone()[0]
        db.execute_sql(
            "INSERT INTO booking (id, session_type_id, state, version, email, name, amount, currency, amount_due,"
            " amount_paid, amount_refunded, payment_attempt, check_attempts, recovery_attempts, state_changed_at,"
            f" created_at, updated_at) VALUES ({mark}, {mark}, 'BOOKING_CONFIRMED', 3, {mark}, {mark}, 4200, 'eur',"
            f" 4200, 4200, 0, 1, 0, 0, {mark}, {mark}, {mark})",
            (booking_id, type_id, email, name, "2026-11-01 12:00:00", "2026-11-01 12:00:00", "2026-11-01 12:00:00"))
    finally:
        db.close()


def key_cli(url: str, *args: str, keys: tuple[str, ...] = (KEY_A,)):
    return run_cli({**base_environment(), "DATABASE_URL": url, "DATA_ENCRYPTION_KEY": ",".join(keys)}, *args)


def test_migration_4_widens_the_columns_adds_the_hash_and_rolls_back_keeping_rows_encrypted(database_url, tmp_path):  # noqa: F811
    migration_cli(database_url, "db", "upgrade")
    migration_cli(database_url, "db", "downgrade", "--to", "3")
    previous = booking_columns(database_url)
    assert "email_hash" not in previous and previous["email"][0] != "text" and previous["name"][0] != "text"
    insert_booking(database_url, tmp_path, "previousreleasebooking0000000001", "Old@Example.com", "Old Client")

    out = migration_cli(database_url, "db", "upgrade").stdout
    assert "applying 4" in out and f"schema at version {MIGRATIONS[-1].version}" in out
    upgraded = booking_columns(database_url)
    assert upgraded["email"] == ("text", False) and upgraded["name"] == ("text", False)
    assert upgraded["email_hash"][1] is True and EMAIL_HASH_INDEX in booking_indexes(database_url)
    assert "already up to date" in migration_cli(database_url, "db", "upgrade").stdout

    # The row of the previous release: readable without a key, found by its plaintext with one.
    assert raw_booking(database_url, "previousreleasebooking0000000001") == ("Old@Example.com", "Old Client")
    assert listed(migration_cli(database_url, "bookings", "list", "--email", "old@example.com")) == [
        "previousreleasebooking0000000001"]
    assert listed(key_cli(database_url, "bookings", "list", "--email", "old@example.com")) == [
        "previousreleasebooking0000000001"]
    assert "rotated 1/1" in key_cli(database_url, "data", "rotate-key").stdout
    email, name = raw_booking(database_url, "previousreleasebooking0000000001")
    assert (opened(email, KEY_A), opened(name, KEY_A)) == ("Old@Example.com", "Old Client")

    out = migration_cli(database_url, "db", "downgrade", "--to", "3").stdout
    assert "rolling back 4" in out and "schema at version 3" in out
    assert booking_columns(database_url) == previous
    assert EMAIL_HASH_INDEX not in booking_indexes(database_url)
    assert raw_booking(database_url, "previousreleasebooking0000000001") == (email, name)  # still encrypted

    assert "applying 4" in migration_cli(database_url, "db", "upgrade").stdout
    assert booking_columns(database_url) == upgraded
    shown = key_cli(database_url, "bookings", "show", "previousreleasebooking0000000001").stdout
    assert "client O***@Example.com" in shown
    assert "rotated 1/1" in key_cli(database_url, "data", "rotate-key").stdout  # fills the hash dropped by the rollback
    assert listed(key_cli(database_url, "bookings", "list", "--email", "OLD@example.com")) == [
        "previousreleasebooking0000000001"]


def test_rolling_back_4_on_postgresql_refuses_when_a_ciphertext_would_not_fit_the_old_column(database_url, tmp_path):  # noqa: F811
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite does not enforce VARCHAR widths: the rollback always fits")
    migration_cli(database_url, "db", "upgrade")
    insert_booking(database_url, tmp_path, "longnamebooking00000000000000001", "long@example.com", "N" * 200)
    key_cli(database_url, "data", "rotate-key")  # a 200-character name encrypts to far more than 200

    result = run_cli({**base_environment(), "DATABASE_URL": database_url}, "db", "downgrade", "--to", "3", check=False)
    assert result.returncode != 0
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "cannot roll back 4" in line and "name" in line
    assert booking_columns(database_url)["email_hash"][1] is True  # nothing was rolled back
    assert f"schema at version {MIGRATIONS[-1].version}" in migration_cli(database_url, "db", "upgrade").stdout


def outbox_recipient_type(url: str) -> str:
    db = connect(url)
    try:
        return next(c.data_type.lower() for c in db.get_columns("outbox") if c.name == "recipient")
    finally:
        db.close()


def test_migration_5_widens_the_outbox_recipient_and_rotation_encrypts_the_emails_already_there(database_url, tmp_path):  # noqa: F811
    migration_cli(database_url, "db", "upgrade")
    out = migration_cli(database_url, "db", "downgrade", "--to", "4").stdout
    assert "rolling back 5" in out and "schema at version 4" in out
    assert outbox_recipient_type(database_url) != "text"
    db = connect(database_url)
    try:  # an e-mail written by the previous release, in the clear
        db.execute_sql("INSERT INTO outbox (key, kind, recipient, subject, body, created_at, attempts) VALUES "
                       "('previous-release-mail', 'confirmed', 'old@example.com', 'Confirmed', 'Hello Old Client,', "
                       "CURRENT_TIMESTAMP, 0)")
    finally:
        db.close()

    assert "applying 5" in migration_cli(database_url, "db", "upgrade").stdout
    assert outbox_recipient_type(database_url) == "text"
    assert "1 e-mail(s) in the outbox" in key_cli(database_url, "data", "rotate-key").stdout
    db = connect(database_url)
    try:
        recipient, body = db.execute_sql("SELECT recipient, body FROM outbox WHERE key = 'previous-release-mail'").fetchone()
    finally:
        db.close()
    assert (opened(recipient, KEY_A), opened(body, KEY_A)) == ("old@example.com", "Hello Old Client,")
