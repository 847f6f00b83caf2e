"""`bookingflow reconcile report`: the drift report (jobs/drift.py) printed for an operator, and its
safe repairs applied with `--repair`.

Exit status: 0 when nothing drifted, 1 when something did (repaired or not: run it again to see what
is left), 2 when the providers could not be read (a rate limit, a provider down, bad credentials).
"""

from __future__ import annotations

import datetime as dt
import json
import re

NO_DRIFT, DRIFT_FOUND, NOT_READ = 0, 1, 2
COLUMNS = (("BOOKING", "booking_id"), ("KIND", "kind"), ("SUBJECT", "subject"), ("OURS", "ours"),
           ("PROVIDER", "theirs"), ("REPAIR", "repair"))
DAYS = re.compile(r"^(\d{1,4})d$")


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """`7d` (days before now), or an ISO 8601 date or time (UTC unless it says otherwise)."""
    days = DAYS.match(text.strip())
    if days:
        return now - dt.timedelta(days=int(days.group(1)))
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def table(rows: list[dict]) -> list[str]:
    widths = [max([len(title)] + [len(str(row[key] or "-")) for row in rows]) for title, key in COLUMNS]
    line = "  ".join(f"{{:<{width}}}" for width in widths)
    return [line.format(*(title for title, _ in COLUMNS)).rstrip()] + [
        line.format(*(str(row[key] or "-") for _, key in COLUMNS)).rstrip() for row in rows]


def report(since: dt.datetime, repair: bool, as_json: bool) -> int:
    import stripe

    from bookingflow.providers import calendly_client, limits
    from jobs import drift

    try:
        drifts = drift.find(since)
        repaired = drift.repair(drifts) if repair else []
    except limits.RateLimited as exc:
        print(f"{exc.provider} asks us to slow down: run the report again in {exc.wait_seconds:.0f}s")
        return NOT_READ
    except (stripe.StripeError, calendly_client.CalendlyError) as exc:
        print(f"could not read the providers: {exc.__class__.__name__}: {str(exc)[:300]}")
        return NOT_READ
    if as_json:
        print(json.dumps({
            "since": since.isoformat(), "drifts": [d.as_dict() for d in drifts],
            "repaired": [{**d.as_dict(), "result": result} for d, result in repaired],
        }, indent=2))
    else:
        _print_readable(since, drifts, repaired, repair)
    return DRIFT_FOUND if drifts else NO_DRIFT


def _print_readable(since, drifts, repaired, repair: bool) -> None:
    print(f"bookings created since {since.strftime('%Y-%m-%d %H:%M:%SZ')}: "
          f"{len(drifts)} drift(s) with Stripe and Calendly")
    if drifts:
        print()
        for line in table([d.as_dict() for d in drifts]):
            print(line)
    safe = [d for d in drifts if not d.repair.startswith("operator")]
    if repair:
        print()
        print(f"repairs: {len(repaired)} applied" if repaired else "repairs: nothing to do")
        for d, result in repaired:
            print(f"  {d.booking_id}  {d.kind}  {d.subject}: {result}")
    elif safe:
        print()
        print(f"{len(safe)} of them have a safe repair: run again with --repair to apply it")
