"""Calendly API v2 over requests.

Resource URIs in payloads are absolute (https://api.calendly.com/...); calls go to CALENDLY_API_BASE
plus the URI's path, so a sandbox or a proxy can stand in for the real host.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import requests

from bookingflow import settings as settings_module
from bookingflow.providers import limits

TIMEOUT_SECONDS = (5, 20)  # connect, read


class CalendlyError(Exception):
    def __init__(self, status: int | None, message: str):
        self.status = status
        super().__init__(f"Calendly answered {status}: {message}" if status else message)


class CalendlyNotFound(CalendlyError):
    pass


_local = threading.local()


def _session() -> requests.Session:
    # requests.Session is not thread-safe; one per thread keeps connection reuse.
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def _url(uri_or_path: str) -> str:
    path = urlsplit(uri_or_path).path if "://" in uri_or_path else uri_or_path
    return settings_module.get().calendly_api_base + path


HEADROOM = limits.Headroom("Calendly")
TRANSIENT_STATUSES = (500, 502, 503, 504)


def _send(method: str, uri_or_path: str, **kwargs) -> requests.Response:
    """One call, within Calendly's rate limit: a 429 waits as long as Calendly asks; a GET that
    meets a network error or a 5xx is tried again (reads are safe to repeat)."""
    headers = {"Authorization": f"Bearer {settings_module.get().calendly_api_token}"}
    attempt = 0
    while True:
        try:
            response = _session().request(method, _url(uri_or_path), headers=headers, timeout=TIMEOUT_SECONDS, **kwargs)
        except requests.RequestException as exc:
            if method != "GET" or attempt >= limits.INLINE_ATTEMPTS:
                raise CalendlyError(None, f"Calendly unreachable: {exc.__class__.__name__}") from exc
            time.sleep(limits.backoff(attempt))
            attempt += 1
            continue
        HEADROOM.observe(response.headers.get("X-RateLimit-Limit"), response.headers.get("X-RateLimit-Remaining"),
                         response.headers.get("X-RateLimit-Reset"))
        if response.status_code == 429:
            wait = (limits.seconds_from(response.headers.get("Retry-After"))
                    or limits.seconds_from(response.headers.get("X-RateLimit-Reset")) or limits.backoff(attempt))
            limits.wait_or_defer("Calendly", wait, attempt)
        elif response.status_code in TRANSIENT_STATUSES and method == "GET" and attempt < limits.INLINE_ATTEMPTS:
            time.sleep(limits.backoff(attempt))
        else:
            return response
        attempt += 1


def _request(method: str, uri_or_path: str, **kwargs) -> dict:
    response = _send(method, uri_or_path, **kwargs)
    if response.status_code == 404:
        raise CalendlyNotFound(404, "resource not found")
    if response.status_code >= 400:
        try:
            message = response.json().get("message") or response.reason
        except ValueError:
            message = response.reason
        raise CalendlyError(response.status_code, str(message)[:300])
    try:
        return response.json()
    except ValueError as exc:
        raise CalendlyError(response.status_code, "answer is not JSON") from exc


def get_scheduled_event(event_uri: str) -> dict:
    return _request("GET", event_uri)["resource"]


def get_invitee(invitee_uri: str) -> dict:
    return _request("GET", invitee_uri)["resource"]


def cancel_scheduled_event(event_uri: str, reason: str) -> dict:
    path = urlsplit(event_uri).path.rstrip("/") + "/cancellation"
    return _request("POST", path, json={"reason": reason[:500]})["resource"]


def release_scheduled_event(event_uri: str, reason: str) -> bool:
    """Cancel the event unless it is already gone; True if this call cancelled it.

    Calendly answers 403 for an event already cancelled (or in the past) and 404 for one that no
    longer exists: either way the slot is free, which is all a release needs.
    """
    try:
        cancel_scheduled_event(event_uri, reason)
        return True
    except CalendlyNotFound:
        return False
    except CalendlyError as exc:
        if exc.status == 403:
            return False
        raise


_organization: dict[str, str] = {}


def current_organization() -> str:
    """The organization of the token's user (cached per token)."""
    token = settings_module.get().calendly_api_token
    if token not in _organization:
        _organization[token] = _request("GET", "/users/me")["resource"]["current_organization"]
    return _organization[token]


def _collection(path: str, params: dict, limit_pages: int = 10) -> list[dict]:
    """Every item of a paginated collection (bounded: a sweep must not page forever)."""
    items: list[dict] = []
    for _ in range(limit_pages):
        answer = _request("GET", path, params=params)
        items.extend(answer.get("collection") or [])
        token = (answer.get("pagination") or {}).get("next_page_token")
        if not token:
            break
        params = {**params, "page_token": token}
    return items


def list_event_types() -> list[dict]:
    """The organization's event types, active or not."""
    return _collection("/event_types", {"organization": current_organization(), "count": 100})


def find_invitee_by_tracking(email: str, utm_content: str, scheduled_after) -> tuple[dict, dict] | None:
    """The active invitee (and its event) that carries `utm_content`, among the client's events
    starting after `scheduled_after`: how a booking whose webhook never came is found."""
    events = _collection("/scheduled_events", {
        "organization": current_organization(), "invitee_email": email, "status": "active",
        "min_start_time": scheduled_after.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "count": 100,
    })
    for event in events:
        for invitee in _collection(urlsplit(event["uri"]).path + "/invitees", {"email": email, "count": 100}):
            tracking = invitee.get("tracking") or {}
            if tracking.get("utm_content") == utm_content and invitee.get("status") == "active":
                return invitee, event
    return None


# --- set-up checks and the webhook subscription ---------------------------------------------


def current_user() -> dict:
    """The token's user (GET /users/me): what proves a token works."""
    return _request("GET", "/users/me")["resource"]


def organization_role(user_uri: str, organization_uri: str) -> str | None:
    """The user's role in the organization (owner, admin or user); None when Calendly lists none."""
    memberships = _request("GET", "/organization_memberships",
                           params={"user": user_uri, "organization": organization_uri})["collection"]
    return memberships[0].get("role") if memberships else None


def list_scheduled_events_probe(user_uri: str) -> None:
    """One scheduled event of the user, read and thrown away: raises when the token may not read them."""
    _request("GET", "/scheduled_events", params={"user": user_uri, "count": 1})


def get_event_type(uri: str) -> dict:
    return _request("GET", uri)["resource"]


def list_webhook_subscriptions(scope: str, organization_uri: str, user_uri: str | None = None) -> list[dict]:
    params = {"organization": organization_uri, "scope": scope, "count": 100}
    if scope == "user":
        params["user"] = user_uri
    return _collection("/webhook_subscriptions", params)


def create_webhook_subscription(url: str, events: list[str], scope: str, organization_uri: str,
                                user_uri: str, signing_key: str) -> dict:
    body = {"url": url, "events": events, "organization": organization_uri, "scope": scope,
            "signing_key": signing_key}
    if scope == "user":
        body["user"] = user_uri
    return _request("POST", "/webhook_subscriptions", json=body)["resource"]


def delete_webhook_subscription(uri: str) -> None:
    """Delete it; one already gone is fine (Calendly answers 204, or 404 when it is not there)."""
    response = _send("DELETE", uri)
    if response.status_code not in (204, 404):
        raise CalendlyError(response.status_code, "could not delete the webhook subscription")
