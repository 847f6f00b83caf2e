"""Calendly's webhook subscription to this service: found, judged and repaired.

Calendly retries a failing subscription's deliveries for 24 hours, then disables it, and says so to
nobody: `bookingflow check`, the scheduler's subscription sweep and `bookingflow calendly subscribe`
all judge it here, by the same rules. The subscription that counts is the one whose callback URL is
this service's Calendly webhook URL; its scope is the organization when the token's user is an owner
or admin of it, else the user's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from bookingflow import deliveries
from bookingflow.providers import calendly_client
from bookingflow.settings import Settings

WEBHOOK_PATH = "/webhooks/calendly"  # intake/webhooks.py
EVENTS = tuple(sorted(kind for provider, kind in deliveries.HANDLED if provider == deliveries.CALENDLY))
ACTIVE = "active"


def callback_url(current: Settings) -> str:
    return current.webhook_base + WEBHOOK_PATH


@dataclass(frozen=True)
class Standing:
    """Who the token is, and so which scope our subscription lives in."""

    user: str
    organization: str
    role: str | None

    @property
    def scope(self) -> str:
        return "organization" if self.role in calendly_client.ADMIN_ROLES else "user"


def standing() -> Standing:
    user = calendly_client.current_user()
    organization = user["current_organization"]
    return Standing(user["uri"], organization, calendly_client.organization_role(user["uri"], organization))


@dataclass(frozen=True)
class Health:
    problem: str | None  # None (healthy), "missing", "disabled" or "events" (active, without all of EVENTS)
    subscription: dict | None = None
    missing_events: tuple[str, ...] = ()

    def describe(self, url: str) -> str:
        if self.problem is None:
            return f"active, {', '.join(EVENTS)} to {url}"
        if self.problem == "missing":
            return f"no subscription sends to {url}"
        if self.problem == "disabled":
            return f"{self.subscription['uri']} to {url} is {self.subscription['state']} (deliveries failed, or it was switched off)"
        return f"{self.subscription['uri']} to {url} lacks {', '.join(self.missing_events)}"


def _ours(at: Standing, url: str, scope: str) -> list[dict]:
    return [s for s in calendly_client.list_webhook_subscriptions(scope, at.organization, at.user)
            if s.get("callback_url") == url]


def judge(subscriptions: list[dict]) -> Health:
    """The best of the subscriptions that send to our URL."""
    for subscription in subscriptions:
        if subscription.get("state") == ACTIVE and set(EVENTS) <= set(subscription.get("events") or ()):
            return Health(None, subscription)
    for subscription in subscriptions:
        if subscription.get("state") == ACTIVE:
            missing = tuple(e for e in EVENTS if e not in (subscription.get("events") or ()))
            return Health("events", subscription, missing)
    return Health("disabled", subscriptions[0]) if subscriptions else Health("missing")


def health(at: Standing, url: str) -> Health:
    return judge(_ours(at, url, at.scope))


def repair(at: Standing, url: str, signing_key: str) -> tuple[str, dict]:
    """Make one active subscription with every event send to `url`: ("kept", it) when there was one
    already, else ("created" or "recreated", the new one). A disabled subscription cannot be switched
    back on and a subscription's events cannot be changed, so a broken one is deleted and made again;
    one at the other scope goes too (Calendly refuses a second subscription to the same URL)."""
    mine = _ours(at, url, at.scope)
    found = judge(mine)
    if found.problem is None:
        return "kept", found.subscription
    stale = mine + (_ours(at, url, "user") if at.scope == "organization" else [])
    for subscription in stale:
        calendly_client.delete_webhook_subscription(subscription["uri"])
    try:
        created = calendly_client.create_webhook_subscription(url, list(EVENTS), at.scope, at.organization,
                                                              at.user, signing_key)
    except calendly_client.CalendlyError as exc:
        if stale:
            # The old one is gone already (Calendly takes one subscription per URL): say so plainly.
            raise calendly_client.CalendlyError(exc.status, f"{exc}; the broken subscription was deleted and "
                                                "none sends to this service now: fix the cause and run it again") from exc
        raise
    return ("recreated" if stale else "created"), created
