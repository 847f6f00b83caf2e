"""The `bookingflow` command, run as a real process against its own SQLite file.

The suite's database is bound inside this process, so the CLI's database is read and seeded with the
stdlib sqlite3 module, mirroring the columns of models/tables.py.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from support.cli import first_column

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("bookingflow")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "ops.cli"]

POLICY = {"full_before_hours": 48, "partial_before_hours": 24, "partial_percent": 50}


def session_type(slug: str, **changes) -> dict:
    return {
        "slug": slug, "name": slug.replace("-", " ").title(), "duration_minutes": 60, "price": 12000,
        "currency": "usd", "calendly_event_type": f"https://api.calendly.com/event_types/{slug}",
        "scheduling_url": f"https://calendly.com/acme/{slug}", **changes,
    }


class Cli:
    def __init__(self, directory: Path):
        self.directory = directory
        self.database = directory / "cli.db"

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
        env.update(PYTHONPATH=str(ROOT), DATABASE_URL=f"sqlite:///{self.database}")
        return subprocess.run([*COMMAND, *args], cwd=self.directory, env=env, capture_output=True, text=True,
                              timeout=120)

    def write(self, name: str, content) -> str:
        path = self.directory / name
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
        return str(path)

    def import_types(self, items) -> subprocess.CompletedProcess:
        return self("session-types", "import", self.write("types.json", items))

    def rows(self, sql: str, *params) -> list[sqlite3.Row]:
        with closing(sqlite3.connect(self.database)) as connection:
            connection.row_factory = sqlite3.Row
            return connection.execute(sql, params).fetchall()

    def session_types(self) -> dict[str, dict]:
        return {row["slug"]: dict(row) for row in self.rows("SELECT * FROM session_type ORDER BY id")}


@pytest.fixture
def cli(tmp_path) -> Cli:
    runner = Cli(tmp_path)
    upgraded = runner("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    return runner


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


# --- db upgrade -----------------------------------------------------------------------------------

def test_db_upgrade_creates_the_schema_and_is_safe_to_run_again(tmp_path):
    cli = Cli(tmp_path)

    first = cli("db", "upgrade")
    second = cli("db", "upgrade")

    assert first.returncode == 0, first.stderr
    tables = {row["name"] for row in cli.rows("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"session_type", "booking", "transition", "provider_event", "schema_version"} <= tables
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout
    from models.migrations import MIGRATIONS

    versions = [row["version"] for row in cli.rows("SELECT version FROM schema_version ORDER BY version")]
    assert versions == [migration.version for migration in MIGRATIONS]  # each applied once


def test_db_upgrade_keeps_the_data_already_there(cli):
    cli.import_types([session_type("coaching-hour")])

    assert cli("db", "upgrade").returncode == 0
    assert list(cli.session_types()) == ["coaching-hour"]


# --- session-types import -------------------------------------------------------------------------

def test_import_creates_session_types_with_the_contract_fields(cli):
    result = cli.import_types([
        session_type("coaching-hour", currency="USD", refund_policy=POLICY),
        session_type("intro-call", name="Intro call", duration_minutes=30, price=0),
    ])

    assert result.returncode == 0, result.stderr
    assert "2 created, 0 updated" in result.stdout
    rows = cli.session_types()
    assert list(rows) == ["coaching-hour", "intro-call"]
    coaching = rows["coaching-hour"]
    assert (coaching["name"], coaching["duration_minutes"], coaching["price"], coaching["currency"]) == (
        "Coaching Hour", 60, 12000, "usd")
    assert coaching["calendly_event_type"] == "https://api.calendly.com/event_types/coaching-hour"
    assert coaching["scheduling_url"] == "https://calendly.com/acme/coaching-hour"
    assert json.loads(coaching["refund_policy"]) == POLICY
    assert rows["intro-call"]["refund_policy"] is None
    assert (rows["intro-call"]["duration_minutes"], rows["intro-call"]["price"]) == (30, 0)


def test_reimport_updates_by_slug_and_never_duplicates(cli):
    cli.import_types([session_type("coaching-hour"), session_type("intro-call")])
    before = cli.session_types()

    result = cli.import_types([
        session_type("coaching-hour", name="Coaching, one hour", price=15000, refund_policy=POLICY),
        session_type("intro-call"),
        session_type("deep-dive", duration_minutes=120),
    ])

    assert result.returncode == 0, result.stderr
    assert "1 created, 2 updated" in result.stdout
    after = cli.session_types()
    assert list(after) == ["coaching-hour", "intro-call", "deep-dive"]
    assert after["coaching-hour"]["id"] == before["coaching-hour"]["id"]
    assert (after["coaching-hour"]["name"], after["coaching-hour"]["price"]) == ("Coaching, one hour", 15000)
    assert json.loads(after["coaching-hour"]["refund_policy"]) == POLICY
    assert cli.rows("SELECT COUNT(*) AS n FROM session_type")[0]["n"] == 3


@pytest.mark.parametrize(("bad_item", "named"), [
    (session_type("bad-price", price="12.50"), "price"),
    (session_type("float-price", price=12.5), "price"),
    ({key: value for key, value in session_type("no-slug").items() if key != "slug"}, "slug"),
    (session_type("bad-currency", currency="dollars"), "currency"),
    (session_type("bad-policy", refund_policy={**POLICY, "fee_percent": 10}), "refund_policy"),
    (session_type("greedy-policy", refund_policy={"partial_percent": 150}), "partial_percent"),
    (session_type("no-duration", duration_minutes=0), "duration_minutes"),
    (session_type("bad-link", scheduling_url="calendly.com/acme/x"), "scheduling_url"),
    (session_type("coaching-hour", name="Duplicate"), "coaching-hour"),
], ids=["price-as-string", "price-as-float", "missing-slug", "bad-currency", "unknown-policy-key",
        "percent-over-100", "zero-duration", "relative-url", "duplicate-slug"])
def test_a_file_with_one_bad_item_is_refused_whole_and_changes_nothing(cli, bad_item, named):
    cli.import_types([session_type("coaching-hour", refund_policy=POLICY)])
    before = cli.session_types()

    result = cli.import_types([
        session_type("coaching-hour", name="Renamed", price=99),
        session_type("brand-new"),
        bad_item,
    ])

    assert named in one_error_line(result)
    assert cli.session_types() == before


def test_a_missing_file_is_a_clear_error(cli):
    result = cli("session-types", "import", str(cli.directory / "nowhere.json"))

    line = one_error_line(result)
    assert "nowhere.json" in line
    assert "cannot read" in line
    assert cli.session_types() == {}


@pytest.mark.parametrize(("content", "says"), [
    ("slug,name\ncoaching-hour,Coaching\n", "not JSON"),
    (json.dumps({"slug": "coaching-hour"}), "list"),
], ids=["csv", "object-not-list"])
def test_a_file_that_is_not_a_json_list_is_a_clear_error(cli, content, says):
    result = cli("session-types", "import", cli.write("types.csv", content))

    line = one_error_line(result)
    assert "types.csv" in line
    assert says in line
    assert cli.session_types() == {}


# --- bookings list / show -------------------------------------------------------------------------

HISTORY = [
    (None, "CALENDLY_SCHEDULING", "startCalendlyScheduling", None, "2024-05-01 10:00:00"),
    ("CALENDLY_SCHEDULING", "CALENDLY_SCHEDULED", "onCalendlyEventCreated", "client-report", "2024-05-01 10:04:00"),
    ("CALENDLY_SCHEDULED", "CALENDLY_WEBHOOK_RECEIVED", "onCalendlyWebhookReceived", "evt_cal_1",
     "2024-05-01 10:04:02"),
]


def insert(connection: sqlite3.Connection, table: str, **values) -> None:
    """Insert a row as the models would write it. NOT NULL integer columns left out (counters and
    amounts whose default of 0 lives in the model, not in the DDL) get 0."""
    for _, column, kind, not_null, default, primary_key in connection.execute(f'PRAGMA table_info("{table}")'):
        if not_null and default is None and not primary_key and kind == "INTEGER":
            values.setdefault(column, 0)
    columns = ", ".join(f'"{column}"' for column in values)
    connection.execute(f'INSERT INTO "{table}" ({columns}) VALUES ({", ".join("?" for _ in values)})',
                       tuple(values.values()))


def insert_booking(cli: Cli, booking_id: str, state: str, email: str, created_at: str, history=()) -> None:
    [type_row] = cli.rows("SELECT id, price, currency FROM session_type WHERE slug = 'coaching-hour'")
    with closing(sqlite3.connect(cli.database)) as connection, connection:
        insert(connection, "booking", id=booking_id, session_type_id=type_row["id"], state=state, version=1,
               email=email, name="Ada Lovelace", amount=type_row["price"], currency=type_row["currency"],
               calendly_event_uri="https://api.calendly.com/scheduled_events/ev_1",
               state_changed_at=created_at, created_at=created_at, updated_at=created_at)
        for from_state, to_state, trigger, cause, at in history:
            insert(connection, "transition", booking_id=booking_id, from_state=from_state, state=to_state,
                   trigger=trigger, cause=cause, at=at)


@pytest.fixture
def bookings(cli) -> Cli:
    assert cli.import_types([session_type("coaching-hour")]).returncode == 0
    insert_booking(cli, "bk_older", "CALENDLY_WEBHOOK_RECEIVED", "ada@example.com", "2024-05-01 10:00:00", HISTORY)
    insert_booking(cli, "bk_newer", "PAYMENT_PENDING", "grace@example.org", "2024-05-02 08:00:00")
    return cli


def test_bookings_list_shows_every_booking_newest_first_under_a_header_with_masked_emails(bookings):
    result = bookings("bookings", "list")

    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["ID", "STATE", "AMOUNT", "SINCE", "CLIENT", "FLAGGED"]
    assert first_column(result.stdout) == ["bk_newer", "bk_older"]
    assert "PAYMENT_PENDING" in lines[0] and "g***@example.org" in lines[0]
    assert "CALENDLY_WEBHOOK_RECEIVED" in lines[1] and "a***@example.com" in lines[1]
    assert "ada@example.com" not in result.stdout


def test_bookings_list_filters_by_state(bookings):
    result = bookings("bookings", "list", "--state", "payment_pending")

    assert result.returncode == 0, result.stderr
    assert first_column(result.stdout) == ["bk_newer"]


def test_a_list_with_nothing_to_show_says_so(bookings):
    assert bookings("bookings", "list", "--state", "IDLE").stdout == "no bookings\n"
    assert bookings("bookings", "list", "--flagged").stdout == "no bookings\n"
    assert bookings("events", "list").stdout == "no events\n"
    assert bookings("outbox", "list").stdout == "no e-mails\n"


def test_bookings_list_with_an_unknown_state_says_so(bookings):
    result = bookings("bookings", "list", "--state", "PAID")

    assert result.returncode != 0
    assert "unknown state" in result.stdout and "PAID" in result.stdout


def test_bookings_show_prints_the_booking_and_its_history_in_order(bookings):
    result = bookings("bookings", "show", "bk_older")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0].startswith("booking bk_older: CALENDLY_WEBHOOK_RECEIVED")
    assert "coaching-hour" in out and "$120.00" in out
    assert "a***@example.com" in out and "ada@example.com" not in out
    assert "https://api.calendly.com/scheduled_events/ev_1" in out
    after_heading = out.split("\nhistory:\n", 1)[1].splitlines()
    history = list(itertools.takewhile(lambda line: line.startswith("  "), after_heading))
    assert [line.split() for line in history] == [
        f"{at}Z {from_state or '-'} -> {state} {trigger} ({cause or '-'})".split()
        for from_state, state, trigger, cause, at in HISTORY
    ]


def test_bookings_show_of_an_unknown_id_exits_1_with_a_clear_line(bookings):
    result = bookings("bookings", "show", "bk_unknown")

    assert result.returncode == 1
    assert one_error_line(result) == "no booking bk_unknown"


def test_bookings_show_prints_the_refund_policy_frozen_when_the_client_paid(bookings):
    policy = {"full_before_hours": 48, "partial_before_hours": 24, "partial_percent": 50}
    with closing(sqlite3.connect(bookings.database)) as connection, connection:
        connection.execute("UPDATE booking SET refund_policy = ?, refund_policy_frozen_at = ? WHERE id = 'bk_older'",
                           (json.dumps(policy), "2024-05-01 10:05:00"))
    frozen = bookings("bookings", "show", "bk_older").stdout
    assert f"refund policy {json.dumps(policy, sort_keys=True)}, frozen 2024-05-01 10:05:00Z" in frozen
    unpaid = bookings("bookings", "show", "bk_newer").stdout
    assert "refund policy none (full refund), the session type's current one (not yet paid)" in unpaid


# --- lists for a terminal -------------------------------------------------------------------------

def test_bookings_list_prints_money_for_people(bookings):
    from bookingflow.providers.stripe_amounts import display

    [line] = [line for line in bookings("bookings", "list").stdout.splitlines() if line.startswith("bk_newer")]
    assert display(12000, "usd") in line and "12000" not in line


def test_a_long_list_read_by_head_ends_without_a_broken_pipe(bookings):
    [type_row] = bookings.rows("SELECT id FROM session_type")
    with closing(sqlite3.connect(bookings.database)) as connection, connection:
        for number in range(3000):  # far more than a pipe's buffer holds
            insert(connection, "booking", id=f"bk_many_{number:05d}", session_type_id=type_row["id"],
                   state="IDLE", version=1, email="ada@example.com", name="Ada", amount=100, currency="usd",
                   state_changed_at="2024-05-03 10:00:00", created_at="2024-05-03 10:00:00",
                   updated_at="2024-05-03 10:00:00")
    command = " ".join([*COMMAND, "bookings", "list", "--limit", "5000"])
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env.update(PYTHONPATH=str(ROOT), DATABASE_URL=f"sqlite:///{bookings.database}")

    result = subprocess.run(["sh", "-c", f"{command} | head -n 2"], env=env, capture_output=True, text=True,
                            timeout=60)

    assert result.stdout.splitlines()[0].startswith("ID ")
    assert result.stderr == ""


def test_session_types_list_shows_every_type_with_its_prices_and_switches(cli):
    assert cli.import_types([
        session_type("coaching-hour", prices={"eur": 11000, "jpy": 18000}, promotion_codes=True, automatic_tax=True,
                     refund_policy=POLICY),
        session_type("free-intro", price=0, invoice=True),
    ]).returncode == 0
    assert cli("session-types", "disable", "free-intro").returncode == 0

    result = cli("session-types", "list")

    assert result.returncode == 0, result.stderr
    header, hour, intro = result.stdout.splitlines()
    assert header.split()[:5] == ["SLUG", "OFFERED", "PAYMENT", "MINUTES", "PRICE"]
    for heading in ("OTHER PRICES", "PROMOTION CODES", "TAX", "INVOICE", "REFUND POLICY", "NAME"):
        assert heading in header
    from bookingflow.providers.stripe_amounts import display

    assert hour.split()[:4] == ["coaching-hour", "yes", "on", "60"]
    assert display(12000, "usd") in hour and display(18000, "jpy") in hour and "automatic" in hour
    assert json.dumps(POLICY, sort_keys=True) in hour
    assert intro.split()[:3] == ["free-intro", "no", "on"]


def test_session_types_list_as_json_is_what_import_takes_back(cli):
    items = [session_type("coaching-hour", prices={"eur": 11000}, promotion_codes=True, refund_policy=POLICY)]
    assert cli.import_types(items).returncode == 0

    printed = cli("session-types", "list", "--json").stdout

    assert json.loads(printed) == [{**items[0], "automatic_tax": False, "invoice": False}]
    again = cli("session-types", "import", cli.write("again.json", printed))
    assert again.returncode == 0 and "0 created, 1 updated" in again.stdout


def test_outbox_list_and_show_print_the_emails_with_masked_addresses(bookings):
    with closing(sqlite3.connect(bookings.database)) as connection, connection:
        insert(connection, "outbox", booking_id="bk_older", key="confirmation:bk_older", kind="confirmation",
               recipient="ada@example.com", subject="Your session is booked", body="Dear Ada,\nsee you soon.",
               created_at="2024-05-01 10:06:00", sent_at="2024-05-01 10:06:01")
        insert(connection, "outbox", booking_id="bk_newer", key="payment_failed:bk_newer", kind="payment_failed",
               recipient="grace@example.org", subject="Your payment did not go through", body="Try again.",
               created_at="2024-05-02 08:10:00")

    listing = bookings("outbox", "list")
    shown = bookings("outbox", "show", "1")

    header, newer, older = listing.stdout.splitlines()
    assert header.split() == ["ID", "CREATED", "BOOKING", "KIND", "STATUS", "TO", "SUBJECT"]
    assert newer.split()[:6] == ["2", "2024-05-02", "08:10:00Z", "bk_newer", "payment_failed", "waiting"]
    assert "sent 2024-05-01 10:06:01Z" in older and "a***@example.com" in older
    assert bookings("outbox", "list", "--booking", "bk_older").stdout.count("\n") == 2
    assert shown.stdout.splitlines()[0] == "e-mail 1 (confirmation) of booking bk_older: sent 2024-05-01 10:06:01Z"
    assert "To: a***@example.com" in shown.stdout and "Dear Ada,\nsee you soon." in shown.stdout
    assert "ada@example.com" not in listing.stdout + shown.stdout
    assert bookings("outbox", "show", "99").stdout == "no e-mail 99\n"


# --- money in bookings list/show and stats ----------------------------------------------------------

AT = "2024-05-03 09:00:00"


def paid_booking(cli: Cli, booking_id: str, slug: str, currency: str, price: int, *, discount: int = 0, tax: int = 0,
                 refunded: int = 0, lost_dispute: int = 0) -> None:
    """A confirmed booking whose one checkout Stripe charged `price - discount + tax` in `currency`,
    with a succeeded refund of `refunded` and a lost dispute of `lost_dispute`, as the ledger records them."""
    charged = price - discount + tax
    [type_row] = cli.rows("SELECT id FROM session_type WHERE slug = ?", slug)
    with closing(sqlite3.connect(cli.database)) as connection, connection:
        insert(connection, "booking", id=booking_id, session_type_id=type_row["id"], state="BOOKING_CONFIRMED",
               version=1, email=f"{booking_id}@example.com", name="Ada", amount=price, currency=currency,
               amount_paid=charged, amount_refunded=refunded, state_changed_at=AT, created_at=AT, updated_at=AT)
        insert(connection, "transition", booking_id=booking_id, from_state="PAYMENT_SUCCEEDED", state="BOOKING_CONFIRMED",
               trigger="confirmBooking", cause=f"cs_{booking_id}", at=AT)
        insert(connection, "payment", booking_id=booking_id, attempt=1, checkout_session_id=f"cs_{booking_id}",
               amount=charged, currency=currency, status="paid", payment_intent_id=f"pi_{booking_id}",
               amount_subtotal=price, amount_discount=discount, amount_tax=tax, created_at=AT, updated_at=AT)
        # A second checkout never paid: it counts for nothing.
        insert(connection, "payment", booking_id=booking_id, attempt=2, checkout_session_id=f"cs_{booking_id}_open",
               amount=price, currency=currency, status="expired", created_at=AT, updated_at=AT)
        if refunded:
            insert(connection, "refund", booking_id=booking_id, key=f"cancel-{booking_id}", purpose="cancellation",
                   payment_intent_id=f"pi_{booking_id}", amount=refunded, currency=currency, status="succeeded",
                   stripe_refund_id=f"re_{booking_id}", created_at=AT, updated_at=AT)
        if lost_dispute:
            insert(connection, "dispute", booking_id=booking_id, stripe_dispute_id=f"dp_{booking_id}",
                   payment_intent_id=f"pi_{booking_id}", amount=lost_dispute, currency=currency, status="lost",
                   reason="fraudulent", closed_at=AT, created_at=AT, updated_at=AT)


@pytest.fixture
def money(cli) -> Cli:
    assert cli.import_types([session_type("coaching-hour", price=15000), session_type("tea", price=5000, currency="jpy"),
                             session_type("majlis", price=5000, currency="bhd")]).returncode == 0
    paid_booking(cli, "bk_usd_1", "coaching-hour", "usd", 15000, discount=3000, tax=2400, refunded=7200)
    paid_booking(cli, "bk_usd_2", "coaching-hour", "usd", 15000)
    paid_booking(cli, "bk_jpy", "tea", "jpy", 5000, lost_dispute=5000)
    paid_booking(cli, "bk_bhd", "majlis", "bhd", 5000, tax=250, refunded=2620)
    return cli


def money_lines(stats: str) -> dict[str, str]:
    section = stats.split("money, per currency (never added up across currencies):\n", 1)[1]
    lines = itertools.takewhile(lambda line: line.startswith("    "), section.splitlines())
    return {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in lines}


def test_stats_reports_the_money_of_each_currency_on_its_own_line_and_never_adds_currencies(money):
    result = money("stats", "--since", "2024-05-01T00:00:00Z", "--until", "2024-06-01T00:00:00Z")

    assert result.returncode == 0, result.stderr
    assert money_lines(result.stdout) == {
        "BHD": "charged 5.250 BHD in 1 payment(s): prices 5.000 BHD, discounts given 0.000 BHD, tax collected "
               "0.250 BHD; refunded 2.620 BHD, lost in disputes 0.000 BHD; net 2.630 BHD",
        "JPY": "charged ¥5,000 in 1 payment(s): prices ¥5,000, discounts given ¥0, tax collected ¥0; refunded ¥0, "
               "lost in disputes ¥5,000; net ¥0",
        "USD": "charged $294.00 in 2 payment(s): prices $300.00, discounts given $30.00, tax collected $24.00; "
               "refunded $72.00, lost in disputes $0.00; net $222.00",
    }
    out = result.stdout
    assert "refunds: 2 bookings (50.0%), 2.620 BHD + $72.00\n" in out  # listed side by side, never summed
    assert "1 lost (¥5,000)" in out
    # One average per currency, in that currency: (14400 - 7200 + 15000) / 2, and 5.250 - 2.620 BHD.
    assert "average booking value, net of refunds: $111.00 over 2 paid bookings" in out
    assert "average booking value, net of refunds: 2.630 BHD over 1 paid bookings" in out
    assert "average booking value, net of refunds: ¥5,000 over 1 paid bookings" in out


def test_stats_of_a_period_without_bookings_has_no_money(money):
    result = money("stats", "--since", "2023-01-01T00:00:00Z", "--until", "2023-02-01T00:00:00Z")

    assert result.returncode == 0, result.stderr
    assert "money, per currency (never added up across currencies): none" in result.stdout
    assert "average booking value" not in result.stdout


def test_bookings_list_and_show_print_money_as_people_read_it(money):
    listed = money("bookings", "list").stdout
    lines = {line.split()[0]: line for line in listed.splitlines()}
    assert "$150.00" in lines["bk_usd_1"] and "¥5,000" in lines["bk_jpy"] and "5.000 BHD" in lines["bk_bhd"]
    assert "15000" not in listed and " usd" not in listed and " jpy" not in listed

    shown = money("bookings", "show", "bk_usd_1").stdout
    assert "session type coaching-hour, $150.00, paid $144.00, refunded $72.00" in shown
    assert "cs_bk_usd_1 attempt 1: $144.00 paid (price $150.00, discount -$30.00, tax $24.00)" in shown
    assert "cs_bk_usd_1_open attempt 2: $150.00 expired\n" in shown
    assert "re_bk_usd_1 cancellation: $72.00 succeeded" in shown

    shown = money("bookings", "show", "bk_jpy").stdout
    assert "session type tea, ¥5,000, paid ¥5,000, refunded ¥0" in shown
    assert "cs_bk_jpy attempt 1: ¥5,000 paid\n" in shown  # no discount, no tax: nothing to break down
    assert "dp_bk_jpy of pi_bk_jpy: ¥5,000 lost (fraudulent)" in shown

    shown = money("bookings", "show", "bk_bhd").stdout
    assert "cs_bk_bhd attempt 1: 5.250 BHD paid (price 5.000 BHD, tax 0.250 BHD)" in shown
    assert "re_bk_bhd cancellation: 2.620 BHD succeeded" in shown
