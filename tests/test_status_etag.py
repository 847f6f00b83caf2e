"""The status view's ETag: a poller that sends it is told 304 only while the body it holds is still the
body the server would send. Every write a client can see bumps the booking's version (models/ is
its only writer), the version is the ETag, so a changed body always comes with a changed ETag."""

from __future__ import annotations

import requests

from models.tables import ProviderEvent
from support.flows import confirmed_booking, hours_from_now
from support.providers import checkout_session, encode, stripe_event, stripe_signature
from support.suite import STRIPE_WEBHOOK_SECRET
from support.waiting import wait_until


class Poller:
    """A frontend tab polling with If-None-Match, remembering every (ETag, body) it was sent."""

    def __init__(self, frontend, booking_id: str):
        self.url = f"{frontend.base}/v1/bookings/{booking_id}"
        self.etag, self.body = None, None
        self.bodies_by_etag: dict[str, list] = {}

    def poll(self) -> dict:
        headers = {"If-None-Match": self.etag} if self.etag else {}
        response = requests.get(self.url, headers=headers, timeout=10)
        if response.status_code == 304:
            # Told nothing changed: while the ETag is still the one the tab holds, so is the body (the
            # booking may move on between the two requests: then the ETag has changed too).
            fresh = requests.get(self.url, timeout=10)
            assert fresh.headers["ETag"] != self.etag or fresh.json() == self.body, (
                f"{self.etag} for two bodies:\nheld  {self.body}\nnow   {fresh.json()}")
            return self.body
        assert response.status_code == 200, response.text
        self.etag, self.body = response.headers["ETag"], response.json()
        bodies = self.bodies_by_etag.setdefault(self.etag, [])
        if self.body not in bodies:
            bodies.append(self.body)
        return self.body


def test_the_etag_changes_whenever_the_status_body_changes_along_a_whole_booking(frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(100))
    poller = Poller(frontend, view["id"])
    poller.poll()
    assert frontend.http.post(f"{frontend.base}/v1/bookings/{view['id']}/cancel", json={}).status_code == 202
    wait_until(lambda: poller.poll()["state"] == "REFUND_COMPLETED", message="refunded, seen by the poller")
    poller.poll()
    assert all(len(bodies) == 1 for bodies in poller.bodies_by_etag.values()), poller.bodies_by_etag


def test_an_error_recorded_without_a_transition_reaches_a_poller_holding_the_old_etag(frontend, live_server):
    view, _ = frontend.book_and_wait_for_checkout("short-call")
    poller = Poller(frontend, view["id"])
    before = poller.poll()
    assert before["error"] is None
    # A delivery naming the booking that cannot be read: the booking stays where it is (no transition
    # takes it there), and shows a validation error.
    session = checkout_session(view["id"], 5000)
    session["amount_total"] = "a lot"
    body = encode(stripe_event("checkout.session.completed", session))
    assert requests.post(f"{live_server}/webhooks/stripe", data=body, timeout=10, headers={
        "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, STRIPE_WEBHOOK_SECRET),
    }).status_code == 200
    wait_until(lambda: ProviderEvent.get_or_none(ProviderEvent.outcome == "invalid"), message="the delivery refused")
    after = poller.poll()
    assert after["state"] == "PAYMENT_PROCESSING"
    assert after["error"] is not None and after["error"]["class"] == "validation"
