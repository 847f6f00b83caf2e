"""Item 3: each scheduler sweep's time with 10^4, 10^5 and 10^6 bookings and the same 100 due rows.

The sweeps of scheduler/sweeps.py (every function in its SWEEPS) are called directly, in this
process, with the app's settings configured against a scratch PostgreSQL database and Redis
database 13 (their jobs are only enqueued, never run). Rows are bulk-loaded with INSERT ... SELECT
generate_series, shaped like a service that has run for two years:

  booking         N rows, created over 730 days; 90% resting (next_check_at NULL), 10% with a check
                  in the next 30 days; plus 100 due (next_check_at in the past)
  provider_event  2N processed rows over 730 days, payloads kept for the last 90 days only (older
                  ones already pruned); plus 100 unprocessed for 10 minutes and 100 processed
                  100-101 days ago with their payload (due for pruning)
  outbox          N sent e-mails; plus 100 unsent, unclaimed, 5 minutes old
  alert           N/100 sent alerts; plus 100 unsent, 5 minutes old

Before each timed call the due rows are put back as they were, so every call handles the same
100 rows. Each sweep's time is reported beside a reference measured at the same size in the same
run (fetching 100 bookings by primary key through the same peewee connection), as a ratio; the
growth column divides the ratio at each size by the ratio at the smallest size: flat is about 1.
Every SELECT a sweep issues is captured and EXPLAIN (ANALYZE, BUFFERS)-ed at each size.

    python bench/sweep_cost.py                  # 10^4, 10^5, 10^6
    python bench/sweep_cost.py --quick          # 10^3, 10^4
    python bench/sweep_cost.py --sizes 10000,100000
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

DUE = 100
NOW = "(now() AT TIME ZONE 'utc')"
MINUTES_IN_730_DAYS = 730 * 24 * 60


def arguments(parser):
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls of each sweep per size")


def columns_sql(model, overrides: dict[str, str]) -> tuple[list[str], list[str]]:
    """Column names and SQL expressions for a bulk INSERT ... SELECT of `model`: the overrides,
    then every other NOT NULL column from its peewee default (a constant, or now for utcnow)."""
    names, values = [], []
    for field in model._meta.sorted_fields:
        column = field.column_name
        if column in overrides:
            names.append(column)
            values.append(overrides[column])
        elif field.primary_key and column == "id" and type(field).__name__ == "AutoField":
            continue
        elif not field.null:
            default = field.default
            if default is None:
                raise RuntimeError(f"{model._meta.table_name}.{column} is NOT NULL with no default: "
                                   "the benchmark's loader needs a value for it")
            if callable(default):
                if default.__name__ != "utcnow":
                    raise RuntimeError(f"{model._meta.table_name}.{column}: unknown default {default.__name__}")
                values.append(NOW)
            elif isinstance(default, bool):
                values.append("true" if default else "false")
            elif isinstance(default, (int, float)):
                values.append(str(default))
            else:
                values.append("'" + str(default).replace("'", "''") + "'")
            names.append(column)
    return names, values


def bulk_insert(cursor, model, first: int, last: int, overrides: dict[str, str]) -> None:
    if last < first:
        return
    names, values = columns_sql(model, overrides)
    cursor.execute(f'INSERT INTO "{model._meta.table_name}" ({", ".join(names)}) '
                   f"SELECT {', '.join(values)} FROM generate_series({first}, {last}) AS g")


def spread(days: int = 730) -> str:
    """A moment in the last `days` days, spread evenly and deterministically by g."""
    return f"{NOW} - make_interval(mins => ((g::bigint * 7919) % {days * 24 * 60})::int)"


def load(cursor, models, session_type_id: int, start: int, end: int) -> None:
    """Rows for bookings start+1..end (and their events, e-mails and alerts)."""
    Booking, ProviderEvent, Outbox, Alert = models
    created = spread()
    bulk_insert(cursor, Booking, start + 1, end, {
        "id": "'bk' || lpad(g::text, 10, '0') || substr(md5(g::text), 1, 20)",
        "session_type_id": str(session_type_id),
        "state": "CASE WHEN g % 20 = 0 THEN 'REFUND_COMPLETED' WHEN g % 10 = 0 THEN 'PAYMENT_PROCESSING' "
                 "WHEN g % 7 = 0 THEN 'IDLE' ELSE 'BOOKING_CONFIRMED' END",
        "version": "6", "email": "'client' || g || '@example.com'", "name": "'Client ' || g",
        "amount": "25000", "currency": "'usd'", "amount_paid": "25000",
        "calendly_event_uri": "'https://api.calendly.com/scheduled_events/ev' || g",
        "calendly_invitee_uri": "'https://api.calendly.com/scheduled_events/ev' || g || '/invitees/in' || g",
        "scheduled_start": f"({created}) + interval '5 days'", "scheduled_end": f"({created}) + interval '5 days 1 hour'",
        "checkout_session_id": "'cs_bulk_' || g", "payment_attempt": "1",
        "next_check_at": f"CASE WHEN g % 10 = 0 THEN {NOW} + make_interval(mins => ((g * 31) % 43200 + 1)::int) END",
        "state_changed_at": created, "created_at": created, "updated_at": created,
    })
    received = spread()
    bulk_insert(cursor, ProviderEvent, 2 * start + 1, 2 * end, {
        "provider": "CASE WHEN g % 2 = 0 THEN 'stripe' ELSE 'calendly' END",
        "event_id": "'evt_bulk_' || g",
        "type": "CASE WHEN g % 2 = 0 THEN 'checkout.session.completed' ELSE 'invitee.created' END",
        "subject": "'subj_' || g", "received_at": received, "processed_at": f"({received}) + interval '1 second'",
        "outcome": "'advanced'", "attempts": "1",
        "payload": f"CASE WHEN ({received}) > {NOW} - interval '90 days' THEN '{{\"id\":\"evt_bulk_' || g || '\"}}' END",
    })
    sent = spread()
    bulk_insert(cursor, Outbox, start + 1, end, {
        "key": "'booking_confirmed:bulk:' || g", "kind": "'booking_confirmed'",
        "recipient": "'client' || g || '@example.com'", "subject": "'Your session is confirmed'",
        "body": "'Hello, your session is confirmed.'", "created_at": sent, "claimed_at": sent,
        "sent_at": f"({sent}) + interval '1 second'", "attempts": "1",
    })
    bulk_insert(cursor, Alert, start // 100 + 1, end // 100, {
        "key": "'bulk:' || g", "kind": "'flagged_booking'", "text": "'a booking needed a look'",
        "created_at": spread(), "sent_at": f"({spread()}) + interval '1 second'", "attempts": "1",
    })


def load_due_rows(cursor, models, session_type_id: int) -> None:
    Booking, ProviderEvent, Outbox, Alert = models
    bulk_insert(cursor, Booking, 1, DUE, {
        "id": "'due' || lpad(g::text, 10, '0')", "session_type_id": str(session_type_id),
        "state": "'PAYMENT_PROCESSING'", "email": "'due' || g || '@example.com'", "name": "'Due ' || g",
        "amount": "25000", "currency": "'usd'", "next_check_at": f"{NOW} - make_interval(secs => g)",
    })
    bulk_insert(cursor, ProviderEvent, 1, DUE, {
        "provider": "'stripe'", "event_id": "'evt_due_' || g", "type": "'checkout.session.completed'",
        "received_at": f"{NOW} - interval '10 minutes' - make_interval(secs => g)", "attempts": "1",
        "payload": "'{\"id\":\"evt_due_' || g || '\"}'",
    })
    bulk_insert(cursor, ProviderEvent, 1, DUE, {
        "provider": "'stripe'", "event_id": "'evt_old_' || g", "type": "'checkout.session.completed'",
        "received_at": f"{NOW} - interval '100 days' - make_interval(mins => g)",
        "processed_at": f"{NOW} - interval '100 days' - make_interval(mins => g) + interval '1 second'",
        "outcome": "'advanced'", "attempts": "1", "payload": "'{\"id\":\"evt_old_' || g || '\"}'",
    })
    bulk_insert(cursor, Outbox, 1, DUE, {
        "key": "'due:' || g", "kind": "'booking_confirmed'", "recipient": "'due' || g || '@example.com'",
        "subject": "'Your session is confirmed'", "body": "'Hello.'",
        "created_at": f"{NOW} - interval '5 minutes' - make_interval(secs => g)",
    })
    bulk_insert(cursor, Alert, 1, DUE, {
        "key": "'due:' || g", "kind": "'flagged_booking'", "text": "'due'",
        "created_at": f"{NOW} - interval '5 minutes' - make_interval(secs => g)",
    })


RESET = (  # run with parameters (), so a literal % is written %%
    # The due rows, as they were before a sweep claimed, sent or pruned them.
    f"UPDATE booking SET next_check_at = {NOW} - make_interval(secs => substr(id, 4)::int), check_attempts = 0 "
    "WHERE id LIKE 'due%%'",
    "UPDATE provider_event SET payload = '{\"id\":\"' || event_id || '\"}' WHERE event_id LIKE 'evt_old_%%'",
    f"UPDATE provider_event SET processed_at = NULL, received_at = {NOW} - interval '10 minutes' "
    "- make_interval(secs => substr(event_id, 9)::int) WHERE event_id LIKE 'evt_due_%%'",
    f"UPDATE outbox SET claimed_at = NULL, sent_at = NULL WHERE key LIKE 'due:%%'",
    "UPDATE alert SET sent_at = NULL WHERE key LIKE 'due:%%'",
)


class QueryLog(logging.Handler):
    """Collects the (sql, params) peewee logs at DEBUG while armed."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.queries, self.armed = [], False

    def emit(self, record):
        if self.armed and isinstance(record.msg, tuple) and len(record.msg) == 2:
            self.queries.append(record.msg)


def run(args, cleanup):
    sizes = [int(s) for s in args.sizes.split(",")] if not args.quick else [1000, 10000]
    repeats = 3 if args.quick else args.repeats
    results = {"machine": h.machine(), "versions": h.versions(), "sizes": sizes, "repeats": repeats}
    database_url = cleanup.enter_context(h.scratch_database())
    cleanup.enter_context(h.redis_scratch())
    env = h.service_environment(database_url)
    h.run_cli(env, "db", "upgrade")
    os.environ.update(env)

    from bookingflow import settings as settings_module

    settings_module.configure(settings_module.load(env))
    import jobs  # noqa: F401  (opens the database, builds the broker on Redis database 13)
    from models.db import database, utcnow
    from models.tables import Alert, Booking, Outbox, ProviderEvent, SessionType
    from scheduler.sweeps import SWEEPS

    cleanup.callback(lambda: database.close_all() if hasattr(database.obj, "close_all") else None)
    models = (Booking, ProviderEvent, Outbox, Alert)
    database.connect(reuse_if_open=True)
    session_type = SessionType.create(slug="bench", name="Bench", duration_minutes=60, price=25000, currency="usd",
                                      calendly_event_type="https://api.calendly.com/event_types/bench",
                                      scheduling_url="https://calendly.com/bench/60min")
    cursor = database.cursor()
    load_due_rows(cursor, models, session_type.id)
    reference_ids = [f"due{n:010d}" for n in range(1, DUE + 1)]

    query_log = QueryLog()
    peewee_logger = logging.getLogger("peewee")
    peewee_logger.addHandler(query_log)
    peewee_logger.setLevel(logging.DEBUG)
    peewee_logger.propagate = False

    def reset():
        for statement in RESET:
            database.execute_sql(statement)

    def reference():
        return len(list(Booking.select(Booking.id, Booking.version).where(Booking.id.in_(reference_ids))))

    loaded, per_size = 0, []
    for size in sizes:
        started = time.monotonic()
        step = 200_000
        for first in range(loaded, size, step):
            load(cursor, models, session_type.id, first, min(size, first + step))
        loaded = size
        database.execute_sql("VACUUM ANALYZE")  # as autovacuum would have, long before 10^6 rows
        counts = {m._meta.table_name: m.select().count() for m in models}
        h.log(f"{size} bookings loaded in {time.monotonic() - started:.0f}s: {counts}")
        timings = {sweep.__name__: [] for sweep in SWEEPS}
        handled = {}
        reference_ms = []
        plans = {}
        for repeat in range(repeats):
            for sweep in SWEEPS:
                reset()
                query_log.queries.clear()
                query_log.armed = repeat == 0
                t0 = time.perf_counter()
                handled[sweep.__name__] = sweep(utcnow())
                timings[sweep.__name__].append(1000 * (time.perf_counter() - t0))
                query_log.armed = False
                if repeat == 0:
                    selects = [(sql, params) for sql, params in query_log.queries if sql.lstrip().upper().startswith("SELECT")]
                    reset()
                    plans[sweep.__name__] = []
                    for sql, params in selects[:3]:  # the sweep's own queries, not each row's
                        rows = database.execute_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, params).fetchall()
                        plans[sweep.__name__].append({"sql": sql, "plan": "\n".join(r[0] for r in rows)})
            t0 = time.perf_counter()
            found = reference()
            reference_ms.append(1000 * (time.perf_counter() - t0))
            if found != DUE:
                raise RuntimeError(f"reference found {found} rows")
        per_size.append({"size": size, "counts": counts, "reference_ms": h.median(reference_ms),
                         "sweeps": {name: {"ms": h.median(values), "handled": handled[name]}
                                    for name, values in timings.items()},
                         "plans": plans})
        for name, values in timings.items():
            h.log(f"  {name}: {h.median(values):.1f} ms, handled {handled[name]}")
        h.log(f"  reference: {h.median(reference_ms):.2f} ms")
    results["per_size"] = per_size
    cursor.close()
    database.close()

    first = per_size[0]
    print(f"\nSweep times, median of {repeats} calls per size, each handling the same {DUE} due rows "
          f"(reference: 100 bookings by primary key)\n")
    rows = []
    for entry in per_size:
        rows.append([f"{entry['size']:,}", "reference", f"{entry['reference_ms']:.2f}", "", "1.00", "", ""])
        for name, value in entry["sweeps"].items():
            ratio = value["ms"] / entry["reference_ms"]
            first_ratio = first["sweeps"][name]["ms"] / first["reference_ms"]
            rows.append([f"{entry['size']:,}", name, f"{value['ms']:.2f}", value["handled"], f"{ratio:.1f}",
                         f"{ratio / first_ratio:.2f}", _plan_summary(entry["plans"].get(name, []))])
    print(h.markdown_table(["bookings", "sweep", "ms", "handled", "÷ reference", "growth vs smallest", "plan (first query)"],
                           rows))
    last = per_size[-1]
    print(f"\nEXPLAIN (ANALYZE, BUFFERS) at {last['size']:,} bookings:\n")
    for name, plans in last["plans"].items():
        for plan in plans[:1]:
            print(f"{name}:\n\n```sql\n{plan['sql']}\n```\n```\n{plan['plan']}\n```\n")
    h.print_environment(results)
    return results


def _plan_summary(plans: list[dict]) -> str:
    if not plans:
        return ""
    lines = plans[0]["plan"].splitlines()
    scans = [line.strip().split("  (")[0].lstrip("-> ") for line in lines if "Scan" in line]
    execution = next((line.split(":")[1].strip() for line in lines if line.startswith("Execution Time")), "")
    return "; ".join(scans[:2]) + (f" ({execution})" if execution else "")


if __name__ == "__main__":
    h.main_wrapper(run, description=__doc__.splitlines()[0], default_deadline=2400, quick_deadline=100,
                   extra_args=arguments)
