"""`bookingflow dev` restarted on the same database keeps its sandbox (the JSON file beside the database):
a booking confirmed before the restart is still known to the sandbox's Stripe and Calendly, so it can be
cancelled and refunded after it, without a job failing against objects the sandbox forgot."""

from __future__ import annotations

import requests

from support.devserver import running_dev
from support.realstack import free_port


def test_a_booking_confirmed_before_a_restart_is_cancelled_and_refunded_after_it(tmp_path):
    with running_dev(tmp_path) as first:
        booking = first.create_booking()
        first.control(booking["id"], "schedule")
        first.wait_for_state(booking["id"], "PAYMENT_PROCESSING")
        first.control(booking["id"], "pay")
        confirmed = first.wait_for_state(booking["id"], "BOOKING_CONFIRMED")
    assert (tmp_path / "bookingflow.sandbox.json").exists()

    with running_dev(tmp_path) as second:
        assert "restored from" in second.output()
        assert second.booking(booking["id"])["state"] == "BOOKING_CONFIRMED"
        answer = requests.post(f"{second.base}/v1/bookings/{booking['id']}/cancel", json={"reason": "restarted"},
                               timeout=10)
        assert answer.status_code == 202

        refunded = second.wait_for_state(booking["id"], "REFUND_COMPLETED")
        assert refunded["amount_refunded"] == confirmed["amount_paid"]
        log = second.output()
        assert "Traceback" not in log and "No such payment_intent" not in log, log[-4000:]


def test_a_checkout_left_open_before_a_restart_can_be_paid_after_it(tmp_path):
    port = free_port()  # restarted as a newcomer does: on the same port, so the links it gave still work
    with running_dev(tmp_path, port=port) as first:
        booking = first.create_booking()
        first.control(booking["id"], "schedule")
        view = first.wait_for_state(booking["id"], "PAYMENT_PROCESSING")

    with running_dev(tmp_path, port=port) as second:
        paid = requests.post(view["checkout_url"] + "/pay", json={"outcome": "paid"}, timeout=10)
        assert paid.status_code == 200, paid.text
        second.wait_for_state(booking["id"], "BOOKING_CONFIRMED")


def test_an_unreadable_sandbox_file_stops_dev_with_one_line_saying_what_to_do(tmp_path):
    import subprocess
    import sys

    from support.realstack import ROOT, base_environment

    (tmp_path / "bookingflow.sandbox.json").write_text("{not json")
    env = {**base_environment(), "DATABASE_URL": f"sqlite:///{tmp_path}/bookingflow.db", "PORT": str(free_port())}

    result = subprocess.run([sys.executable, "-m", "ops.cli", "dev"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=60)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # after the schema's log lines
    assert "bookingflow.sandbox.json" in last and "delete it" in last
