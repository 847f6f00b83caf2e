"""A local stand-in for the slice of Calendly API v2 that booking flows use.

Resource URIs are always absolute on https://api.calendly.com, whatever host serves the fake,
because that is what real payloads contain; clients are expected to call
CALENDLY_API_BASE + <path of the URI>. The /book page and /_sandbox actions play the invitee
(and the host's calendar UI), which the real API cannot be asked to do.
"""

from __future__ import annotations

import copy
import html
import json
import secrets
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode, urlsplit

from flask import Blueprint, Response, request, url_for

from .deliveries import FakeProvider, WebhookSender

URL_PREFIX = "/calendly"
API_ORIGIN = "https://api.calendly.com"
HOST_NAME = "Sandbox Host"
HOST_EMAIL = "host@example.com"
SHAPES = ("embedded", "reference")
UTM_FIELDS = ("utm_campaign", "utm_source", "utm_medium", "utm_content", "utm_term")
DEFAULT_PAGE_SIZE = 20
TITLES = {400: "Invalid Argument", 401: "Unauthenticated", 403: "Permission Denied",
          404: "Resource Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}
NOT_FOUND_MESSAGE = "The server could not find the requested resource."


class CalendlyError(Exception):
    """An API failure, rendered as Calendly's {"title", "message"[, "details"]} body."""

    def __init__(self, status: int, message: str, details: list | None = None):
        super().__init__(message)
        self.status, self.message, self.details = status, message, details

    def body(self) -> dict:
        body = {"title": TITLES.get(self.status, "Error"), "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def error_body(status: int, message: str) -> dict:
    """Body for failures outside a handler (unknown URL, crash), in Calendly's format."""
    return CalendlyError(status, NOT_FOUND_MESSAGE if status == 404 else message).body()


def _invalid(parameter: str, message: str) -> CalendlyError:
    return CalendlyError(400, "The supplied parameters are invalid.",
                         [{"parameter": parameter, "message": message}])


def _not_found() -> CalendlyError:
    return CalendlyError(404, NOT_FOUND_MESSAGE)


# --- tokens: scopes and roles ---------------------------------------------------------------

PERMISSION_MESSAGE = "You do not have permission to access this resource."
ADMIN_ROLES = ("admin", "owner")


def required_scope(method: str, path: str) -> str | None:
    """The scope Calendly's catalog names for a call (a `:write` scope includes its `:read`)."""
    domain = path.strip("/").split("/")[0]
    scope = {"users": "users", "organization_memberships": "organizations", "event_types": "event_types",
             "scheduled_events": "scheduled_events", "webhook_subscriptions": "webhooks"}.get(domain)
    if scope is None:
        return None
    return f"{scope}:{'read' if method == 'GET' else 'write'}"


def has_scope(scopes: frozenset[str] | None, needed: str | None) -> bool:
    """A personal access token (scopes None) may do all its user may."""
    if scopes is None or needed is None:
        return True
    return needed in scopes or (needed.endswith(":read") and needed.replace(":read", ":write") in scopes)


# --- time and URIs -----------------------------------------------------------------------

def iso(moment: datetime) -> str:
    """Calendly's timestamp format: UTC with microseconds and a Z, e.g. 2020-07-22T01:30:00.000000Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any, parameter: str) -> datetime:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise _invalid(parameter, "must be an ISO 8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def default_start() -> datetime:
    """A whole hour a day and a half ahead: always in the future and easy to read in logs. Not 24 h
    or 48 h ahead, the usual refund-policy lines, so that a cancellation some minutes later (across
    a whole hour) is still judged on the same side of them."""
    return utcnow().replace(minute=0, second=0, microsecond=0) + timedelta(hours=37)


def canonical_uri(value: Any) -> str:
    """Accept a resource URI even when given with the host that served it, not api.calendly.com."""
    text = str(value or "")
    marker = text.find("/scheduled_events/")
    return API_ORIGIN + text[marker:] if marker >= 0 else text


# --- resource builders -------------------------------------------------------------------

def build_scheduled_event(slug: str, start: datetime, minutes: int, host_uri: str) -> dict:
    now = iso(utcnow())
    return {
        "uri": f"{API_ORIGIN}/scheduled_events/{uuid.uuid4()}",
        "name": slug.replace("-", " ").replace("_", " ").title() or "Sandbox Session",
        "meeting_notes_plain": None, "meeting_notes_html": None, "status": "active",
        "start_time": iso(start), "end_time": iso(start + timedelta(minutes=minutes)),
        "event_type": f"{API_ORIGIN}/event_types/{slug}",
        "location": {"type": "custom", "location": "Sandbox video call"},
        "invitees_counter": {"total": 1, "active": 1, "limit": 1},
        "created_at": now, "updated_at": now,
        "event_memberships": [{"user": host_uri, "user_email": HOST_EMAIL, "user_name": HOST_NAME}],
        "event_guests": [],
    }


def build_invitee(event_uri: str, name: str, email: str, tracking: dict,
                  old_invitee: str | None = None, pages: str = "https://calendly.com") -> dict:
    """`pages`: where the invitee's cancel and reschedule pages are (Calendly's site, or the sandbox's)."""
    invitee_uuid = uuid.uuid4()
    now = iso(utcnow())
    return {
        "uri": f"{event_uri}/invitees/{invitee_uuid}", "email": email, "name": name,
        "first_name": None, "last_name": None, "status": "active", "timezone": "UTC",
        "event": event_uri, "created_at": now, "updated_at": now, "tracking": dict(tracking),
        "text_reminder_number": None, "rescheduled": False, "old_invitee": old_invitee,
        "new_invitee": None, "cancel_url": f"{pages}/cancellations/{invitee_uuid}",
        "reschedule_url": f"{pages}/reschedulings/{invitee_uuid}",
        "routing_form_submission": None, "questions_and_answers": [], "payment": None,
        "no_show": None, "reconfirmation": None, "scheduling_method": None,
        "invitee_scheduled_by": None,
    }


def build_cancellation(canceled_by: str, reason: str | None, canceler_type: str) -> dict:
    return {"canceled_by": canceled_by, "reason": reason, "canceler_type": canceler_type,
            "created_at": iso(utcnow())}


def booking_from_url(scheduling_url: str) -> dict:
    """What Calendly takes from a scheduling link: event type slug, prefilled invitee, UTM tags."""
    parts = urlsplit(scheduling_url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    slug = [segment for segment in parts.path.split("/") if segment][-1:] or [""]
    return {
        "slug": slug[0],
        "name": query.get("name") or "Sandbox Invitee",
        "email": query.get("email") or "invitee@example.com",
        "tracking": {**{field: query.get(field) for field in UTM_FIELDS}, "salesforce_uuid": None},
    }


def paginate(items: list[dict], args: dict, path: str) -> dict:
    """Calendly's collection envelope; page tokens are opaque offsets into the filtered list."""
    count = _int_arg(args, "count", DEFAULT_PAGE_SIZE)
    if not 1 <= count <= 100:
        raise _invalid("count", "must be between 1 and 100")
    offset = _int_arg(args, "page_token", 0)
    if offset < 0:
        raise _invalid("page_token", "is not a valid page token")
    page = items[offset:offset + count]
    next_token = str(offset + count) if offset + count < len(items) else None
    previous_token = str(max(0, offset - count)) if offset > 0 else None

    def page_url(token: str | None) -> str | None:
        return token and f"{API_ORIGIN}{path}?{urlencode({**args, 'page_token': token})}"

    return {"collection": page, "pagination": {
        "count": len(page), "next_page": page_url(next_token), "previous_page": page_url(previous_token),
        "next_page_token": next_token, "previous_page_token": previous_token}}


def _start_time(params: dict, default: datetime) -> datetime:
    return parse_time(params["start_time"], "start_time") if params.get("start_time") else default


def _int_arg(args: dict, name: str, default: int) -> int:
    value = args.get(name, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _invalid(name, "must be an integer") from None


def _sorted(items: list[dict], args: dict, default: str) -> list[dict]:
    field, _, direction = args.get("sort", default).partition(":")
    if field != default.partition(":")[0] or direction not in ("asc", "desc"):
        raise _invalid("sort", f"must be {field}:asc or {field}:desc")
    return sorted(items, key=lambda item: item[field], reverse=direction == "desc")


# --- webhook subscriptions, memberships and event types (what `bookingflow check` reads) ----

WEBHOOK_EVENTS = ("invitee.created", "invitee.canceled", "invitee_no_show.created", "invitee_no_show.deleted",
                  "routing_form_submission.created", "event_type.created", "event_type.updated",
                  "event_type.deleted")
SUBSCRIPTION_SCOPES = ("organization", "user")


class WebhookSubscriptions:
    """Calendly's /webhook_subscriptions (list, create, get, delete) and GET /event_types/<uuid>, with the controls Calendly gives no API for: a subscription disabled (as
    after 24 hours of failed deliveries) and an event type switched off. The subscriptions are
    records; deliveries still go where the sandbox's config says."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._subscriptions: dict[str, dict] = {}  # uri -> subscription, in creation order
        self._signing_keys: dict[str, str] = {}  # uri -> the write-only signing key it was made with

    def setup_routes(self) -> list[tuple[str, str, Callable[..., tuple[int, dict]]]]:
        return [
            ("GET", "/webhook_subscriptions", self.list_webhook_subscriptions),
            ("POST", "/webhook_subscriptions", self.create_webhook_subscription),
            ("GET", "/webhook_subscriptions/<webhook_uuid>", self.get_webhook_subscription),
            ("DELETE", "/webhook_subscriptions/<webhook_uuid>", self.delete_webhook_subscription),
            ("GET", "/event_types/<slug>", self.get_event_type),
        ]

    def add_setup_controls(self, bp: Blueprint) -> None:
        bp.add_url_rule("/_sandbox/webhook_subscriptions/<webhook_uuid>/disable", "disable_subscription",
                        self._control_view(self.disable_webhook_subscription), methods=["POST"])
        bp.add_url_rule("/_sandbox/event_types/<slug>/deactivate", "deactivate_event_type",
                        self._control_view(lambda slug: self.set_event_type_active(slug, False)), methods=["POST"])

    @staticmethod
    def _control_view(action: Callable[[str], dict]) -> Callable[..., Response]:
        def view(**route_args: str) -> Response:
            try:
                return _json(action(*route_args.values()), 200)
            except CalendlyError as exc:
                return _json(exc.body(), exc.status)
        return view

    # API handlers (lock held)

    def _subscription(self, webhook_uuid: str) -> dict:
        found = self._subscriptions.get(f"{API_ORIGIN}/webhook_subscriptions/{webhook_uuid}")
        if found is None:
            raise _not_found()
        return found

    def _check_owner(self, args: dict) -> None:
        if args.get("organization") != self.organization_uri:
            raise CalendlyError(403, "You do not have permission to access this resource.")
        if args.get("scope") == "user" and args.get("user") != self._caller["user"]:
            raise CalendlyError(403, "You do not have permission to access this resource.")
        if args.get("scope") == "organization" and self._caller["role"] not in ADMIN_ROLES:
            raise CalendlyError(403, "You do not have permission to access this resource.")

    def list_webhook_subscriptions(self, args: dict, body: dict) -> tuple[int, dict]:
        for name in ("organization", "scope"):
            if not args.get(name):
                raise _invalid(name, "is required")
        if args["scope"] not in SUBSCRIPTION_SCOPES:
            raise _invalid("scope", "must be organization or user")
        if args["scope"] == "user" and not args.get("user"):
            raise _invalid("user", "is required for scope user")
        self._check_owner(args)
        found = [s for s in self._subscriptions.values() if s["scope"] == args["scope"]
                 and (args["scope"] != "user" or s["user"] == args["user"])]
        return 200, paginate(_sorted(found, args, "created_at:asc"), args, "/webhook_subscriptions")

    def create_webhook_subscription(self, args: dict, body: dict) -> tuple[int, dict]:
        url, events, scope = body.get("url"), body.get("events"), body.get("scope")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise _invalid("url", "must be an http or https URL")
        if not isinstance(events, list) or not events or not set(events) <= set(WEBHOOK_EVENTS):
            raise _invalid("events", f"must be a non-empty list of {', '.join(WEBHOOK_EVENTS)}")
        if scope not in SUBSCRIPTION_SCOPES:
            raise _invalid("scope", "must be organization or user")
        if scope == "user" and not body.get("user"):
            raise _invalid("user", "is required for scope user")
        self._check_owner(body)
        if any(s["callback_url"] == url for s in self._subscriptions.values()):
            raise CalendlyError(409, "Hook with this url already exists")
        now = iso(utcnow())
        subscription = {
            "uri": f"{API_ORIGIN}/webhook_subscriptions/{uuid.uuid4()}", "callback_url": url,
            "created_at": now, "updated_at": now, "retry_started_at": None, "state": "active",
            "events": list(dict.fromkeys(events)), "scope": scope, "organization": self.organization_uri,
            "user": self._caller["user"] if scope == "user" else None, "group": None, "creator": self._caller["user"],
        }
        self._subscriptions[subscription["uri"]] = subscription
        self._signing_keys[subscription["uri"]] = str(body.get("signing_key") or "")
        return 201, {"resource": subscription}

    def get_webhook_subscription(self, args: dict, body: dict, webhook_uuid: str) -> tuple[int, dict]:
        return 200, {"resource": self._subscription(webhook_uuid)}

    def delete_webhook_subscription(self, args: dict, body: dict, webhook_uuid: str) -> tuple[int, dict]:
        uri = self._subscription(webhook_uuid)["uri"]
        del self._subscriptions[uri]
        self._signing_keys.pop(uri, None)
        return 204, {}

    def get_event_type(self, args: dict, body: dict, slug: str) -> tuple[int, dict]:
        found = self._event_types.get(slug)
        if found is None:
            raise _not_found()
        return 200, {"resource": found}

    # controls, for tests and `bookingflow dev` (Calendly's own side of things)

    def disable_webhook_subscription(self, uri_or_uuid: str) -> dict:
        """What Calendly does after retrying a subscription's deliveries for 24 hours."""
        with self._lock:
            found = self._subscription(uri_or_uuid.rsplit("/", 1)[-1])
            found.update(state="disabled", retry_started_at=found["retry_started_at"] or iso(utcnow()),
                         updated_at=iso(utcnow()))
            return copy.deepcopy(found)

    def set_event_type_active(self, slug: str, active: bool) -> dict:
        with self._lock:
            found = self._event_types.get(slug)
            if found is None:
                raise _not_found()
            found.update(active=active, updated_at=iso(utcnow()))
            return copy.deepcopy(found)

    def remove_event_type(self, slug: str) -> None:
        with self._lock:
            self._event_types.pop(slug, None)

    def webhook_subscriptions(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(list(self._subscriptions.values()))

    def subscription_signing_key(self, uri: str) -> str:
        with self._lock:
            return self._signing_keys[uri]

    def clear_webhook_subscriptions(self) -> None:
        with self._lock:
            self._subscriptions.clear()
            self._signing_keys.clear()


# --- the fake ----------------------------------------------------------------------------

class CalendlyFake(WebhookSubscriptions, FakeProvider):
    """State and HTTP handlers of the Calendly fake; one lock serializes every request."""

    def __init__(self, config_source: Callable[[], Any], sender: WebhookSender,
                 public_base: Callable[[], str]):
        super().__init__(config_source, sender, public_base)
        self._event_types: dict[str, dict] = {}
        self.host_uri = f"{API_ORIGIN}/users/{uuid.uuid4()}"
        self.organization_uri = f"{API_ORIGIN}/organizations/{uuid.uuid4()}"
        self._events: dict[str, dict] = {}  # uri -> scheduled event resource
        self._invitees: dict[str, dict] = {}  # uri -> invitee resource
        self._requests: list[dict] = []
        # token -> {"user", "role", "scopes"}; the configured token, unless granted otherwise, is the
        # host's, an owner with every scope (a personal access token).
        self._grants: dict[str, dict] = {}
        self._caller: dict = {}
        self.novelties: dict[str, Any] = {}

    # inspection

    def api_requests(self) -> list[dict]:
        with self._lock:
            return copy.deepcopy(self._requests)

    def objects(self, kind: str) -> list[dict]:
        stores = {"scheduled_event": self._events, "invitee": self._invitees}
        if kind not in stores:
            raise ValueError(f"unknown Calendly object kind {kind!r}; expected one of {tuple(stores)}")
        with self._lock:
            return copy.deepcopy(list(stores[kind].values()))

    # tokens, users and what Calendly may lose

    def grant(self, token: str, *, role: str = "owner", scopes: set[str] | None = None,
              user_uri: str | None = None) -> None:
        """What `token` may do: its user (the host unless told), its role in the organization
        ("owner", "admin" or "user", a member) and its OAuth scopes (None: a personal access token)."""
        with self._lock:
            self._grants[token] = {"user": user_uri or self.host_uri, "role": role,
                                   "scopes": None if scopes is None else frozenset(scopes)}

    def revoke_grants(self) -> None:
        with self._lock:
            self._grants.clear()

    def add_user(self) -> str:
        """Another user of the host's organization (events hosted by them are not the host's)."""
        return f"{API_ORIGIN}/users/{uuid.uuid4()}"

    def delete_event(self, event_uri: str) -> None:
        """The event and its invitees deleted (a data-deletion request): 404 from now on, for good."""
        with self._lock:
            self._events.pop(canonical_uri(event_uri), None)
            for uri in [u for u, i in self._invitees.items() if i["event"] == canonical_uri(event_uri)]:
                del self._invitees[uri]

    def send_novel_values(self, values: dict[str, Any]) -> None:
        """Deliveries from now on carry these values at these dotted paths of their payload (e.g.
        {"status": "awaiting_confirmation", "cancellation.canceler_type": "admin"}): the enum values
        and fields Calendly adds over time. An empty dict stops it."""
        with self._lock:
            self.novelties = dict(values)

    # what `bookingflow dev` keeps across restarts (sandbox/persistence.py)

    def export_state(self) -> dict:
        """The host, its organization, the scheduled events and their invitees, as JSON-ready data.
        Event types and webhook subscriptions are left out: they are set up again at each start."""
        with self._lock:
            return copy.deepcopy({"host_uri": self.host_uri, "organization_uri": self.organization_uri,
                                  "events": list(self._events.values()), "invitees": list(self._invitees.values())})

    def import_state(self, state: dict) -> None:
        with self._lock:
            self.host_uri = state.get("host_uri", self.host_uri)
            self.organization_uri = state.get("organization_uri", self.organization_uri)
            self._events = {event["uri"]: event for event in copy.deepcopy(state.get("events", []))}
            self._invitees = {invitee["uri"]: invitee for invitee in copy.deepcopy(state.get("invitees", []))}

    # routing

    def blueprint(self) -> Blueprint:
        bp = Blueprint("calendly_fake", __name__, url_prefix=URL_PREFIX)
        api = [
            ("GET", "/users/me", self.current_user),
            ("GET", "/organization_memberships", self.list_memberships),
            ("GET", "/event_types", self.list_event_types),
            ("GET", "/scheduled_events", self.list_events),
            ("GET", "/scheduled_events/<event_uuid>", self.get_event),
            ("GET", "/scheduled_events/<event_uuid>/invitees", self.list_invitees),
            ("GET", "/scheduled_events/<event_uuid>/invitees/<invitee_uuid>", self.get_invitee),
            ("POST", "/scheduled_events/<event_uuid>/cancellation", self.cancel_event),
        ]
        api += self.setup_routes()
        for method, rule, handler in api:
            name = f"{method.lower()}_{rule}".replace("/", "_").replace("<", "").replace(">", "")
            bp.add_url_rule(rule, name, self._api_view(handler), methods=[method])
        bp.add_url_rule("/book/<slug>", "booking_page", self.booking_page, methods=["GET"])
        bp.add_url_rule("/reschedulings/<invitee_uuid>", "rescheduling_page", self.rescheduling_page, methods=["GET"])
        bp.add_url_rule("/cancellations/<invitee_uuid>", "cancellation_page", self.cancellation_page, methods=["GET"])
        for action in ("schedule", "cancel", "reschedule"):
            bp.add_url_rule(f"/_sandbox/{action}", action, self._action_view(action), methods=["POST"])
        bp.add_url_rule("/_sandbox/move", "move", self._action_view("move"), methods=["POST"])
        self.add_setup_controls(bp)
        return bp

    def _api_view(self, handler: Callable[..., tuple[int, dict]]) -> Callable[..., Response]:
        def view(**route_args: str) -> Response:
            args = request.args.to_dict()
            body = request.get_json(silent=True) if request.method == "POST" else None
            with self._lock:
                try:
                    self._caller = self._authenticate()
                    self._authorize(request.method, request.path.removeprefix(URL_PREFIX))
                    status, payload = handler(args, body if isinstance(body, dict) else {}, **route_args)
                except CalendlyError as exc:
                    status, payload = exc.status, exc.body()
                self._requests.append({
                    "method": request.method, "path": request.path.removeprefix(URL_PREFIX),
                    "idempotency_key": None, "params": body if request.method == "POST" else args,
                    "status": status})
            return _json(payload, status)
        return view

    def _action_view(self, action: str) -> Callable[[], Response]:
        handler = getattr(self, f"_{action}")

        def view() -> Response:
            body = request.get_json(silent=True)
            params = body if isinstance(body, dict) else request.form.to_dict()
            try:
                with self._lock:
                    status, payload = handler(params)
            except CalendlyError as exc:
                return _json(exc.body(), exc.status)
            if action in ("schedule", "reschedule") and params.get("via") == "page":
                return Response(_scheduled_html(payload, self._event_for(payload)), mimetype="text/html")
            if action == "cancel" and params.get("via") == "page":
                return Response(_canceled_html(), mimetype="text/html")
            return _json(payload, status)
        return view

    def _authenticate(self) -> dict:
        """The caller's grant: the configured token's, or one given with grant()."""
        auth = request.authorization
        token = auth.token if auth and auth.type == "bearer" else None
        if token and token in self._grants:
            return self._grants[token]
        if not token or not secrets.compare_digest(token, self._config().calendly_api_token):
            raise CalendlyError(401, "The access token is invalid")
        return {"user": self.host_uri, "role": "owner", "scopes": None}

    def _authorize(self, method: str, path: str) -> None:
        needed = required_scope(method, path)
        if not has_scope(self._caller["scopes"], needed):
            raise CalendlyError(403, PERMISSION_MESSAGE, [{"parameter": "scope", "message": f"{needed} is required"}])

    def _may_list(self, args: dict) -> None:
        """Organization-wide lists for admins and owners; a member lists its own user's only."""
        organization, user = args.get("organization"), args.get("user")
        if organization and organization != self.organization_uri:
            raise CalendlyError(403, PERMISSION_MESSAGE)
        if organization and not user and self._caller["role"] not in ADMIN_ROLES:
            raise CalendlyError(403, PERMISSION_MESSAGE)
        if user and user != self._caller["user"] and self._caller["role"] not in ADMIN_ROLES:
            raise CalendlyError(403, PERMISSION_MESSAGE)

    # lookups (lock held)

    def _event(self, event_uuid: str) -> dict:
        found = self._events.get(f"{API_ORIGIN}/scheduled_events/{event_uuid}")
        if found is None:
            raise _not_found()
        return found

    def _invitee(self, uri: Any) -> dict:
        found = self._invitees.get(canonical_uri(uri))
        if found is None:
            raise _not_found()
        return found

    def _event_for(self, payload: dict) -> dict:
        with self._lock:
            return copy.deepcopy(self._events[payload["event_uri"]])

    # API handlers: (args, json body, route args) -> (status, body)

    def current_user(self, args: dict, body: dict) -> tuple[int, dict]:
        now = iso(utcnow())
        return 200, {"resource": {
            "uri": self._caller.get("user", self.host_uri), "name": HOST_NAME, "slug": "sandbox-host", "email": HOST_EMAIL,
            "scheduling_url": f"{self._public_base()}{URL_PREFIX}/book/sandbox-host",
            "timezone": "UTC", "avatar_url": None, "locale": "en", "resource_type": "User",
            "created_at": now, "updated_at": now, "current_organization": self.organization_uri}}

    def list_memberships(self, args: dict, body: dict) -> tuple[int, dict]:
        """The caller's own membership (what bookingflow asks: its role)."""
        if not (args.get("organization") or args.get("user")):
            raise _invalid("organization", "organization or user is required")
        if args.get("user") not in (None, self._caller["user"]) and self._caller["role"] not in ADMIN_ROLES:
            raise CalendlyError(403, PERMISSION_MESSAGE)
        now = iso(utcnow())
        membership = {"uri": f"{API_ORIGIN}/organization_memberships/{uuid.uuid5(uuid.NAMESPACE_URL, self._caller['user'])}",
                      "role": self._caller["role"], "organization": self.organization_uri,
                      "user": {"uri": self._caller["user"], "name": HOST_NAME, "email": HOST_EMAIL},
                      "created_at": now, "updated_at": now}
        matches = args.get("user") in (None, self._caller["user"])
        return 200, paginate([membership] if matches else [], args, "/organization_memberships")

    def add_event_type(self, slug: str, name: str, duration: int, active: bool = True) -> dict:
        """An event type of the host, as GET /event_types lists it."""
        now = iso(utcnow())
        resource = {
            "uri": f"{API_ORIGIN}/event_types/{slug}", "name": name, "active": active, "slug": slug,
            "scheduling_url": f"{self._config().public_base.rstrip('/')}{URL_PREFIX}/book/{slug}",
            "duration": duration, "duration_options": None, "kind": "solo", "pooling_type": None,
            "type": "StandardEventType", "color": "#0069ff", "created_at": now, "updated_at": now,
            "internal_note": None, "description_plain": None, "description_html": None, "secret": False,
            "booking_method": "instant", "custom_questions": [], "deleted_at": None, "admin_managed": False,
            "locations": None, "position": 0, "locale": "en",
            "profile": {"type": "User", "name": HOST_NAME, "owner": self.host_uri},
        }
        with self._lock:
            self._event_types[slug] = resource
        return resource

    def list_event_types(self, args: dict, body: dict) -> tuple[int, dict]:
        if not (args.get("organization") or args.get("user")):
            return 400, {"title": "Invalid Argument", "message": "One of organization or user is required."}
        self._may_list(args)
        with self._lock:
            types = list(self._event_types.values())
        if "active" in args:
            types = [t for t in types if str(t["active"]).lower() == args["active"].lower()]
        return 200, paginate(types, args, "/event_types")

    def list_events(self, args: dict, body: dict) -> tuple[int, dict]:
        if not (args.get("organization") or args.get("user")):
            raise _invalid("organization", "organization or user is required")
        self._may_list(args)
        events = [event for event in self._events.values() if self._event_matches(event, args)
                  and (not args.get("user") or any(m["user"] == args["user"] for m in event["event_memberships"]))]
        return 200, paginate(_sorted(events, args, "start_time:asc"), args, "/scheduled_events")

    def _event_matches(self, event: dict, args: dict) -> bool:
        start = parse_time(event["start_time"], "start_time")
        if args.get("status") and event["status"] != args["status"]:
            return False
        if args.get("min_start_time") and start < parse_time(args["min_start_time"], "min_start_time"):
            return False
        if args.get("max_start_time") and start >= parse_time(args["max_start_time"], "max_start_time"):
            return False
        email = args.get("invitee_email")
        return not email or any(i["event"] == event["uri"] and i["email"] == email
                                for i in self._invitees.values())

    def get_event(self, args: dict, body: dict, event_uuid: str) -> tuple[int, dict]:
        return 200, {"resource": self._event(event_uuid)}

    def list_invitees(self, args: dict, body: dict, event_uuid: str) -> tuple[int, dict]:
        event = self._event(event_uuid)
        invitees = [i for i in self._invitees.values() if i["event"] == event["uri"]
                    and (not args.get("status") or i["status"] == args["status"])
                    and (not args.get("email") or i["email"] == args["email"])]
        path = f"/scheduled_events/{event_uuid}/invitees"
        return 200, paginate(_sorted(invitees, args, "created_at:asc"), args, path)

    def get_invitee(self, args: dict, body: dict, event_uuid: str, invitee_uuid: str) -> tuple[int, dict]:
        self._event(event_uuid)
        return 200, {"resource": self._invitee(f"{API_ORIGIN}/scheduled_events/{event_uuid}"
                                               f"/invitees/{invitee_uuid}")}

    def cancel_event(self, args: dict, body: dict, event_uuid: str) -> tuple[int, dict]:
        event = self._event(event_uuid)
        if event["status"] == "canceled":
            raise CalendlyError(403, "Event is already canceled")
        if self._caller["user"] not in {m["user"] for m in event["event_memberships"]}:
            raise CalendlyError(403, PERMISSION_MESSAGE)  # another user's event
        shape = self._shape(body)
        cancellation = build_cancellation(HOST_NAME, body.get("reason"), "host")
        self._cancel_event_record(event, cancellation)
        for invitee in self._active_invitees(event["uri"]):
            self._cancel_invitee_record(invitee, cancellation)
            self._deliver("invitee.canceled", invitee, shape)
        return 201, {"resource": cancellation}

    # simulator actions: params -> (status, body)

    def _schedule(self, params: dict) -> tuple[int, dict]:
        if not params.get("scheduling_url"):
            raise _invalid("scheduling_url", "is required")
        shape = self._shape(params)
        booking = booking_from_url(params["scheduling_url"])
        start = _start_time(params, default_start())
        minutes = _int_arg(params, "duration_minutes", 30)
        if minutes < 1:
            raise _invalid("duration_minutes", "must be a positive integer")
        event = build_scheduled_event(booking["slug"], start, minutes, self.host_uri)
        invitee = build_invitee(event["uri"], params.get("name") or booking["name"],
                                params.get("email") or booking["email"], booking["tracking"], pages=self._pages())
        self._events[event["uri"]] = event
        self._invitees[invitee["uri"]] = invitee
        self._deliver("invitee.created", invitee, shape)
        return 201, {"event_uri": event["uri"], "invitee_uri": invitee["uri"]}

    def _cancel(self, params: dict) -> tuple[int, dict]:
        shape = self._shape(params)
        invitee = self._active_invitee(params.get("invitee_uri"))
        canceler_type = params.get("canceler_type") or "invitee"
        if canceler_type not in ("invitee", "host"):
            raise _invalid("canceler_type", "must be invitee or host")
        canceled_by = invitee["name"] if canceler_type == "invitee" else HOST_NAME
        cancellation = build_cancellation(canceled_by, params.get("reason"), canceler_type)
        self._cancel_invitee_record(invitee, cancellation)
        self._cancel_event_if_empty(invitee["event"], cancellation)
        self._deliver("invitee.canceled", invitee, shape)
        return 200, {"event_uri": invitee["event"], "invitee_uri": invitee["uri"]}

    def _reschedule(self, params: dict) -> tuple[int, dict]:
        shape = self._shape(params)
        old = self._active_invitee(params.get("invitee_uri"))
        order = params.get("order") or "canceled_first"
        if order not in ("canceled_first", "created_first"):
            raise _invalid("order", "must be canceled_first or created_first")
        old_event = self._events[old["event"]]
        old_start = parse_time(old_event["start_time"], "start_time")
        start = _start_time(params, old_start + timedelta(days=1))
        minutes = (parse_time(old_event["end_time"], "end_time") - old_start) // timedelta(minutes=1)
        slug = old_event["event_type"].rsplit("/", 1)[-1]
        event = build_scheduled_event(slug, start, minutes, self.host_uri)
        new = build_invitee(event["uri"], old["name"], old["email"], old["tracking"], old["uri"], pages=self._pages())
        self._events[event["uri"]] = event
        self._invitees[new["uri"]] = new
        cancellation = build_cancellation(old["name"], params.get("reason"), "invitee")
        self._cancel_invitee_record(old, cancellation)
        old.update(rescheduled=True, new_invitee=new["uri"])
        self._cancel_event_if_empty(old["event"], cancellation)
        deliveries = [("invitee.canceled", old), ("invitee.created", new)]
        for name, invitee in deliveries if order == "canceled_first" else reversed(deliveries):
            self._deliver(name, invitee, shape)
        return 201, {"event_uri": event["uri"], "invitee_uri": new["uri"]}

    def _move(self, params: dict) -> tuple[int, dict]:
        """The event's start (and end) moved in place, with no webhook: drift as an operator may find it
        after a host edited a calendar by hand, or a lost delivery. (Calendly itself reschedules by
        cancelling and creating; this plays what the API would then answer for the old URI.)"""
        event = self._events.get(canonical_uri(params.get("event_uri")))
        if event is None:
            raise _not_found()
        old_start = parse_time(event["start_time"], "start_time")
        start = _start_time(params, old_start + timedelta(hours=1))
        end = start + (parse_time(event["end_time"], "end_time") - old_start)
        event.update(start_time=iso(start), end_time=iso(end), updated_at=iso(utcnow()))
        return 200, {"event_uri": event["uri"], "start_time": event["start_time"], "end_time": event["end_time"]}

    # state changes (lock held)

    def _active_invitee(self, uri: Any) -> dict:
        if not uri:
            raise _invalid("invitee_uri", "is required")
        invitee = self._invitee(uri)
        if invitee["status"] != "active":
            raise CalendlyError(403, "Invitee is already canceled")
        return invitee

    def _active_invitees(self, event_uri: str) -> list[dict]:
        return [i for i in self._invitees.values() if i["event"] == event_uri and i["status"] == "active"]

    def _cancel_invitee_record(self, invitee: dict, cancellation: dict) -> None:
        invitee.update(status="canceled", cancellation=dict(cancellation), updated_at=iso(utcnow()))
        counter = self._events[invitee["event"]]["invitees_counter"]
        counter["active"] = max(0, counter["active"] - 1)

    def _cancel_event_if_empty(self, event_uri: str, cancellation: dict) -> None:
        """A one-on-one event is canceled along with its only invitee."""
        event = self._events[event_uri]
        if event["status"] == "active" and not self._active_invitees(event_uri):
            self._cancel_event_record(event, cancellation)

    @staticmethod
    def _cancel_event_record(event: dict, cancellation: dict) -> None:
        event.update(status="canceled", cancellation=dict(cancellation), updated_at=iso(utcnow()))

    def _shape(self, params: dict) -> str:
        shape = params.get("shape") or getattr(self._config(), "calendly_payload_shape", "embedded")
        if shape not in SHAPES:
            raise _invalid("shape", "must be embedded or reference")
        return shape

    def _deliver(self, name: str, invitee: dict, shape: str) -> None:
        payload = copy.deepcopy(invitee)
        if shape == "embedded":
            payload["scheduled_event"] = copy.deepcopy(self._events[invitee["event"]])
        for path, value in self.novelties.items():
            *parents, leaf = path.split(".")
            target = payload
            for part in parents:
                if not isinstance(target.get(part), dict):
                    target[part] = {}
                target = target[part]
            target[leaf] = value
        body = {"created_at": iso(utcnow()), "created_by": self.host_uri, "event": name,
                "payload": payload}
        self._sender.enqueue("calendly", name, invitee["uri"], body)

    # invitee-facing pages

    def _pages(self) -> str:
        """Where this sandbox serves the invitee's pages (only called while serving a request)."""
        return self._public_base() + URL_PREFIX

    def _invitee_by_uuid(self, invitee_uuid: str) -> dict | None:
        with self._lock:
            found = next((i for uri, i in self._invitees.items() if uri.endswith(f"/invitees/{invitee_uuid}")), None)
            return copy.deepcopy(found)

    def rescheduling_page(self, invitee_uuid: str) -> Response:
        """The invitee's reschedule link (the invitee's `reschedule_url`): a new time for the same event
        type; Calendly then cancels the old invitee and creates a new one, and tells both."""
        invitee = self._invitee_by_uuid(invitee_uuid)
        if invitee is None or invitee["status"] != "active":
            return Response(_page("Sandbox Calendly", "<p>This booking cannot be rescheduled: it is canceled "
                                  "or unknown.</p>"), 404, mimetype="text/html")
        with self._lock:
            event = copy.deepcopy(self._events[invitee["event"]])
        start = parse_time(event["start_time"], "start_time") + timedelta(days=1)
        body = (f"<p>Now: {html.escape(event['name'])} at {html.escape(event['start_time'])}.</p>"
                f'<form method="post" action="{html.escape(url_for(".reschedule"))}">'
                '<input type="hidden" name="via" value="page">'
                f'<input type="hidden" name="invitee_uri" value="{html.escape(invitee["uri"])}">'
                f'<label>New start (UTC) <input name="start_time" value="{html.escape(iso(start))}"></label> '
                '<label>Reason <input name="reason"></label> <button>Reschedule</button></form>')
        return Response(_page("Sandbox Calendly: reschedule", body), mimetype="text/html")

    def cancellation_page(self, invitee_uuid: str) -> Response:
        """The invitee's cancel link (the invitee's `cancel_url`)."""
        invitee = self._invitee_by_uuid(invitee_uuid)
        if invitee is None or invitee["status"] != "active":
            return Response(_page("Sandbox Calendly", "<p>This booking is already canceled, or unknown.</p>"), 404,
                            mimetype="text/html")
        body = (f'<form method="post" action="{html.escape(url_for(".cancel"))}">'
                '<input type="hidden" name="via" value="page">'
                f'<input type="hidden" name="invitee_uri" value="{html.escape(invitee["uri"])}">'
                '<label>Reason <input name="reason"></label> <button>Cancel event</button></form>')
        return Response(_page("Sandbox Calendly: cancel", body), mimetype="text/html")

    def booking_page(self, slug: str) -> Response:
        booking = booking_from_url(request.url)
        esc = html.escape
        page = (
            f"<!doctype html><title>Sandbox Calendly</title><h1>Book: {esc(slug)}</h1>"
            f'<form method="post" action="{esc(url_for(".schedule"))}">'
            f'<input type="hidden" name="via" value="page">'
            f'<input type="hidden" name="scheduling_url" value="{esc(request.url)}">'
            f'<label>Name <input name="name" value="{esc(booking["name"])}"></label> '
            f'<label>Email <input name="email" value="{esc(booking["email"])}"></label> '
            f'<label>Start (UTC) <input name="start_time" value="{esc(iso(default_start()))}"></label> '
            f"<button>Schedule</button></form>")
        return Response(page, mimetype="text/html")


def _json(payload: dict, status: int) -> Response:
    return Response(json.dumps(payload), status, mimetype="application/json")


def _page(title: str, body: str) -> str:
    return f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>{body}"


def _canceled_html() -> str:
    return _page("Canceled", "<p>The event is canceled; the host has been told.</p>")


def _scheduled_html(result: dict, event: dict) -> str:
    """Confirmation page that tells an embedding page what Calendly's widget would tell it."""
    message = {"event": "calendly.event_scheduled",
               "payload": {"event": {"uri": result["event_uri"]}, "invitee": {"uri": result["invitee_uri"]}}}
    script_json = json.dumps(message).replace("</", "<\\/")
    return (
        "<!doctype html><title>Scheduled</title><h1>You are scheduled</h1>"
        f"<p>{html.escape(event['name'])} at {html.escape(event['start_time'])}</p>"
        f"<script>var message = {script_json};"
        "if (window.parent !== window) { window.parent.postMessage(message, '*'); }"
        "if (window.opener) { window.opener.postMessage(message, '*'); }</script>")
