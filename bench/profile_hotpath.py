"""Item 5: where the web process spends its time on its hottest paths, sampled with py-spy.

Starts one app under the Procfile's `web` command line (bound to 127.0.0.1), loads it with wrk,
and records every gunicorn worker with `py-spy record` for the same seconds. Prints the functions
with the most samples (inclusive and self); with --out it keeps py-spy's raw collapsed stacks there
(one file per worker; any flame graph tool reads them).

    python bench/profile_hotpath.py                       # POST /webhooks/stripe on bookingflow
    python bench/profile_hotpath.py --path status         # GET /v1/bookings/<id>, no If-None-Match
    python bench/profile_hotpath.py --path status-304     # the same with a matching If-None-Match
    python bench/profile_hotpath.py --app reference       # the reference app of item 1
    python bench/profile_hotpath.py --quick
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

SPECS = {"bookingflow": None, "reference": "refapps:reference_app()", "bare": "refapps:bare_app()",
         "duties": "refapps:duties_app()"}


def arguments(parser):
    parser.add_argument("--app", choices=sorted(SPECS), default="bookingflow")
    parser.add_argument("--path", choices=("webhook", "status", "status-304"), default="webhook")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--tree", metavar="DIR", help="serve the copy of the product tree in DIR instead "
                        "(e.g. one taken before a change)")
    parser.add_argument("--out", default=None, help="directory for the raw stacks and flame graphs "
                        "(default: a temporary one, removed at the end)")


def frame_name(frame: str) -> str:
    # py-spy raw frames look like `function (path/to/file.py:123)`; keep function and short file.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, _line = where.rpartition(":")
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if parts else path
    return f"{name} ({short})"


def summarize(raw_files: list[Path], top: int) -> tuple[int, list, list]:
    inclusive, exclusive = collections.Counter(), collections.Counter()
    total = 0
    for raw in raw_files:
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            frames = [frame_name(f) for f in stack.split(";") if f and not f.startswith("process ")
                      and not f.startswith("thread ")]
            if not frames:
                continue
            total += samples
            for frame in set(frames):
                inclusive[frame] += samples
            exclusive[frames[-1]] += samples
    return total, inclusive.most_common(top), exclusive.most_common(top)


def run(args, cleanup):
    if args.quick:
        args.seconds, args.rate, args.top = 4, 100, 15
    if not shutil.which("py-spy"):
        raise SystemExit("py-spy is not installed: pip install py-spy")
    results = {"machine": h.machine(), "versions": h.versions(), "settings": vars(args).copy()}
    work = h.workdir(cleanup, "bench-profile")
    out = Path(args.out) if args.out else work
    out.mkdir(parents=True, exist_ok=True)
    database_url = cleanup.enter_context(h.scratch_database())
    cleanup.enter_context(h.redis_scratch())
    env = h.service_environment(database_url, PYTHONPATH=str(h.BENCH))
    h.run_cli(env, "db", "upgrade")
    port = h.free_port()
    base = f"http://127.0.0.1:{port}"
    command = h.gunicorn_command(env, port, SPECS[args.app])
    server = h.start(cleanup, command, env, work / "web.log", name=args.app,
                     cwd=Path(args.tree).resolve() if args.tree else h.ROOT)
    h.wait_http(base + "/healthz", server)

    requests_file = work / "requests.txt"
    if args.path == "webhook":
        from webhook_intake import prepare_requests

        # Deliveries of their own for the warm-up: replayed in the profiled run, they would be repeats,
        # which take the duplicate's path (a refused INSERT and a read) instead of a new delivery's.
        warm_up_file = work / "warm-up.txt"
        prepare_requests(warm_up_file, 4000 * 3, env["STRIPE_WEBHOOK_SECRET"])
        prepare_requests(requests_file, 4000 * (args.seconds + 4), env["STRIPE_WEBHOOK_SECRET"])
        method = "POST"
    else:
        if args.app != "bookingflow":
            raise SystemExit("the status paths exist in bookingflow only")
        from status_polling import make_bookings, write_status_requests

        bookings = make_bookings(env, base, database_url, 200 if args.quick else 1000)
        write_status_requests(requests_file, bookings, with_etag=args.path == "status-304")
        warm_up_file = requests_file
        method = "GET"

    h.run_wrk(base, warm_up_file, duration=2, connections=args.connections, method=method)
    workers = [pid for pid in h.group_pids(server.pid) if pid != server.pid]
    h.log(f"profiling workers {workers} for {args.seconds}s at {args.rate} Hz")
    raws, spies = [], []
    for pid in workers:
        raw = out / f"{args.app}-{args.path}-{pid}.txt"
        raws.append(raw)
        spies.append(subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--duration", str(args.seconds), "--rate", str(args.rate),
             "--format", "raw", "--output", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True))
        cleanup.callback(lambda p=spies[-1]: p.poll() is None and p.kill())
    load = {}
    loader = threading.Thread(target=lambda: load.update(h.run_wrk(
        base, requests_file, duration=args.seconds + 1, connections=args.connections, method=method)))
    loader.start()
    for spy in spies:
        _, err = spy.communicate(timeout=args.seconds + 60)
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')}")
    loader.join(timeout=args.seconds + 60)
    total, inclusive, exclusive = summarize(raws, args.top)
    results.update(requests_per_second=load.get("rps"), samples=total, inclusive=inclusive, exclusive=exclusive,
                   raw_files=[str(r) for r in raws])

    print(f"\n{args.app} {args.path}{' (tree ' + args.tree + ')' if args.tree else ''}: "
          f"{load.get('rps', 0):.0f} req/s under profiling "
          f"(wrk -c{args.connections}); {total} samples of {len(workers)} workers at {args.rate} Hz\n")
    print("Inclusive (the function or anything it called was on the CPU):\n")
    print(h.markdown_table(["share", "samples", "function"],
                           [[f"{100 * n / total:.1f}%", n, f"`{name}`"] for name, n in inclusive]))
    print("\nSelf (the function itself was on the CPU):\n")
    print(h.markdown_table(["share", "samples", "function"],
                           [[f"{100 * n / total:.1f}%", n, f"`{name}`"] for name, n in exclusive]))
    if args.out:
        print(f"\nraw stacks: {', '.join(str(r) for r in raws)}")
    h.print_environment(results)
    return results


if __name__ == "__main__":
    h.main_wrapper(run, description=__doc__.splitlines()[0], default_deadline=600, quick_deadline=100,
                   extra_args=arguments)
