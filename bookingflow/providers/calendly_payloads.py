"""Read Calendly webhook bodies of every shape seen in the wild into one plain record.

- API v2, 2023 shape: `payload` is the Invitee resource; `payload.event` is the scheduled event URI.
- API v2, newer shape: the same plus `payload.scheduled_event`, the scheduled event embedded.
- API v1 (legacy subscriptions): `payload.invitee`, `payload.event` and `payload.event_type` objects
  with uuids; URIs are rebuilt from them (v1 and v2 share uuids).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

API_ROOT = "https://api.calendly.com"
EVENT_PATH = re.compile(r"^/scheduled_events/([A-Za-z0-9_-]{1,100})/?$")
INVITEE_PATH = re.compile(r"^/scheduled_events/([A-Za-z0-9_-]{1,100})/invitees/([A-Za-z0-9_-]{1,100})/?$")


class PayloadInvalid(ValueError):
    """The body lacks what bookingflow reads; the reason is safe to store and show an operator."""


# The enum values bookingflow knows. Calendly adds values over time (an invitee awaiting the host's
# confirmation, a cancellation by an admin or by Calendly itself): an unknown one is recorded on the
# notice, logged once per process, and the notice is read as far as the known fields allow.
KNOWN_VALUES = {
    "invitee.status": ("active", "canceled"),
    "event.status": ("active", "canceled"),
    "cancellation.canceler_type": ("host", "invitee"),
}
_logged_unknown: set[tuple[str, str]] = set()


def _known(field: str, value, unknown: list[str]) -> str | None:
    """`value` if it is one bookingflow knows for `field`; else None, and it is recorded."""
    text = _text(value, 40)
    if text is None or text in KNOWN_VALUES[field]:
        return text
    unknown.append(f"{field}={text}")
    if (field, text) not in _logged_unknown:
        _logged_unknown.add((field, text))
        log.warning("Calendly sent %s=%r, a value bookingflow does not know; read as far as the known fields allow",
                    field, text)
    return None


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
    # Enum values bookingflow does not know, as "field=value" (read as None above).
    unknown_values: tuple[str, ...] = ()


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


def scheduled_event_info(resource: dict, unknown: list[str] | None = None) -> ScheduledEventInfo:
    """From a scheduled event resource (API answer or embedded object)."""
    if not isinstance(resource, dict) or not isinstance(resource.get("uri"), str):
        raise PayloadInvalid("scheduled event without uri")
    return ScheduledEventInfo(
        uri=resource["uri"],
        start=parse_time(resource.get("start_time")),
        end=parse_time(resource.get("end_time")),
        event_type=_text(resource.get("event_type")),
        status=_known("event.status", resource.get("status"), [] if unknown is None else unknown),
    )


def _invitee_uri_or_none(value) -> str | None:
    """old_invitee / new_invitee: kept only when shaped like an invitee URI."""
    return value if is_invitee_uri(value) else None


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
    if isinstance(event_uri, dict):  # an event object where a URI used to be
        event_uri = event_uri.get("uri")
    if not isinstance(event_uri, str) and isinstance(embedded, dict):
        event_uri = embedded.get("uri")
    # The event is the invitee's own, whatever else the body says: its URI is the invitee's prefix.
    if not is_event_uri(event_uri) or not invitee_uri.startswith(event_uri.rstrip("/") + "/"):
        event_uri = event_uri_of_invitee(invitee_uri)
    unknown: list[str] = []
    event = None
    if isinstance(embedded, dict):
        info = scheduled_event_info(embedded, unknown)
        # Trust the invitee's own event URI; the embedded object is the same event.
        event = ScheduledEventInfo(event_uri, info.start, info.end, info.event_type, info.status)
    cancellation = _cancellation(payload)
    return InviteeNotice(
        kind=kind,
        invitee_uri=invitee_uri,
        event_uri=event_uri,
        **_identity(payload, payload),
        status=_invitee_status(kind, payload.get("status"), unknown),
        rescheduled=payload.get("rescheduled") is True,
        old_invitee=_invitee_uri_or_none(payload.get("old_invitee")),
        new_invitee=_invitee_uri_or_none(payload.get("new_invitee")),
        cancel_url=_text(payload.get("cancel_url")),
        reschedule_url=_text(payload.get("reschedule_url")),
        canceler_type=_known("cancellation.canceler_type", cancellation.get("canceler_type"), unknown),
        cancel_reason=_text(cancellation.get("reason")),
        event=event,
        unknown_values=tuple(unknown),
    )


def _invitee_status(kind: str, value, unknown: list[str]) -> str | None:
    """The invitee's status; an unknown one is read from the delivery's kind (a created invitee is
    active, a canceled one canceled), which is all a delivery says for sure."""
    status = _known("invitee.status", value, unknown)
    if status is None and value is not None:
        return {"invitee.created": "active", "invitee.canceled": "canceled"}.get(kind)
    return status


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
    unknown: list[str] = []
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
        canceler_type=_known("cancellation.canceler_type", invitee.get("canceler_type") or event.get("canceler_type"),
                             unknown),
        cancel_reason=_text(invitee.get("cancel_reason") or event.get("cancel_reason")),
        event=ScheduledEventInfo(
            uri=event_uri,
            start=parse_time(event.get("start_time")),
            end=parse_time(event.get("end_time")),
            event_type=event_type_uri,
            status="canceled" if event.get("canceled") is True else "active",
        ),
        unknown_values=tuple(unknown),
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
