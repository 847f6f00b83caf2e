"""Item 1: signed Stripe deliveries accepted per second by `web`, beside three references.

Four apps, each under the Procfile's own `web` command line (same gunicorn settings, bound to
127.0.0.1), measured in one run by the same load generator:

  bare         a Flask route that answers 200            (bench/refapps.py: bare_app)
  reference    stripe.Webhook.construct_event + one dramatiq send to the same Redis
                                                         (bench/refapps.py: reference_app)
  duties       verify, store the row durably, one dramatiq send, answer; nothing else: the least
               that keeps bookingflow's duties      (bench/refapps.py: duties_app)
  bookingflow  POST /webhooks/stripe: verify, store in PostgreSQL, enqueue, answer

wrk sends checkout.session.completed events pre-signed just before each measurement (a fresh
event id each, so none is a duplicate; wrk's Lua script gives each of its threads its own lines).
Rounds alternate the apps in a rotating order; every round yields its own ratios, and the
table reports the medians. After every measurement of an app that stores (bookingflow, before,
duties) the script checks that the stored rows and the queued messages match the 2xx answers.

    python bench/webhook_intake.py            # 8 rounds of 6 s per app
    python bench/webhook_intake.py --quick    # 1 round of 2 s per app
    python bench/webhook_intake.py --small    # 0.4 kB events instead of 3.4 kB
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

APPS = (
    ("bare", "refapps:bare_app()"),
    ("reference", "refapps:reference_app()"),
    ("duties", "refapps:duties_app()"),
    ("bookingflow", None),  # the Procfile's own app
)
# Where each app's messages wait (none is consumed). The apps that store a row per delivery are
# checked after every measurement: rows stored and messages queued must match the 2xx answers.
QUEUE_KEYS = {"reference": "dramatiq:bench_reference.msgs", "duties": "dramatiq:bench_duties.msgs",
              "bookingflow": "dramatiq:default.msgs", "bookingflow-before": "dramatiq:default.msgs"}
STORING = ("duties", "bookingflow", "bookingflow-before")


def arguments(parser):
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0, help="wrk duration of one measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--max-rate", type=int, default=2500,
                        help="requests/s the prepared deliveries must cover without repeating one")
    parser.add_argument("--small", action="store_true", help="send 0.4 kB events instead of Stripe's 3.4 kB ones")
    parser.add_argument("--before", metavar="DIR", help="also serve the copy of the product tree in DIR (e.g. "
                        "taken before a change) as `bookingflow-before`, same command line, in the same rounds")


def prepare_requests(path: Path, count: int, secret: str, small: bool = False) -> int:
    raw = path.with_suffix(".raw")
    size = h.write_signed_stripe_deliveries(raw, count, secret, small)
    with open(raw) as source, open(path, "w") as out:
        for line in source:
            out.write("/webhooks/stripe\tStripe-Signature: " + line)
    raw.unlink()
    return size


def stored_and_queued(database_url: str, redis_client, name: str) -> tuple[int, int]:
    import psycopg2

    with psycopg2.connect(database_url, connect_timeout=5) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM provider_event")
        rows = cursor.fetchone()[0]
    connection.close()
    return rows, redis_client.hlen(QUEUE_KEYS[name])


def run(args, cleanup):
    import redis

    if args.quick:
        args.rounds, args.seconds, args.max_rate = 1, 2.0, 3000
    results = {"machine": h.machine(), "versions": h.versions(), "settings": vars(args).copy()}
    work = h.workdir(cleanup, "bench-intake")
    database_url = cleanup.enter_context(h.scratch_database())
    cleanup.enter_context(h.redis_scratch())
    redis_client = redis.Redis.from_url(h.REDIS_URL)
    env = h.service_environment(database_url, PYTHONPATH=str(h.BENCH))
    h.run_cli(env, "db", "upgrade")

    ports, commands, processes = {}, {}, {}
    apps = list(APPS) + ([("bookingflow-before", None)] if args.before else [])
    for name, spec in apps:
        port = h.free_port()
        command = h.gunicorn_command(env, port, spec)
        cwd = Path(args.before).resolve() if name == "bookingflow-before" else h.ROOT
        process = h.start(cleanup, command, env, work / f"{name}.log", name=name, cwd=cwd)
        h.wait_http(f"http://127.0.0.1:{port}/healthz", process)
        ports[name], commands[name], processes[name] = port, " ".join(command), process
        h.log(f"{name}: {' '.join(command)}")
    results["commands"] = commands

    count = int(args.max_rate * args.seconds)
    requests_file = work / "requests.txt"
    secret = env["STRIPE_WEBHOOK_SECRET"]

    def measure(name: str, seconds: float) -> dict:
        size = prepare_requests(requests_file, count, secret, args.small)  # signed now: well inside Stripe's 300 s
        before = stored_and_queued(database_url, redis_client, name) if name in STORING else None
        meter = h.CpuMeter({name: processes[name].pid})
        meter.start()
        outcome = h.run_wrk(f"http://127.0.0.1:{ports[name]}", requests_file, duration=seconds,
                            connections=args.connections, threads=args.wrk_threads)
        used = meter.stop()
        # CPU milliseconds per accepted request, by part of the system.
        outcome["cpu_ms_per_request"] = {part: 1000 * used[part] / max(1, outcome["requests"])
                                         for part in (name, "postgres", "redis", "load generator", "machine")}
        outcome["machine_busy"] = used["machine"] / used["wall"] / (os.cpu_count() or 1)
        outcome["body_bytes"] = size
        if before is not None:
            time.sleep(1)  # let requests wrk gave up on at its stop finish storing and queueing
            rows, queued = stored_and_queued(database_url, redis_client, name)
            ok = outcome["requests"] - outcome["errors"]["status"]
            outcome["stored"], outcome["queued"] = rows - before[0], queued - before[1]
            # wrk counts requests whose answer arrived before it stopped; a few more may have been
            # handled in the last instant, so stored may exceed ok by up to the connection count.
            if not (ok <= outcome["stored"] <= ok + args.connections and outcome["queued"] == outcome["stored"]):
                raise RuntimeError(f"{name} did not store and queue every accepted delivery: {outcome}")
        if outcome["errors"]["status"] or outcome["errors"]["timeout"]:
            h.log(f"{name}: {outcome['errors']} errors")
        return outcome

    h.log("warm-up")
    for name, _ in apps:
        measure(name, min(2.0, args.seconds))

    rounds = []
    names = [name for name, _ in apps]
    for index in range(args.rounds):
        shift = index % len(names)
        order = names[shift:] + names[:shift]
        measured = {}
        for name in order:
            measured[name] = measure(name, args.seconds)
            h.log(f"round {index + 1}: {name} {measured[name]['rps']:.0f} req/s "
                  f"p50 {measured[name]['latency_ms']['p50']:.1f} ms p99 {measured[name]['latency_ms']['p99']:.1f} ms"
                  f" wraps {measured[name]['wraps']}")
        rounds.append({"order": order, **measured})
    results["rounds"] = rounds

    summary = {}
    for name in names:
        rps = [r[name]["rps"] for r in rounds]
        summary[name] = {
            "rps_median": h.median(rps), "rps_min": min(rps), "rps_max": max(rps),
            "p50_ms": h.median([r[name]["latency_ms"]["p50"] for r in rounds]),
            "p99_ms": h.median([r[name]["latency_ms"]["p99"] for r in rounds]),
            "ratio_to_reference": h.median([r[name]["rps"] / r["reference"]["rps"] for r in rounds]),
            "ratio_to_bare": h.median([r[name]["rps"] / r["bare"]["rps"] for r in rounds]),
            "non_2xx": sum(r[name]["errors"]["status"] for r in rounds),
            "repeated_deliveries": sum(r[name]["wraps"] for r in rounds),
            "cpu_ms_per_request": {part: h.median([r[name]["cpu_ms_per_request"][part if part != "app" else name]
                                                   for r in rounds])
                                   for part in ("app", "postgres", "redis", "load generator", "machine")},
            "machine_busy": h.median([r[name]["machine_busy"] for r in rounds]),
        }
    results["summary"] = summary

    print(f"\nSigned Stripe deliveries accepted per second: {args.rounds} round(s) of {args.seconds:g} s, "
          f"wrk -t{args.wrk_threads} -c{args.connections}, body {rounds[0]['bookingflow']['body_bytes']} bytes\n")
    print(h.markdown_table(
        ["app", "req/s (median)", "min–max", "p50 ms", "p99 ms", "÷ reference", "÷ bare", "non-2xx"],
        [[name, s["rps_median"], f"{s['rps_min']:.0f}–{s['rps_max']:.0f}", s["p50_ms"], s["p99_ms"],
          f"{s['ratio_to_reference']:.2f}", f"{s['ratio_to_bare']:.3f}", s["non_2xx"]]
         for name, s in summary.items()]))
    print("\nCPU milliseconds per request (medians over rounds), by part of the machine:\n")
    print(h.markdown_table(
        ["app", "app's gunicorn", "postgres", "redis", "wrk", "whole machine (incl. other users)", "machine busy"],
        [[name, f"{s['cpu_ms_per_request']['app']:.3f}", f"{s['cpu_ms_per_request']['postgres']:.3f}",
          f"{s['cpu_ms_per_request']['redis']:.3f}", f"{s['cpu_ms_per_request']['load generator']:.3f}",
          f"{s['cpu_ms_per_request']['machine']:.3f}", f"{100 * s['machine_busy']:.0f}%"]
         for name, s in summary.items()]))
    if args.before:
        change = h.median([r["bookingflow"]["rps"] / r["bookingflow-before"]["rps"] for r in rounds])
        results["after_over_before"] = change
        print(f"\nbookingflow ÷ bookingflow-before ({args.before}), per-round median: {change:.2f}")
    ratio = summary["bookingflow"]["ratio_to_reference"]
    aim = 1.0 if args.small else 1.2  # issue 17's goals for the two sizes
    print("\nbookingflow ÷ reference, per round: "
          + ", ".join(f"{r['bookingflow']['rps'] / r['reference']['rps']:.2f}" for r in rounds)
          + f"; median {ratio:.2f} (aim: at least {aim:.2f}: {'met' if ratio >= aim else 'NOT met'})")
    bound = summary["duties"]["ratio_to_reference"]
    print("duties ÷ reference (the most an app keeping the duties reached), per round: "
          + ", ".join(f"{r['duties']['rps'] / r['reference']['rps']:.2f}" for r in rounds)
          + f"; median {bound:.2f}; bookingflow ÷ duties: "
          + f"{h.median([r['bookingflow']['rps'] / r['duties']['rps'] for r in rounds]):.2f}")
    h.print_environment(results)
    return results


if __name__ == "__main__":
    h.main_wrapper(run, description=__doc__.splitlines()[0], default_deadline=900, quick_deadline=100,
                   extra_args=arguments)
