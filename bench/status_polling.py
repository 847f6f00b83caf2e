"""Item 4: GET /v1/bookings/<id> per second, with and without If-None-Match, beside a bare route.

Bookings are made through POST /v1/bookings, then moved to BOOKING_CONFIRMED with the five history
rows of the happy path written in SQL (so each status view carries a realistic history of six
rows). Three measurements under the Procfile's `web` command line, in rotating order per round:

  bare             GET /v1/bookings/<id> on a Flask route that answers 200 (bench/refapps.py)
  full view        bookingflow, no If-None-Match: 200 with the booking and its history
  If-None-Match    bookingflow, with the booking's current ETag: 304

wrk cycles through the bookings' ids (and their ETags).

    python bench/status_polling.py            # 1,000 bookings, 5 rounds of 10 s
    python bench/status_polling.py --quick    # 100 bookings, 1 round of 2 s
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

SLUG = h.BENCH_SLUG
HAPPY_PATH = (  # after the creation row: (from, to, trigger, cause prefix)
    ("CALENDLY_SCHEDULING", "CALENDLY_WEBHOOK_RECEIVED", "onCalendlyWebhookReceived", "evt-invitee-"),
    ("CALENDLY_WEBHOOK_RECEIVED", "PAYMENT_PENDING", "initiatePayment", "attempt-1-"),
    ("PAYMENT_PENDING", "PAYMENT_PROCESSING", "onStripeSessionCreated", "cs_test_"),
    ("PAYMENT_PROCESSING", "PAYMENT_SUCCEEDED", "onPaymentSucceeded", "paid-cs_test_"),
    ("PAYMENT_SUCCEEDED", "BOOKING_CONFIRMED", "confirmBooking", "confirm-1-"),
)


def arguments(parser):
    parser.add_argument("--bookings", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--before", metavar="DIR", help="also measure the copy of the product tree in DIR "
                        "(e.g. taken before a change), same command line, in the same rounds")


def make_bookings(env: dict, base: str, database_url: str, count: int) -> list[tuple[str, str]]:
    """`count` confirmed bookings with six history rows each; returns [(id, ETag)]."""
    import tempfile

    import psycopg2
    import requests

    with tempfile.TemporaryDirectory() as directory:
        h.import_session_type(env, Path(directory))
    http = requests.Session()
    ids = []
    for index in range(count):
        response = http.post(f"{base}/v1/bookings", json={
            "session_type": SLUG, "email": f"client{index}@example.com", "name": f"Client {index}"}, timeout=10)
        if response.status_code != 201:
            raise RuntimeError(f"POST /v1/bookings answered {response.status_code}: {response.text}")
        ids.append(response.json()["id"])
    values = ", ".join(f"({n}, '{a}', '{b}', '{t}', '{c}')" for n, (a, b, t, c) in enumerate(HAPPY_PATH, 1))
    with psycopg2.connect(database_url, connect_timeout=5) as connection, connection.cursor() as cursor:
        cursor.execute(
            """UPDATE booking SET state = 'BOOKING_CONFIRMED', version = version + %s,
                   scheduled_start = (now() AT TIME ZONE 'utc') + interval '3 days',
                   scheduled_end = (now() AT TIME ZONE 'utc') + interval '3 days 1 hour',
                   amount_due = amount, amount_paid = amount,
                   calendly_event_uri = 'https://api.calendly.com/scheduled_events/' || md5(id),
                   calendly_invitee_uri = 'https://api.calendly.com/scheduled_events/' || md5(id) || '/invitees/' || md5(id || 'i'),
                   checkout_session_id = 'cs_test_' || md5(id), payment_attempt = 1, next_check_at = NULL
               WHERE id = ANY(%s)""", (len(HAPPY_PATH), ids))
        cursor.execute(
            f"""INSERT INTO transition (booking_id, from_state, state, trigger, cause, at)
                SELECT b.id, s.from_state, s.state, s.trigger, s.cause || md5(b.id),
                       b.created_at + s.n * interval '7 seconds'
                FROM booking b CROSS JOIN (VALUES {values}) AS s(n, from_state, state, trigger, cause)
                WHERE b.id = ANY(%s)""", (ids,))
    connection.close()
    bookings = []
    for booking_id in ids:
        response = http.get(f"{base}/v1/bookings/{booking_id}", timeout=10)
        view = response.json()
        if response.status_code != 200 or len(view["history"]) != 1 + len(HAPPY_PATH):
            raise RuntimeError(f"unexpected status view: {response.status_code} {view}")
        bookings.append((booking_id, response.headers["ETag"]))
    return bookings


def write_status_requests(path: Path, bookings: list[tuple[str, str]], with_etag: bool) -> None:
    with open(path, "w") as out:
        for booking_id, etag in bookings:
            header = f"\tIf-None-Match: {etag}" if with_etag else ""
            out.write(f"/v1/bookings/{booking_id}{header}\t\n")


def run(args, cleanup):
    import requests

    if args.quick:
        args.bookings, args.rounds, args.seconds = 100, 1, 2.0
    results = {"machine": h.machine(), "versions": h.versions(), "settings": vars(args).copy()}
    work = h.workdir(cleanup, "bench-status")
    database_url = cleanup.enter_context(h.scratch_database())
    cleanup.enter_context(h.redis_scratch())
    env = h.service_environment(database_url, PYTHONPATH=str(h.BENCH))
    h.run_cli(env, "db", "upgrade")
    bases = {}
    servers = [("bare", "refapps:bare_app()", h.ROOT), ("bookingflow", None, h.ROOT)]
    if args.before:
        servers.append(("before", None, Path(args.before).resolve()))
    for name, spec, cwd in servers:
        port = h.free_port()
        process = h.start(cleanup, h.gunicorn_command(env, port, spec), env, work / f"{name}.log", name=name, cwd=cwd)
        bases[name] = f"http://127.0.0.1:{port}"
        h.wait_http(bases[name] + "/healthz", process)

    h.log(f"making {args.bookings} confirmed bookings")
    bookings = make_bookings(env, bases["bookingflow"], database_url, args.bookings)
    plain, conditional = work / "plain.txt", work / "conditional.txt"
    write_status_requests(plain, bookings, with_etag=False)
    write_status_requests(conditional, bookings, with_etag=True)
    sample_id, sample_etag = bookings[0]
    check = requests.get(f"{bases['bookingflow']}/v1/bookings/{sample_id}", headers={"If-None-Match": sample_etag})
    if check.status_code != 304:
        raise RuntimeError(f"If-None-Match with the current ETag answered {check.status_code}, not 304")
    full_size = len(requests.get(f"{bases['bookingflow']}/v1/bookings/{sample_id}").content)
    if args.before:
        # The change under test must not change a single answer: same status, body, ETag and caching.
        for booking_id, etag in bookings[:50]:
            for headers in ({}, {"If-None-Match": etag}, {"If-None-Match": '"v0"'}):
                answers = [requests.get(f"{bases[name]}/v1/bookings/{booking_id}", headers=headers)
                           for name in ("bookingflow", "before")]
                seen = [(a.status_code, a.content, a.headers.get("ETag"), a.headers.get("Cache-Control"))
                        for a in answers]
                if seen[0] != seen[1]:
                    raise RuntimeError(f"the two trees answer differently for {headers}: {seen}")
        for path in ("/v1/bookings/nope", "/v1/bookings/" + "x" * 40):
            answers = [requests.get(bases[name] + path) for name in ("bookingflow", "before")]
            if [(a.status_code, a.content) for a in answers][0] != [(a.status_code, a.content) for a in answers][1]:
                raise RuntimeError(f"the two trees answer differently for {path}")
        h.log("before and after answer byte for byte alike (200, 304, stale ETag, 404)")

    targets = {"bare": (bases["bare"], plain), "full view": (bases["bookingflow"], plain),
               "If-None-Match": (bases["bookingflow"], conditional)}
    if args.before:
        targets["full view (before)"] = (bases["before"], plain)
        targets["If-None-Match (before)"] = (bases["before"], conditional)
    for name, (base, file) in targets.items():  # warm-up
        h.run_wrk(base, file, duration=2, connections=args.connections, method="GET")
    names = list(targets)
    rounds = []
    for index in range(args.rounds):
        shift = index % len(names)
        order = names[shift:] + names[:shift]
        measured = {}
        for name in order:
            base, file = targets[name]
            measured[name] = h.run_wrk(base, file, duration=args.seconds, connections=args.connections, method="GET")
            h.log(f"round {index + 1}: {name} {measured[name]['rps']:.0f} req/s")
        rounds.append(measured)
    results["rounds"] = rounds
    summary = {}
    for name in names:
        rps = [r[name]["rps"] for r in rounds]
        summary[name] = {
            "rps_median": h.median(rps), "rps_min": min(rps), "rps_max": max(rps),
            "p50_ms": h.median([r[name]["latency_ms"]["p50"] for r in rounds]),
            "p99_ms": h.median([r[name]["latency_ms"]["p99"] for r in rounds]),
            "bytes_per_response": h.median([r[name]["bytes"] / max(1, r[name]["requests"]) for r in rounds]),
            "ratio_to_bare": h.median([r[name]["rps"] / r["bare"]["rps"] for r in rounds]),
            "errors": sum(sum(r[name]["errors"].values()) for r in rounds),
        }
    results["summary"] = summary
    gain = h.median([r["If-None-Match"]["rps"] / r["full view"]["rps"] for r in rounds])
    results["conditional_over_full"] = gain
    if args.before:
        results["after_over_before"] = {
            kind: h.median([r[kind]["rps"] / r[f"{kind} (before)"]["rps"] for r in rounds])
            for kind in ("full view", "If-None-Match")}

    print(f"\nGET /v1/bookings/<id> per second: {args.bookings} bookings (6 history rows each, full view "
          f"{full_size} bytes of JSON), {args.rounds} round(s) of {args.seconds:g} s, wrk -t1 -c{args.connections}\n")
    print(h.markdown_table(
        ["target", "req/s (median)", "min–max", "p50 ms", "p99 ms", "bytes/response", "÷ bare", "errors"],
        [[name, s["rps_median"], f"{s['rps_min']:.0f}–{s['rps_max']:.0f}", s["p50_ms"], s["p99_ms"],
          f"{s['bytes_per_response']:.0f}", f"{s['ratio_to_bare']:.3f}", s["errors"]] for name, s in summary.items()]))
    print(f"\nIf-None-Match ÷ full view (per-round median): {gain:.2f}")
    if args.before:
        print("after ÷ before (per-round medians): " + ", ".join(
            f"{kind} {value:.2f}" for kind, value in results["after_over_before"].items()))
    h.print_environment(results)
    return results


if __name__ == "__main__":
    h.main_wrapper(run, description=__doc__.splitlines()[0], default_deadline=900, quick_deadline=100,
                   extra_args=arguments)
