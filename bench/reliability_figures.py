"""Write the figures of a fault-suite run into RELIABILITY.md.

    FAULT_FIGURES_PATH=/tmp/faults.json TEST_REDIS_URL=redis://127.0.0.1:6379/15 \
        TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test python -m pytest -m faults
    python bench/reliability_figures.py /tmp/faults.json

The table between the `figures` markers of RELIABILITY.md is replaced; the rest is left as written.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- figures -->", "<!-- /figures -->"


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo.read_text()).group(1))
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    return f"{platform.system()} {platform.machine()}, {cores} cores{memory}, Python {platform.python_version()}"


def unanswered(figures: dict) -> str:
    """How many client requests met a closed connection instead of an answer, and how it was closed."""
    count = figures["client_answers"].get("no answer", 0)
    kinds = sorted({kind for why in figures.get("client_requests_unanswered_why", [])
                    for kind in re.findall(r"\b(\w+(?:Error|Disconnected))\(", why)})
    return f"{count}" + (f" ({', '.join(kinds)})" if kinds else "")


def duration(figures: dict) -> str:
    name, times = max(figures["path_seconds"].items(), key=lambda item: item[1]["max"])
    return (f"{figures['duration_seconds']} s in all; the slowest path, {name.replace('_', ' ')}: "
            f"median {times['median']} s, max {times['max']} s from the first request to its end state")


def table(figures: dict) -> str:
    paths = ", ".join(f"{name.replace('_', ' ')} {n}" for name, n in figures["bookings_per_path"].items())
    processes = figures["processes"]
    outages = figures["outage_seconds"]
    probes = figures["probes_during_outages"]
    rows = [
        ("run finished", f"{figures['finished_at']} on {machine()}"),
        ("bookings run", f"{figures['bookings']} ({paths})"),
        ("processes", f"{processes['web']} web (two intakes), {processes['worker']} workers, "
                      f"{processes['scheduler']} schedulers, from the Procfile"),
        ("faults injected", f"{figures['worker_kills']} worker SIGKILLs; Redis killed and restarted "
                            f"{figures['redis_restarts']}× (down {outages.get('redis', 0)} s); PostgreSQL "
                            f"crashed and restarted {figures['postgres_restarts']}× (down {outages.get('postgres', 0)} s)"),
        ("deliveries", f"{figures['deliveries']} webhook events, {figures['delivery_posts']} POSTs: "
                       f"{figures['duplicate_copies_accepted']} duplicate copies accepted, "
                       f"{figures['copies_sent_to_both_intakes_at_once']} copies sent to both intakes at once, "
                       f"{figures['deliveries_given_up']} given up"),
        ("while a server was down", f"signed deliveries probing the intakes: Redis down "
                                    f"{json.dumps(probes.get('redis', {}))}, PostgreSQL down "
                                    f"{json.dumps(probes.get('postgres', {}))}; answered 2xx: "
                                    f"{sum(figures['probes_2xx_during_outages'].values())}"),
        ("503 answers (retried)", f"{figures['503_to_deliveries']} to deliveries, {figures['503_to_client']} to clients"),
        ("client requests with no answer (retried)", unanswered(figures)),
        ("**bookings lost**", f"**{figures['lost']}**"),
        ("**double charges**", f"**{figures['double_charges']}** (Checkout Sessions: {figures['checkout_sessions']}, "
                               f"{figures['double_checkout_sessions']} doubled; {figures['checkout_replays']} idempotent replays)"),
        ("**double refunds**", f"**{figures['double_refunds']}** (refunds at Stripe: {figures['refunds_at_stripe']}; "
                               f"missing: {figures['missing_refunds']}; money mismatches: {figures['money_mismatches']})"),
        ("double transitions", str(figures["double_transitions"])),
        ("slots released twice", f"{figures['double_slot_releases']} ({figures['slots_released']} released)"),
        ("e-mails sent twice", f"{figures['double_emails']} ({figures['emails_sent']} sent, "
                               f"{figures['emails_unsent']} still in the outbox at the end)"),
        ("**5xx answers other than 503**", f"**{figures['5xx_other_than_503']}**"),
        ("unexplained errors in the logs", str(sum(figures["unexplained_log_errors"].values()))),
        ("duration", duration(figures)),
    ]
    lines = ["| figure | value |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(path: str) -> None:
    figures = json.loads(Path(path).read_text())
    document = ROOT / "RELIABILITY.md"
    text = document.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    document.write_text(text[:start] + "\n" + table(figures) + "\n" + text[end:])


if __name__ == "__main__":
    main(sys.argv[1])
