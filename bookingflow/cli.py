"""The `bookingflow` command."""

from __future__ import annotations

import argparse
import json
import sys

from bookingflow import bootstrap


def _database_only():
    current = bootstrap.plain_settings()
    bootstrap.open_configured_database(current)
    return current


def cmd_db_upgrade(args) -> int:
    _database_only()
    from models import migrations

    applied = migrations.upgrade(report=print)
    print(f"schema at version {migrations.current_version()}" + ("" if applied else " (already up to date)"))
    return 0


def cmd_session_types_import(args) -> int:
    _database_only()
    from bookingflow.catalog import CatalogInvalid, import_session_types

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


def cmd_scheduler(args) -> int:
    bootstrap.configure_logging()
    import jobs  # noqa: F401  (settings, database and the broker the sweeps send to)
    from scheduler import run_forever

    run_forever(jobs.settings.sweep_interval_seconds)
    return 0


def cmd_dev(args) -> int:
    from bookingflow.dev import run_dev

    return run_dev(port=args.port)


def cmd_demo(args) -> int:
    from bookingflow.demo import run_demo

    return run_demo(args.url)


def cmd_bookings(args) -> int:
    from bookingflow import admin

    _database_only()
    if args.action == "list":
        return admin.list_bookings(args.state, args.limit)
    if args.action == "show":
        return admin.show_booking(args.booking_id)
    import jobs  # noqa: F401  (retry sends to the workers)

    return admin.retry_booking(args.booking_id)


def cmd_events(args) -> int:
    from bookingflow import admin

    _database_only()
    if args.action == "list":
        return admin.list_events(args.unprocessed, args.limit)
    import jobs  # noqa: F401

    return admin.replay_event(args.event)


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

    types = commands.add_parser("session-types", help="the catalogue").add_subparsers(dest="types_command", required=True)
    importer = types.add_parser("import", help="upsert session types from a JSON file")
    importer.add_argument("file")
    importer.set_defaults(run=cmd_session_types_import)

    commands.add_parser("scheduler", help="run the sweeps (the Procfile's scheduler)").set_defaults(run=cmd_scheduler)

    bookings = commands.add_parser("bookings", help="operator view of bookings")
    booking_actions = bookings.add_subparsers(dest="action", required=True)
    listing = booking_actions.add_parser("list", help="bookings, newest first")
    listing.add_argument("--state", default=None)
    listing.add_argument("--limit", type=int, default=50)
    booking_actions.add_parser("show", help="one booking with its history and events").add_argument("booking_id")
    booking_actions.add_parser("retry", help="run the booking's current step again").add_argument("booking_id")
    bookings.set_defaults(run=cmd_bookings)

    events = commands.add_parser("events", help="operator view of received provider events")
    event_actions = events.add_subparsers(dest="action", required=True)
    event_list = event_actions.add_parser("list", help="events, newest first")
    event_list.add_argument("--unprocessed", action="store_true")
    event_list.add_argument("--limit", type=int, default=50)
    event_actions.add_parser("replay", help="process a stored event again").add_argument("event", help="row id or provider event id")
    events.set_defaults(run=cmd_events)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
