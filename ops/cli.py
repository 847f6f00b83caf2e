"""The `bookingflow` command."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys

from bookingflow import settings as settings_module
from models import bootstrap


def _database_only():
    """A command over the database alone: DATABASE_URL (the same bookingflow.db as `bookingflow dev`
    when unset), reachable and with its schema, or one line saying what is wrong and what to run."""
    current = bootstrap.plain_settings()
    bootstrap.open_existing_database(current)
    return current


def cmd_db_upgrade(args) -> int:
    bootstrap.open_reachable_database(bootstrap.plain_settings(), create=True)
    from models import migrations

    applied = migrations.upgrade(report=print)
    print(f"schema at version {migrations.current_version()}" + ("" if applied else " (already up to date)"))
    return 0


def cmd_db_downgrade(args) -> int:
    bootstrap.open_reachable_database(bootstrap.plain_settings())
    from models import migrations

    try:
        undone = migrations.downgrade(args.to, report=print)
    except ValueError as exc:
        bootstrap.fail(str(exc))
    print(f"schema at version {migrations.current_version()}" + ("" if undone else " (nothing to roll back)"))
    return 0


def cmd_session_types_import(args) -> int:
    _database_only()
    from ops.catalog import CatalogInvalid, import_session_types

    try:
        with open(args.file, encoding="utf-8") as handle:
            items = json.load(handle)
    except OSError as exc:
        bootstrap.fail(f"cannot read {args.file}: {exc.strerror}")
    except ValueError as exc:
        bootstrap.fail(f"{args.file} is not JSON: {exc}")
    try:
        result = import_session_types(items)
    except CatalogInvalid as exc:
        bootstrap.fail(f"{args.file}: {exc} (nothing imported)")
    print(f"session types: {result.created} created, {result.updated} updated")
    return 0


def cmd_session_types_list(args) -> int:
    _database_only()
    from ops.catalog import list_session_types

    return list_session_types(args.json)


def cmd_outbox(args) -> int:
    _database_only()
    from ops import outbox

    if args.action == "list":
        return outbox.list_emails(args.limit, args.booking)
    return outbox.show_email(args.email_id)


def cmd_session_types_sync(args) -> int:
    current = _database_only()
    if not current.calendly_api_token:
        bootstrap.fail("CALENDLY_API_TOKEN is not set")
    from bookingflow.providers import calendly_client
    from ops.catalog import sync_event_types

    try:
        event_types = calendly_client.list_event_types()
    except calendly_client.CalendlyError as exc:
        bootstrap.fail(f"could not read Calendly's event types: {exc}")
    result = sync_event_types(event_types)
    print(f"session types from Calendly: {result.created} created (switched off until priced), "
          f"{result.updated} updated, {result.deactivated} switched off")
    return 0


def _on_off(text: str) -> bool:
    if text.lower() not in ("on", "off"):
        raise argparse.ArgumentTypeError("say on or off")
    return text.lower() == "on"


def cmd_session_types_switch(args) -> int:
    _database_only()
    from ops.catalog import set_switch

    switch = {"enable": {"active": True}, "disable": {"active": False}}.get(args.types_command) or {
        "collect_payment": args.value}
    if not set_switch(args.slug, **switch):
        bootstrap.fail(f"no session type {args.slug!r}")
    print(f"session type {args.slug}: " + ", ".join(f"{k} {'on' if v else 'off'}" for k, v in switch.items()))
    return 0


def cmd_flags(args) -> int:
    _database_only()
    from models import flags

    if args.action == "list":
        from ops.columns import print_table

        print_table(("FLAG", "VALUE", "NOTE", "MEANING"), ((flag.name, "on" if enabled else "off", note, flag.meaning)
                                                           for flag, enabled, note in flags.all_flags()), "no flags")
        return 0
    if args.name not in flags.KNOWN:
        bootstrap.fail(f"no flag {args.name!r}; flags: {', '.join(flags.KNOWN)}")
    flags.set_enabled(flags.KNOWN[args.name], args.value, args.note)
    print(f"{args.name} is {'on' if args.value else 'off'}")
    return 0


def _install_broker(current) -> None:
    bootstrap.prepare_metrics(current)  # before the first metric is made, which importing the broker does
    from bookingflow import broker

    broker.install(current.broker_url)


def _sender(current=None, role: str = "cli"):
    """A process that sends work to the workers (the scheduler, a reconcile report): its settings
    (the service's unless given), the database and the broker, without the workers' code."""
    current = current or bootstrap.service_settings()
    bootstrap.open_existing_database(current, role)
    _install_broker(current)
    return current


def _database_and_broker_if_set() -> bool:
    """A command whose work the workers do (retry, replay): the database, and the broker when
    BROKER_URL is set; True if it is. Without one (a shell beside `bookingflow dev`, whose broker lives
    inside its process) the command leaves the work in the database for the scheduler's next sweep."""
    current = _database_only()
    if current.broker_url:
        _install_broker(current)
    return bool(current.broker_url)


def cmd_scheduler(args) -> int:
    bootstrap.configure_logging()
    # One line per sweep run is noise; the sweeps log what they handled.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    from scheduler import run_forever

    current = _sender(role="scheduler")
    run_forever(current.sweep_interval_seconds)
    return 0


def cmd_dev(args) -> int:
    from ops.dev import run_dev

    return run_dev(port=args.port)


def cmd_demo(args) -> int:
    from ops.demo import run_demo

    return run_demo(args.url)


def cmd_bookings(args) -> int:
    from ops import admin

    _database_only()
    if args.action == "list":
        return admin.list_bookings(args.state, args.limit, stuck=args.stuck, flagged=args.flagged, email=args.email)
    if args.action == "show":
        return admin.show_booking(args.booking_id)
    if args.action == "force":
        return admin.force_booking(args.booking_id, args.state, args.reason)
    return admin.retry_booking(args.booking_id, queue=_database_and_broker_if_set())


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def cmd_data_rotate_key(args) -> int:
    from ops import admin

    current = bootstrap.plain_settings()
    if not current.data_encryption_keys:
        bootstrap.fail("DATA_ENCRYPTION_KEY is not set: there is no key to encrypt with (nothing was changed)")
    bootstrap.open_existing_database(current)
    return admin.rotate_data_key(args.batch_size)


def _time_argument(text: str):
    from ops.admin import parse_time

    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None


def cmd_events(args) -> int:
    from ops import admin

    if args.action == "replay" and not (args.event or args.failed or args.since):
        bootstrap.fail("events replay needs an event, --failed or --since")
    if args.action == "list":
        _database_only()
        return admin.list_events(args.unprocessed, args.limit)
    return admin.replay_events(args.event, args.failed, args.since, queue=_database_and_broker_if_set())


def cmd_stats(args) -> int:
    from models.db import utcnow
    from ops import admin

    _database_only()
    until = args.until or utcnow()
    return admin.stats(args.since or until - datetime.timedelta(days=30), until)


RECONCILE_NEEDS = ("BROKER_URL", "STRIPE_SECRET_KEY", "CALENDLY_API_TOKEN")


def cmd_reconcile_report(args) -> int:
    from models.db import utcnow
    from ops import drift

    try:
        since = drift.parse_since(args.since, utcnow()) if args.since else None
    except ValueError:
        bootstrap.fail(f"--since: not an ISO 8601 date or time, nor a number of days like 7d: {args.since!r}")
    # It reads both providers, and its repairs move bookings, whose e-mails go to the workers.
    try:
        current = settings_module.require(bootstrap.plain_settings(), RECONCILE_NEEDS, "reconcile report")
    except settings_module.SettingsError as exc:
        bootstrap.fail(str(exc))
    current = _sender(current)
    since = since or utcnow() - datetime.timedelta(days=current.drift_report_days)
    return drift.report(since, repair=args.repair, as_json=args.json)


def cmd_check(args) -> int:
    from ops.check import FAIL, Result, failed, render, run_checks

    try:
        current = settings_module.get()
    except settings_module.SettingsError as exc:
        print(render([Result("settings", FAIL, str(exc), "set it in the environment (README, Configuration)")]))
        return 1
    bootstrap.open_configured_database(current)
    results = run_checks(current, args.stripe_mode)
    print(render(results))
    return 1 if failed(results) else 0


def cmd_calendly_subscribe(args) -> int:
    current = bootstrap.plain_settings()
    for variable, value in (("CALENDLY_API_TOKEN", current.calendly_api_token),
                            ("CALENDLY_WEBHOOK_SIGNING_KEY", current.calendly_signing_keys),
                            ("SERVICE_URL (or PUBLIC_URL)", current.webhook_base)):
        if not value:
            bootstrap.fail(f"{variable} is not set")
    from bookingflow.providers import calendly_client, calendly_subscription

    url = calendly_subscription.callback_url(current)
    try:
        # The first signing key is the one intake verifies new deliveries with (the rest are old ones).
        outcome, subscription = calendly_subscription.repair(calendly_subscription.standing(), url,
                                                             current.calendly_signing_keys[0])
    except calendly_client.CalendlyError as exc:
        bootstrap.fail(f"could not subscribe to Calendly's webhooks: {exc}")
    what = {"kept": "already active, left alone", "created": "created", "recreated": "was broken: deleted and created again"}
    print(f"Calendly webhook subscription {subscription['uri']} ({subscription['scope']} scope, "
          f"{', '.join(subscription['events'])} to {url}): {what[outcome]}")
    return 0


def cmd_console(args) -> int:
    from console import commands

    if args.console_command == "add-user":
        return commands.add_user(args.name, args.password_stdin, args.replace)
    return commands.serve()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bookingflow", description="Paid sessions: Calendly + Stripe.")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="the whole service in one process on embedded defaults")
    dev.add_argument("--port", type=int, default=None, help="default: $PORT or 5000")
    dev.set_defaults(run=cmd_dev)

    demo = commands.add_parser("demo", help="drive one booking through a running dev service")
    demo.add_argument("url", nargs="?", default=None, help="default: http://127.0.0.1:$PORT")
    demo.set_defaults(run=cmd_demo)

    db = commands.add_parser("db", help="the database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="create or migrate the schema; safe to run again").set_defaults(run=cmd_db_upgrade)
    rollback = db.add_parser("downgrade", help="roll the schema back to a version (newest migrations first)")
    rollback.add_argument("--to", type=int, required=True, help="the schema version to return to")
    rollback.set_defaults(run=cmd_db_downgrade)

    types = commands.add_parser("session-types", help="the catalogue").add_subparsers(dest="types_command", required=True)
    type_list = types.add_parser("list", help="every session type: offered or not, prices per currency, promotion "
                                              "codes, tax, invoice, refund policy")
    type_list.add_argument("--json", action="store_true", help="as the JSON list `session-types import` takes")
    type_list.set_defaults(run=cmd_session_types_list)
    importer = types.add_parser("import", help="upsert session types from a JSON file")
    importer.add_argument("file")
    importer.set_defaults(run=cmd_session_types_import)
    types.add_parser("sync", help="fill names, durations and links from Calendly's event types "
                                  "(prices and policies are kept)").set_defaults(run=cmd_session_types_sync)
    for name, help_text in (("enable", "offer a session type for new bookings"),
                            ("disable", "stop offering a session type for new bookings")):
        switch = types.add_parser(name, help=help_text)
        switch.add_argument("slug")
        switch.set_defaults(run=cmd_session_types_switch)
    payment = types.add_parser("payment", help="collect payment for a session type (off: a free session)")
    payment.add_argument("slug")
    payment.add_argument("value", type=_on_off, metavar="on|off")
    payment.set_defaults(run=cmd_session_types_switch)

    flags = commands.add_parser("flags", help="feature flags kept in the database")
    flag_actions = flags.add_subparsers(dest="action", required=True)
    flag_actions.add_parser("list", help="every flag, its value and meaning")
    setting = flag_actions.add_parser("set", help="turn a flag on or off")
    setting.add_argument("name")
    setting.add_argument("value", type=_on_off, metavar="on|off")
    setting.add_argument("--note", help="why, for the next operator")
    flags.set_defaults(run=cmd_flags)

    commands.add_parser("scheduler", help="run the sweeps (the Procfile's scheduler)").set_defaults(run=cmd_scheduler)

    data = commands.add_parser("data", help="the client's personal data at rest").add_subparsers(
        dest="data_command", required=True)
    rotate_key = data.add_parser("rotate-key", help="re-encrypt every booking's e-mail and name, the outbox and "
                                                    "the stored deliveries with the first key of DATA_ENCRYPTION_KEY "
                                                    "and re-compute the e-mail hashes")
    rotate_key.add_argument("--batch-size", type=_positive, default=500, help="rows per transaction (500)")
    rotate_key.set_defaults(run=cmd_data_rotate_key)

    bookings = commands.add_parser("bookings", help="operator view of bookings")
    booking_actions = bookings.add_subparsers(dest="action", required=True)
    listing = booking_actions.add_parser("list", help="bookings, newest first")
    listing.add_argument("--state", default=None)
    listing.add_argument("--stuck", action="store_true", help="only those past their state's timeout")
    listing.add_argument("--flagged", action="store_true", help="only those flagged for an operator")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--email", default=None, metavar="ADDRESS",
                         help="only the client's bookings (found by the keyed hash when DATA_ENCRYPTION_KEY is set)")
    booking_actions.add_parser("show", help="one booking with its history, money and events").add_argument("booking_id")
    booking_actions.add_parser("retry", help="run the booking's current step again, now").add_argument("booking_id")
    forcing = booking_actions.add_parser("force", help="move a booking to a state outside the table")
    forcing.add_argument("booking_id")
    forcing.add_argument("state")
    forcing.add_argument("--reason", required=True, help="recorded in the history with the operator's name")
    bookings.set_defaults(run=cmd_bookings)

    events = commands.add_parser("events", help="operator view of received deliveries and client requests")
    event_actions = events.add_subparsers(dest="action", required=True)
    event_list = event_actions.add_parser("list", help="events, newest first")
    event_list.add_argument("--unprocessed", action="store_true")
    event_list.add_argument("--limit", type=int, default=50)
    replay = event_actions.add_parser("replay", help="process stored events again (idempotent)")
    replay.add_argument("event", nargs="?", help="row id or provider event id")
    replay.add_argument("--failed", action="store_true", help="every event that failed or did nothing useful")
    replay.add_argument("--since", type=_time_argument, help="every event received since (ISO 8601)")
    events.set_defaults(run=cmd_events)

    outbox = commands.add_parser("outbox", help="the e-mails to clients, sent, waiting or withheld")
    outbox_actions = outbox.add_subparsers(dest="action", required=True)
    outbox_list = outbox_actions.add_parser("list", help="e-mails, newest first")
    outbox_list.add_argument("--booking", default=None, metavar="BOOKING_ID", help="only this booking's")
    outbox_list.add_argument("--limit", type=_positive, default=50)
    outbox_actions.add_parser("show", help="one e-mail with its text").add_argument("email_id", type=int)
    outbox.set_defaults(run=cmd_outbox)

    check = commands.add_parser("check", help="verify the set-up end to end (settings, database, broker, Stripe, "
                                              "Calendly); exits 1 on any failure")
    check.add_argument("--stripe-mode", choices=("test", "live"), default=None,
                       help="the Stripe mode this deployment must run in (default: either; a test key warns)")
    check.set_defaults(run=cmd_check)

    calendly = commands.add_parser("calendly", help="Calendly's side of the set-up").add_subparsers(
        dest="calendly_command", required=True)
    calendly.add_parser("subscribe", help="create or repair the webhook subscription to this service "
                                          "(safe to repeat)").set_defaults(run=cmd_calendly_subscribe)

    stats = commands.add_parser("stats", help="conversion, payments, cancellations, refunds over a period")
    stats.add_argument("--since", type=_time_argument, help="default: 30 days before --until")
    stats.add_argument("--until", type=_time_argument, help="default: now")
    stats.set_defaults(run=cmd_stats)

    reconcile = commands.add_parser("reconcile", help="compare bookings with Stripe and Calendly").add_subparsers(
        dest="reconcile_command", required=True)
    drift_report = reconcile.add_parser(
        "report", help="every booking created since --since compared with Stripe and Calendly: each drift and "
                       "its repair; exit 0 when none, 1 when some, 2 when the providers could not be read")
    drift_report.add_argument("--since", help="an ISO 8601 date or time, or days like 7d "
                                              "(default: DRIFT_REPORT_DAYS, 30 days)")
    drift_report.add_argument("--repair", action="store_true", help="apply the safe repairs and say what was done")
    drift_report.add_argument("--json", action="store_true", help="the drifts (and repairs) as JSON")
    drift_report.set_defaults(run=cmd_reconcile_report)

    console = commands.add_parser("console", help="the operator console (serves on CONSOLE_PORT; add-user makes "
                                                   "an account)")
    console_commands = console.add_subparsers(dest="console_command")
    adding = console_commands.add_parser("add-user", help="make an operator account (asks for its password)")
    adding.add_argument("name")
    adding.add_argument("--password-stdin", action="store_true", help="read the password from stdin's first line")
    adding.add_argument("--replace", action="store_true", help="set a new password for an existing account")
    console.set_defaults(run=cmd_console)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args) or 0
        sys.stdout.flush()  # here, where a reader gone away is caught, not at exit
        return status
    except BrokenPipeError:
        # The reader went away (`bookingflow bookings list | head`): what it wanted was printed. Output
        # still buffered goes nowhere, so that Python's flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
