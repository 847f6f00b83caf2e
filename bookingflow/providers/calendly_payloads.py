"""Read Calendly webhook bodies of every shape seen in the wild into one plain record.

- API v2, 2023 shape: `payload` is the Invitee resource; `payload.event` is the scheduled event URI.
- API v2, newer shape: the same plus `payload.scheduled_event`, the scheduled event embedded.
- API v1 (legacy subscriptions): `payload.invitee`, `payload.event` and `payload.event_type` objects
  with uuids; URIs are rebuilt from them (v1 and v2 share uuids).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

API_ROOT = "https://api.calendly.com"
EVENT_PATH = re.compile(r"^/scheduled_events/([A-Za-z0-9_-]{1,100})/?$")
INVITEE_PATH = re.compile(r"^/scheduled_events/([A-Za-z0-9_-]{1,100})/invitees/([A-Za-z0-9_-]{1,100})/?$")


class PayloadInvalid(ValueError):
    """The body lacks what bookingflow reads; the reason is safe to store and show an operator."""


@dataclass(frozen=True)
class ScheduledEventInfo:
    uri: str
    start: dt.datetime | None
    end: dt.datetime | None
    event_type: str | None
    status: str | None


@dataclass(frozen=True)
class InviteeNotice:
    kind: str  # "invitee.created" | "invitee.canceled"
    invitee_uri: str
    event_uri: str
    email: str | None
    name: str | None
    utm_content: str | None
    status: str | None
    rescheduled: bool
    old_invitee: str | None
    new_invitee: str | None
    cancel_url: str | None
    reschedule_url: str | None
    canceler_type: str | None
    cancel_reason: str | None
    event: ScheduledEventInfo | None  # None when the body does not embed it: fetch from the API


def parse_time(value) -> dt.datetime | None:
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:  # v1's "2018-03-14 12:00:00 +0530"
            parsed = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z")
        except ValueError:
            raise PayloadInvalid(f"unreadable time {text[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def _path_of(uri) -> str | None:
    if not isinstance(uri, str) or not uri.startswith(("https://", "http://")) or len(uri) > 500:
        return None
    try:
        return urlsplit(uri).path
    except ValueError:  # a malformed host ("https://[/...") is simply not a Calendly URI
        return None


def is_event_uri(uri) -> bool:
    path = _path_of(uri)
    return path is not None and bool(EVENT_PATH.match(path))


def is_invitee_uri(uri) -> bool:
    path = _path_of(uri)
    return path is not None and bool(INVITEE_PATH.match(path))


def event_uri_of_invitee(invitee_uri: str) -> str:
    parts = urlsplit(invitee_uri)
    match = INVITEE_PATH.match(parts.path)
    return f"{parts.scheme}://{parts.netloc}/scheduled_events/{match.group(1)}"


def _text(value, limit: int = 500) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def invitee_identity(email, name) -> dict:
    """The booking's invitee_email and invitee_name as Calendly reported them (a webhook's invitee or
    the API's invitee resource): the only address the client's e-mails go to. What Calendly left out
    is left out here, so an earlier report stands."""
    fields = {}
    if isinstance(email, str) and email.strip():
        fields["invitee_email"] = email.strip()[:320]
    if isinstance(name, str) and name.strip():
        fields["invitee_name"] = name[:200]
    return fields


def scheduled_event_info(resource: dict) -> ScheduledEventInfo:
    """From a scheduled event resource (API answer or embedded object)."""
    if not isinstance(resource, dict) or not isinstance(resource.get("uri"), str):
        raise PayloadInvalid("scheduled event without uri")
    return ScheduledEventInfo(
        uri=resource["uri"],
        start=parse_time(resource.get("start_time")),
        end=parse_time(resource.get("end_time")),
        event_type=_text(resource.get("event_type")),
        status=_text(resource.get("status"), 40),
    )


def _tracking(payload: dict) -> dict:
    tracking = payload.get("tracking")
    return tracking if isinstance(tracking, dict) else {}


def _identity(invitee: dict, payload: dict) -> dict:
    """The invitee's address and name, and the tag our scheduling link carried, in either shape."""
    return dict(email=_text(invitee.get("email"), 320), name=_text(invitee.get("name"), 200),
                utm_content=_text(_tracking(payload).get("utm_content"), 200))


def _cancellation(payload: dict) -> dict:
    cancellation = payload.get("cancellation")
    return cancellation if isinstance(cancellation, dict) else {}


def _parse_v2(kind: str, payload: dict) -> InviteeNotice:
    invitee_uri = payload.get("uri")
    if not is_invitee_uri(invitee_uri):
        raise PayloadInvalid("payload.uri is not an invitee URI")
    embedded = payload.get("scheduled_event")
    event_uri = payload.get("event")
    if not isinstance(event_uri, str) and isinstance(embedded, dict):
        event_uri = embedded.get("uri")
    if not is_event_uri(event_uri):
        event_uri = event_uri_of_invitee(invitee_uri)
    event = None
    if isinstance(embedded, dict):
        info = scheduled_event_info(embedded)
        # Trust the invitee's own event URI; the embedded object is the same event.
        event = ScheduledEventInfo(event_uri, info.start, info.end, info.event_type, info.status)
    cancellation = _cancellation(payload)
    return InviteeNotice(
        kind=kind,
        invitee_uri=invitee_uri,
        event_uri=event_uri,
        **_identity(payload, payload),
        status=_text(payload.get("status"), 40),
        rescheduled=payload.get("rescheduled") is True,
        old_invitee=_text(payload.get("old_invitee")),
        new_invitee=_text(payload.get("new_invitee")),
        cancel_url=_text(payload.get("cancel_url")),
        reschedule_url=_text(payload.get("reschedule_url")),
        canceler_type=_text(cancellation.get("canceler_type"), 40),
        cancel_reason=_text(cancellation.get("reason")),
        event=event,
    )


def _parse_v1(kind: str, payload: dict) -> InviteeNotice:
    invitee, event = payload.get("invitee"), payload.get("event")
    if not (isinstance(invitee, dict) and isinstance(event, dict)):
        raise PayloadInvalid("v1 payload without invitee and event")
    event_uuid, invitee_uuid = event.get("uuid"), invitee.get("uuid")
    if not (isinstance(event_uuid, str) and isinstance(invitee_uuid, str)):
        raise PayloadInvalid("v1 payload without uuids")
    event_uri = f"{API_ROOT}/scheduled_events/{event_uuid}"
    invitee_uri = f"{event_uri}/invitees/{invitee_uuid}"
    if not (is_event_uri(event_uri) and is_invitee_uri(invitee_uri)):
        raise PayloadInvalid("v1 uuids are malformed")
    event_type = payload.get("event_type")
    event_type_uri = None
    if isinstance(event_type, dict) and isinstance(event_type.get("uuid"), str):
        event_type_uri = f"{API_ROOT}/event_types/{event_type['uuid']}"
    canceled = invitee.get("canceled") is True or kind == "invitee.canceled"
    return InviteeNotice(
        kind=kind,
        invitee_uri=invitee_uri,
        event_uri=event_uri,
        **_identity(invitee, payload),
        status="canceled" if canceled else "active",
        rescheduled=invitee.get("is_reschedule") is True or bool(payload.get("new_invitee")),
        old_invitee=None,
        new_invitee=None,
        cancel_url=None,
        reschedule_url=None,
        canceler_type=_text(invitee.get("canceler_type") or event.get("canceler_type"), 40),
        cancel_reason=_text(invitee.get("cancel_reason") or event.get("cancel_reason")),
        event=ScheduledEventInfo(
            uri=event_uri,
            start=parse_time(event.get("start_time")),
            end=parse_time(event.get("end_time")),
            event_type=event_type_uri,
            status="canceled" if event.get("canceled") is True else "active",
        ),
    )


def parse_invitee_notice(body: dict) -> InviteeNotice:
    if not isinstance(body, dict):
        raise PayloadInvalid("body is not an object")
    kind, payload = body.get("event"), body.get("payload")
    if not isinstance(kind, str) or not isinstance(payload, dict):
        raise PayloadInvalid("body lacks event or payload")
    if isinstance(payload.get("invitee"), dict):
        return _parse_v1(kind, payload)
    return _parse_v2(kind, payload)


def delivery_identity(body: dict) -> tuple[str, str | None]:
    """(event id, subject) of a delivery. Calendly sends no event id: an invitee is created once and
    canceled once, so the kind plus the invitee URI names the event; otherwise the payload's URI."""
    kind = body.get("event") if isinstance(body, dict) else None
    payload = body.get("payload") if isinstance(body, dict) else None
    subject = None
    if isinstance(payload, dict):
        if isinstance(payload.get("uri"), str):
            subject = payload["uri"][:500]
        elif isinstance(payload.get("invitee"), dict) and isinstance(payload.get("event"), dict):
            try:
                subject = _parse_v1(str(kind), payload).invitee_uri
            except PayloadInvalid:
                subject = None
    return (f"{kind}:{subject}" if subject else None), subject
