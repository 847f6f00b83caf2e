"""Item 5 (detail): what one signed Stripe delivery costs in the web process, step by step.

In this process, one thread, against a scratch PostgreSQL database and Redis database 13: each
step of POST /webhooks/stripe is timed on its own (CPU time of this thread and wall time, medians of
batches), then the whole request through the Flask app (WSGI, no server), beside a bare Flask route
and the reference app of item 1 through the same WSGI call. It tells what the sampling profile of
profile_hotpath.py cannot: how many microseconds of CPU each duty takes, outside any contention.

    python bench/intake_steps.py
    python bench/intake_steps.py --quick
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402


def arguments(parser):
    parser.add_argument("--iterations", type=int, default=2000, help="calls per batch")
    parser.add_argument("--batches", type=int, default=5)


def timed(function, iterations: int, batches: int) -> dict:
    cpu, wall = [], []
    for _ in range(batches):
        c0, w0 = time.thread_time(), time.perf_counter()
        for _ in range(iterations):
            function()
        cpu.append((time.thread_time() - c0) / iterations * 1e6)
        wall.append((time.perf_counter() - w0) / iterations * 1e6)
    return {"cpu_us": h.median(cpu), "wall_us": h.median(wall)}


def wsgi_caller(app, path: str, body: bytes, headers: dict):
    """A minimal WSGI call of `app` (no test client): what gunicorn hands the app, roughly."""
    base = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()},
    }

    def call(environ_extra=None, body_override=None):
        data = body_override if body_override is not None else body
        environ = {**base, "wsgi.input": io.BytesIO(data), "CONTENT_LENGTH": str(len(data)), **(environ_extra or {})}
        status = []
        result = app(environ, lambda s, h_, e=None: status.append(s))
        b"".join(result)
        if hasattr(result, "close"):
            result.close()
        return status[0]

    return call


def run(args, cleanup):
    if args.quick:
        args.iterations, args.batches = 200, 3
    results = {"machine": h.machine(), "versions": h.versions(), "settings": vars(args).copy()}
    database_url = cleanup.enter_context(h.scratch_database())
    cleanup.enter_context(h.redis_scratch())
    metrics_dir = tempfile.mkdtemp(prefix="bench-steps-metrics-")
    cleanup.callback(lambda: __import__("shutil").rmtree(metrics_dir, ignore_errors=True))
    env = h.service_environment(database_url, PROMETHEUS_MULTIPROC_DIR=metrics_dir)
    h.run_cli(env, "db", "upgrade")
    os.environ.update(env)  # this process becomes a web worker, as gunicorn_conf would set it up

    from bookingflow import logs, settings as settings_module

    settings_module.configure(settings_module.load(env))
    devnull = open(os.devnull, "w")
    cleanup.callback(devnull.close)
    logs.configure(json_lines=True, stream=devnull)  # the JSON lines gunicorn_conf configures, discarded

    from intake import create_app
    from models.db import database

    cleanup.callback(lambda: database.close_all() if hasattr(database.obj, "close_all") else None)
    app = create_app()
    import refapps

    bare = refapps.bare_app()
    reference = refapps.reference_app()
    duties = refapps.duties_app()  # binds the same database proxy to a pool of its own: same URL, same role

    secret = env["STRIPE_WEBHOOK_SECRET"]
    lines_file = Path(metrics_dir) / "deliveries.txt"
    count = args.iterations * args.batches * 4 + 10  # one each per whole-request app
    h.write_signed_stripe_deliveries(lines_file, count, secret)
    deliveries = [(line.split("\t", 1)[0], line.split("\t", 1)[1].rstrip("\n").encode())
                  for line in lines_file.read_text().splitlines()]
    supply = iter(deliveries)

    from intake.signatures import verify_stripe
    from jobs.events import process_event
    from models.tables import ProviderEvent
    from bookingflow import metrics

    header, body = deliveries[0]
    steps = {}
    steps["pool checkout + return (connect, close)"] = timed(
        lambda: (database.connect(reuse_if_open=True), database.close()), args.iterations, args.batches)
    steps["verify_stripe (HMAC of the body)"] = timed(
        lambda: verify_stripe(body, header, (secret,)), args.iterations, args.batches)
    steps["json.loads of the body"] = timed(lambda: json.loads(body), args.iterations, args.batches)

    import stripe

    steps["stripe.Webhook.construct_event (reference)"] = timed(
        lambda: stripe.Webhook.construct_event(body, header, secret), args.iterations, args.batches)

    database.connect(reuse_if_open=True)
    counter = iter(range(10**9))

    def insert():
        n = next(counter)
        ProviderEvent.create(provider="stripe", event_id=f"evt_steps_{n}", type="checkout.session.completed",
                             subject=f"cs_steps_{n}", payload=body.decode())

    steps["INSERT provider_event (Model.create, commit)"] = timed(insert, args.iterations, args.batches)
    from models import inbox

    def store():
        n = next(counter)
        inbox.store("stripe", f"evt_steps_{n}", "checkout.session.completed", f"cs_steps_{n}", body.decode())

    steps["models.inbox.store (the intake's INSERT as the code now does it)"] = timed(store, args.iterations, args.batches)
    steps["process_event.send (Redis)"] = timed(lambda: process_event.send(1), args.iterations, args.batches)
    database.close()
    import logging

    intake_log = logging.getLogger("intake")
    steps["one JSON log line"] = timed(lambda: intake_log.info("%s %s %s", "POST", "/webhooks/stripe", 200),
                                       args.iterations, args.batches)
    steps["metrics.request (Prometheus, multiprocess)"] = timed(
        lambda: metrics.request("/webhooks/stripe", "POST", 200, 0.01), args.iterations, args.batches)

    def through(app_):
        call = wsgi_caller(app_.wsgi_app if hasattr(app_, "wsgi_app") else app_, "/webhooks/stripe", b"", {})

        def one():
            sig, payload = next(supply)
            status = call({"HTTP_STRIPE_SIGNATURE": sig}, payload)
            if not status.startswith("200"):
                raise RuntimeError(f"{status}")
        return one

    whole = {
        "bare Flask route": timed(through(bare), args.iterations, args.batches),
        "reference app (construct_event + send)": timed(through(reference), args.iterations, args.batches),
        "duties app (verify, INSERT, send)": timed(through(duties), args.iterations, args.batches),
        "bookingflow POST /webhooks/stripe": timed(through(app), args.iterations, args.batches),
    }
    results["steps"], results["whole"] = steps, whole

    print(f"\nOne signed Stripe delivery ({len(body)} bytes), in one thread, no server: medians of "
          f"{args.batches} batches of {args.iterations}\n")
    print(h.markdown_table(["step", "CPU µs", "wall µs"],
                           [[name, f"{v['cpu_us']:.0f}", f"{v['wall_us']:.0f}"] for name, v in steps.items()]))
    print("\nWhole requests through the WSGI app (no gunicorn), same process:\n")
    reference_cpu = whole["reference app (construct_event + send)"]["cpu_us"]
    print(h.markdown_table(["app", "CPU µs", "wall µs", "CPU ÷ reference"],
                           [[name, f"{v['cpu_us']:.0f}", f"{v['wall_us']:.0f}", f"{v['cpu_us'] / reference_cpu:.2f}"]
                            for name, v in whole.items()]))
    h.print_environment(results)
    return results


if __name__ == "__main__":
    h.main_wrapper(run, description=__doc__.splitlines()[0], default_deadline=600, quick_deadline=100,
                   extra_args=arguments)
