"""Calendly API v2 over requests.

Resource URIs in payloads are absolute (https://api.calendly.com/...); calls go to CALENDLY_API_BASE
plus the URI's path, so a sandbox or a proxy can stand in for the real host.

Calendly refuses with 401 (the token is invalid, expired or revoked) and 403 (the token lacks a scope,
e.g. `scheduled_events:write`, or its user may not touch the resource: another user's event, an
organization-wide list for a mere member), and answers 404 (410) for what does not exist (any more,
e.g. after a data-deletion request). Its error bodies carry `title`, `message` and sometimes
`details`; all three are kept in the exception's text.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import requests

from bookingflow import settings as settings_module
from bookingflow.providers import limits

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = (5, 20)  # connect, read


class CalendlyError(Exception):
    def __init__(self, status: int | None, message: str):
        self.status = status
        super().__init__(f"Calendly answered {status}: {message}" if status else message)


class CalendlyNotFound(CalendlyError):
    """404 or 410: the resource does not exist, or no longer does. Asking again will not bring it back."""


class CalendlyRefused(CalendlyError):
    """401 or 403: the token may not do this. Asking again with the same token will not help: a
    person must change the token, its scopes or its user's role."""


WRITE_SCOPE = "scheduled_events:write"
ADMIN_ROLES = ("admin", "owner")


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


def _error_text(response: requests.Response) -> str:
    """Calendly's `title: message (details)`, or the HTTP reason when the body is not Calendly's."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return str(response.reason or "error")
    text = ": ".join(str(body[key]) for key in ("title", "message") if isinstance(body.get(key), str) and body[key])
    details = body.get("details")
    if isinstance(details, list) and details:
        text += " (" + "; ".join(f"{d.get('parameter', '')} {d.get('message', '')}".strip()
                                  for d in details if isinstance(d, dict)) + ")"
    return text or str(response.reason or "error")


def _refusal_text(status: int, text: str) -> str:
    if status == 401:
        return (f"{text}; the Calendly token (CALENDLY_API_TOKEN) is invalid, expired or revoked: "
                "generate a new personal access token")
    return f"{text}; the Calendly token lacks a scope this call needs, or its user's role does not allow it"


def _request(method: str, uri_or_path: str, **kwargs) -> dict:
    response = _send(method, uri_or_path, **kwargs)
    status = response.status_code
    if status in (404, 410):
        raise CalendlyNotFound(status, "resource not found")
    if status in (401, 403):
        raise CalendlyRefused(status, _refusal_text(status, _error_text(response))[:500])
    if status >= 400:
        raise CalendlyError(status, _error_text(response)[:300])
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
    """Cancel the event unless nothing is held any more; True if this call cancelled it.

    Calendly answers 403 both for an event already cancelled (or in the past) and for a cancellation
    the token may not make, so a 403 is decided by reading the event: cancelled, over or gone is
    fine (nothing is held); still active raises CalendlyRefused naming what is missing. A 404 (410)
    is an event deleted: nothing is held either.
    """
    try:
        cancel_scheduled_event(event_uri, reason)
        return True
    except CalendlyNotFound:
        return False
    except CalendlyRefused as refused:
        if refused.status != 403:
            raise
        try:
            event = get_scheduled_event(event_uri)
        except CalendlyNotFound:
            return False
        if not _still_held(event):
            return False
        raise CalendlyRefused(403, _cancel_refusal(event_uri, event)) from refused


def _still_held(event: dict) -> bool:
    if event.get("status") != "active":
        return False  # "canceled", or a status we do not know: not ours to cancel
    end = event.get("end_time")
    try:
        ended = end and dt.datetime.fromisoformat(end.replace("Z", "+00:00")) <= dt.datetime.now(dt.timezone.utc)
    except (AttributeError, ValueError):
        ended = False
    return not ended


def _cancel_refusal(event_uri: str, event: dict) -> str:
    """Why Calendly refused to cancel an event that is still active: its host is another user than
    the token's, or else the token lacks the write scope."""
    hosts = {m.get("user") for m in event.get("event_memberships") or [] if isinstance(m, dict)}
    me = current_user_uri()
    if hosts and me not in hosts:
        return (f"Calendly refused to cancel {event_uri}, still active: the event belongs to another user "
                f"than the token's ({me}); use a token of its host, or cancel it by hand")
    return (f"Calendly refused to cancel {event_uri}, still active: the token lacks the {WRITE_SCOPE} "
            f"scope; grant it (or use a personal access token) and release the slot again")


_me: dict[str, dict] = {}


def _current_user() -> dict:
    """The token's user, as GET /users/me answers it (cached per token)."""
    token = settings_module.get().calendly_api_token
    if token not in _me:
        _me[token] = _request("GET", "/users/me")["resource"]
    return _me[token]


def current_user_uri() -> str:
    return _current_user()["uri"]


def current_organization() -> str:
    """The organization of the token's user (cached per token)."""
    return _current_user()["current_organization"]


# Per process and token: {"organization": uri} when its user is an admin or owner, else {"user": uri}.
_list_scope: dict[str, dict[str, str]] = {}


def list_scope() -> dict[str, str]:
    """The widest filter the token may list scheduled events with. Organization-wide lists are for
    admins and owners only (a member's token gets 403): read the user's role once, and fall back to
    the user's own events when the role cannot be read."""
    token = settings_module.get().calendly_api_token
    if token not in _list_scope:
        role = None
        try:
            role = organization_role(current_user_uri(), current_organization())
        except CalendlyRefused:
            pass  # no organizations:read: the user's own events are what it may surely list
        _list_scope[token] = ({"organization": current_organization()} if role in ADMIN_ROLES
                              else {"user": current_user_uri()})
        log.info("Calendly lists scoped by %s (role %s)", next(iter(_list_scope[token])), role or "unknown")
    return _list_scope[token]


def _scoped_collection(path: str, params: dict) -> list[dict]:
    """A collection filtered by the token's list scope; an organization-wide list refused (the role
    changed since it was read) narrows the scope to the user, for the rest of the process."""
    scope = list_scope()
    try:
        return _collection(path, {**scope, **params})
    except CalendlyRefused as refused:
        if refused.status != 403 or "organization" not in scope:
            raise
        token = settings_module.get().calendly_api_token
        _list_scope[token] = {"user": current_user_uri()}
        log.warning("Calendly refused an organization-wide list; listing the token's user's events only")
        return _collection(path, {**_list_scope[token], **params})


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
    """The event types the token may list (the organization's, or its user's), active or not."""
    return _scoped_collection("/event_types", {"count": 100})


def find_invitee_by_tracking(email: str, utm_content: str, scheduled_after) -> tuple[dict, dict] | None:
    """The active invitee (and its event) that carries `utm_content`, among the client's events
    starting after `scheduled_after`: how a booking whose webhook never came is found."""
    events = _scoped_collection("/scheduled_events", {
        "invitee_email": email, "status": "active",
        "min_start_time": scheduled_after.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "count": 100,
    })
    for event in events:
        for invitee in _collection(urlsplit(event["uri"]).path + "/invitees", {"email": email, "count": 100}):
            tracking = invitee.get("tracking") or {}
            if tracking.get("utm_content") == utm_content and invitee.get("status") == "active":
                return invitee, event
    return None


# --- lists, for the drift report (jobs/drift.py) ---------------------------------------------

def _every(path: str, params: dict):
    """Each item of a collection, following `pagination.next_page` (an absolute URL on Calendly's host:
    its path and query are sent to CALENDLY_API_BASE) until there is none. Every page goes through
    `_send`, so a 429 waits as Calendly asks."""
    while True:
        answer = _request("GET", path, params=params)
        yield from answer.get("collection") or []
        next_page = (answer.get("pagination") or {}).get("next_page")
        if not next_page:
            return
        parts = urlsplit(next_page)
        path, params = parts.path, dict(parse_qsl(parts.query, keep_blank_values=True))


def list_scheduled_events(min_start_time) -> Iterator[dict]:
    """The events the token may list (the organization's, or its user's: list_scope), active and
    cancelled, starting at or after `min_start_time`."""
    return _every("/scheduled_events", {
        **list_scope(), "count": 100, "sort": "start_time:asc",
        "min_start_time": min_start_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    })


# --- set-up checks and the webhook subscription ---------------------------------------------


def current_user() -> dict:
    """The token's user (GET /users/me): what proves a token works."""
    return _request("GET", "/users/me")["resource"]


def organization_role(user_uri: str, organization_uri: str) -> str | None:
    """The user's role in the organization (owner, admin or user); None when Calendly lists none."""
    memberships = _request("GET", "/organization_memberships",
                           params={"user": user_uri, "organization": organization_uri}).get("collection") or []
    return next((m.get("role") for m in memberships if isinstance(m, dict)), None)


def list_scheduled_events_probe(user_uri: str) -> None:
    """One scheduled event of the user, read and thrown away: raises when the token may not read them."""
    _request("GET", "/scheduled_events", params={"user": user_uri, "count": 1})


# An event that exists nowhere: cancelling it changes nothing, and Calendly weighs the token's
# scopes before it looks the event up.
PROBE_EVENT = "/scheduled_events/00000000-0000-0000-0000-000000000000"


def cancel_scope_probe() -> None:
    """Ask to cancel an event that does not exist: the 404 proves the token may cancel events (it
    holds scheduled_events:write); a 403 (CalendlyRefused) that it may not. Nothing is cancelled."""
    try:
        _request("POST", PROBE_EVENT + "/cancellation", json={"reason": "bookingflow check: a scope probe"})
    except CalendlyNotFound:
        return


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
