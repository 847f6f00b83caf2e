"""`bookingflow dev` as a newcomer runs it: a subprocess on a free port, with its database in a folder of
the test's, its output in a log file; stopped with SIGTERM as Ctrl-C would."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from support.realstack import ROOT, base_environment, free_port, stop_group
from support.waiting import wait_until

# A booking goes from one state to the next in well under a second on an idle machine.
STATE_TIMEOUT = 30


@dataclass
class Dev:
    base: str
    log: Path
    database: Path
    process: subprocess.Popen

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def booking(self, booking_id: str) -> dict:
        response = requests.get(f"{self.base}/v1/bookings/{booking_id}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for_state(self, booking_id: str, *states: str) -> dict:
        def reached():
            view = self.booking(booking_id)
            return view if view["state"] in states else None

        try:
            return wait_until(reached, timeout=STATE_TIMEOUT, interval=0.1, message=f"{booking_id} in {states}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; it is {self.booking(booking_id)['state']}\n--- dev's log ---\n"
                                 f"{self.output()[-6000:]}") from None

    def create_booking(self, session_type: str = "intro-call", **extra) -> dict:
        response = requests.post(f"{self.base}/v1/bookings", timeout=10, json={
            "session_type": session_type, "email": "ada@example.com", "name": "Ada Lovelace", **extra})
        assert response.status_code == 201, response.text
        return response.json()

    def control(self, booking_id: str, action: str, **form) -> requests.Response:
        """Press a button of the booking's control page; the answer is the page it comes back to."""
        return requests.post(f"{self.base}/dev/bookings/{booking_id}", data={"action": action, **form}, timeout=20)


@contextmanager
def running_dev(folder: Path, name: str = "bookingflow.db", port: int | None = None):
    """`bookingflow dev` with its database at folder/name (on `port`, else a free one), until the block ends."""
    port = port or free_port()
    database = folder / name
    log = folder / f"dev-{port}.log"
    env = {**base_environment(), "DATABASE_URL": f"sqlite:///{database}", "PORT": str(port)}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "ops.cli", "dev"], env=env, cwd=ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    dev = Dev(f"http://127.0.0.1:{port}", log, database, process)
    try:
        wait_until(lambda: "all checks passed" in dev.output() or " failed, " in dev.output()
                   or process.poll() is not None, timeout=60, message="bookingflow dev's set-up check")
        assert "all checks passed" in dev.output(), dev.output()
        yield dev
    finally:
        stop_group(process)
