"""`bookingflow demo`: one booking driven through a running dev service, every state printed.

It plays the client's part: picks a session type, creates a booking, schedules it in the sandbox
Calendly, reports the slot, pays in the sandbox Checkout, and waits for BOOKING_CONFIRMED.
"""

from __future__ import annotations

import time

import requests

from models import bootstrap
from bookingflow import settings as settings_module
from bookingflow.providers.stripe_amounts import display

DEADLINE_SECONDS = 60
POLL_SECONDS = 0.5
FAILED = {"IDLE", "PAYMENT_FAILED", "ERROR_CALENDLY", "ERROR_PAYMENT", "ERROR_WEBHOOK", "ERROR_RECOVERY"}


class DemoFailed(Exception):
    pass


def _call(session: requests.Session, method: str, url: str, expect: int, **kwargs) -> dict:
    try:
        response = session.request(method, url, timeout=10, **kwargs)
    except requests.RequestException as exc:
        raise DemoFailed(f"cannot reach {url}: {exc.__class__.__name__} (is `bookingflow dev` running?)") from None
    if response.status_code != expect:
        raise DemoFailed(f"{method} {url} answered {response.status_code}: {response.text[:300]}")
    return response.json()


def _drive(base: str, session: requests.Session) -> None:
    types = _call(session, "GET", f"{base}/v1/session-types", 200)
    if not types:
        raise DemoFailed("no session types on offer")
    chosen = types[0]
    print(f"session type: {chosen['name']} ({display(chosen['price'], chosen['currency'])})")
    booking = _call(session, "POST", f"{base}/v1/bookings", 201,
                    json={"session_type": chosen["slug"], "email": "demo.client@example.com", "name": "Demo Client"})
    booking_id, status_url = booking["id"], booking["status_url"]
    print(f"booking {booking_id}")
    print(f"  state: {booking['state']}")
    slot = _call(session, "POST", f"{base}/_sandbox/calendly/_sandbox/schedule", 201,
                 json={"scheduling_url": booking["scheduling_url"]})
    print(f"  scheduled in Calendly: {slot['event_uri']}")
    _call(session, "POST", f"{base}/v1/bookings/{booking_id}/scheduled", 202,
          json={"event_uri": slot["event_uri"], "invitee_uri": slot["invitee_uri"]})
    _follow(session, status_url)


def _follow(session: requests.Session, status_url: str) -> None:
    seen, paid = None, False
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        view = _call(session, "GET", status_url, 200)
        if view["state"] != seen:
            seen = view["state"]
            print(f"  state: {seen}")
        if seen == "BOOKING_CONFIRMED":
            print(f"confirmed: {view['scheduled_start']} to {view['scheduled_end']}, "
                  f"paid {display(view['amount_paid'], view['currency'])}")
            return
        if seen in FAILED:
            raise DemoFailed(f"the booking stopped in {seen}")
        if view.get("checkout_url") and not paid:
            print(f"  paying at {view['checkout_url']}")
            _call(session, "POST", view["checkout_url"] + "/pay", 200, json={"outcome": "paid"})
            paid = True
        time.sleep(POLL_SECONDS)
    raise DemoFailed(f"no confirmation within {DEADLINE_SECONDS}s; last state {seen}")


def run_demo(url: str | None = None) -> int:
    try:
        base = (url or f"http://127.0.0.1:{settings_module.load().port}").rstrip("/")
    except settings_module.SettingsError as exc:
        bootstrap.fail(str(exc))
    try:
        _drive(base, requests.Session())
    except DemoFailed as exc:
        print(f"demo failed: {exc}")
        return 1
    return 0
