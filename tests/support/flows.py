"""Driving bookings the way the frontend and the providers do, over HTTP."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from support.waiting import wait_until


class Client:
    """The frontend's side: our client API on `base`, the sandbox's customer actions on `sandbox`."""

    def __init__(self, base: str, sandbox):
        self.base, self.sandbox = base, sandbox
        self.http = requests.Session()

    def create_booking(self, slug: str, email: str = "ada@example.com", name: str = "Ada Lovelace") -> dict:
        response = self.http.post(f"{self.base}/v1/bookings", json={"session_type": slug, "email": email, "name": name})
        assert response.status_code == 201, response.text
        return response.json()

    def status(self, booking_id: str) -> dict:
        response = self.http.get(f"{self.base}/v1/bookings/{booking_id}")
        assert response.status_code == 200, f"GET {booking_id}: {response.status_code} {response.text}"
        return response.json()

    def schedule_in_calendly(self, scheduling_url: str, **options) -> dict:
        response = self.http.post(f"{self.sandbox.base}/calendly/_sandbox/schedule",
                                  json={"scheduling_url": scheduling_url, **options})
        assert response.status_code == 201, response.text
        return response.json()

    def report_scheduled(self, booking_id: str, slot: dict) -> requests.Response:
        return self.http.post(f"{self.base}/v1/bookings/{booking_id}/scheduled",
                              json={"event_uri": slot["event_uri"], "invitee_uri": slot["invitee_uri"]})

    def pay(self, checkout_url: str, outcome: str = "paid") -> dict:
        response = self.http.post(checkout_url + "/pay", json={"outcome": outcome})
        assert response.status_code == 200, response.text
        return response.json()

    def settle(self, checkout_url: str, outcome: str) -> dict:
        response = self.http.post(checkout_url + "/settle", json={"outcome": outcome})
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for_state(self, booking_id: str, state: str, timeout: float = 20) -> dict:
        last = {}

        def reached():
            last.update(self.status(booking_id))
            return last if last["state"] == state else None

        try:
            return wait_until(reached, timeout=timeout, message=f"booking {booking_id} to reach {state}")
        except AssertionError as error:
            # Either the deadline passed or a poll was refused: say which, with what was last seen.
            raise AssertionError(f"booking stayed in {last.get('state')}, history {last.get('history')}: "
                                 f"{error}") from None

    def book_and_wait_for_checkout(self, slug: str, **schedule_options) -> tuple[dict, dict]:
        booking = self.create_booking(slug)
        slot = self.schedule_in_calendly(booking["scheduling_url"], **schedule_options)
        assert self.report_scheduled(booking["id"], slot).status_code == 202
        return self.wait_for_state(booking["id"], "PAYMENT_PROCESSING"), slot


def without_utm_content(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "utm_content"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def history_states(view: dict) -> list[str]:
    return [row["state"] for row in view["history"]]


def sessions_of(sandbox, booking_id: str) -> list[dict]:
    return [s for s in sandbox.objects("checkout.session") if s.get("client_reference_id") == booking_id]


def confirmed_booking(frontend: Client, slug: str, **schedule_options) -> dict:
    view, _ = frontend.book_and_wait_for_checkout(slug, **schedule_options)
    frontend.pay(view["checkout_url"])
    return frontend.wait_for_state(view["id"], "BOOKING_CONFIRMED")


def hours_from_now(hours: float) -> str:
    import datetime as dt

    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=hours)
    return start.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def money_at_stripe(sandbox, booking_id: str) -> tuple[int, int]:
    """(charged, refunded) for the booking as the Stripe sandbox counts it."""
    sessions = [s for s in sandbox.objects("checkout.session")
                if s.get("client_reference_id") == booking_id and s.get("payment_status") == "paid"]
    intents = {s["payment_intent"] for s in sessions}
    refunded = sum(r["amount"] for r in sandbox.objects("refund")
                   if r["payment_intent"] in intents and r["status"] in ("succeeded", "pending"))
    return sum(s["amount_total"] for s in sessions), refunded


def assert_money(sandbox, view: dict, kept: int) -> None:
    """Charged minus refunded is what the booking keeps, at Stripe and in our books alike."""
    from models.tables import Booking

    charged, refunded = money_at_stripe(sandbox, view["id"])
    booking = Booking.get_by_id(view["id"])
    assert charged - refunded == kept, f"Stripe: charged {charged}, refunded {refunded}; expected to keep {kept}"
    assert (booking.amount_paid, booking.amount_refunded) == (charged, refunded)
    assert view["amount_refunded"] == booking.amount_refunded or view["amount_refunded"] <= refunded


def calendly_event(sandbox, event_uri: str) -> dict:
    (event,) = [e for e in sandbox.objects("scheduled_event") if e["uri"] == event_uri]
    return event


def event_of(sandbox, booking_id: str) -> str:
    """The Calendly event the booking's invitee scheduled (its link carries the booking's id)."""
    (event_uri,) = {i["event"] for i in sandbox.objects("invitee")
                    if (i.get("tracking") or {}).get("utm_content") == booking_id}
    return event_uri
