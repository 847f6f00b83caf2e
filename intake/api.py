"""The client API the frontend calls and polls."""

from __future__ import annotations

import json
import re
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import peewee
from flask import Blueprint, Response, jsonify, request, url_for

from bookingflow.addresses import looks_like_a_list_or_name
from bookingflow.deliveries import CANCEL, CLIENT, RETRY_PAYMENT, SCHEDULED
from bookingflow.privacy import mask_email
from bookingflow.providers import calendly_client, limits
from bookingflow.providers.calendly_payloads import event_uri_of_invitee, is_event_uri, is_invitee_uri
from intake import inbox
from intake.errors import ApiError
from intake.poll_versions import KNOWN as KNOWN_VERSIONS
from models import bookings, flags
from models.db import read_snapshot, storable, utcnow
from models.inbox import is_stored
from models.states import CHECKOUT_OPEN, REPORTABLE, State, Trigger, allowed, update_fields
from models.tables import Booking, Dispute, SessionType, Transition

bp = Blueprint("api", __name__)

# No whitespace and no control characters (listed explicitly: Python's \s and JSON Schema's differ), and
# none of the punctuation of address lists, display names and comments: one plain address.
EMAIL = re.compile(r'^[^@\s\x00-\x1f\x7f-\x9f,;<>"()\[\]\\]{1,64}@[^@\s\x00-\x1f\x7f-\x9f,;<>"()\[\]\\]{1,255}\.[^@\s\x00-\x1f\x7f-\x9f,;<>"()\[\]\\]{2,63}$')
BOOKING_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


# A body is read as JSON whatever its Content-Type: `fetch` with a string body sends text/plain unless
# told otherwise, curl's -d sends a form's type, and either carrying a JSON object is what was meant. A
# body that is not JSON and was not declared JSON either is refused by its type (415), saying what to send.
JSON_MIMETYPES = ("", "application/json", "text/plain")


def _json_body() -> dict:
    try:
        body = request.get_json(force=True, silent=True)
    except RecursionError:  # nested too deep for Python's json; `silent` covers only ValueError
        body = None
    if isinstance(body, dict):
        return body
    mimetype = request.mimetype
    if mimetype not in JSON_MIMETYPES and not mimetype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"the body must be a JSON object (sent as application/json); "
                       f"got {mimetype[:100]}")
    raise ApiError(400, "invalid_json", "the body must be a JSON object")


def _text_field(body: dict, name: str, limit: int) -> str:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(422, "invalid_field", f"{name} must be a string, not {_json_type(value)}", field=name)
    if value is None or not value.strip():
        raise ApiError(422, "invalid_field", f"{name} is required", field=name)
    if not storable(value):
        raise ApiError(422, "invalid_field", f"{name} holds characters that are not text", field=name)
    value = value.strip()
    if len(value) > limit:
        raise ApiError(422, "invalid_field", f"{name} is longer than {limit} characters", field=name)
    return value


def _json_type(value) -> str:
    """What a JSON value is, in JSON's words: a number, an object..."""
    if isinstance(value, bool):
        return "a boolean"
    return {int: "a number", float: "a number", dict: "an object", list: "an array"}.get(type(value), "text")


def _booking_or_404(booking_id: str) -> Booking:
    booking = Booking.by_id(booking_id) if BOOKING_ID.fullmatch(booking_id) else None
    if booking is None:
        raise ApiError(404, "not_found", "no such booking")
    return booking


def _isoformat(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


def scheduling_url(session_type: SessionType, booking: Booking, prefill: bool = True) -> str:
    """The session type's Calendly link with the booking id in utm_content and, in the answer to the
    client who just typed them, their e-mail and name prefilled. Later answers go to whoever holds the
    booking id, which shows only the masked e-mail: they carry no prefill."""
    parts = urlsplit(session_type.scheduling_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("utm_content", "name", "email")]
    query += [("utm_content", booking.id)]
    if prefill:
        query += [("name", booking.name), ("email", booking.email)]
    return urlunsplit(parts._replace(query=urlencode(query)))


@bp.get("/v1/session-types")
def list_session_types():
    rows = SessionType.select().where(SessionType.active == True).order_by(SessionType.price, SessionType.slug)  # noqa: E712
    return jsonify([session_type_view(s) for s in rows])


def session_type_view(session_type: SessionType) -> dict:
    """A session type as offered: its default price and currency, its price in every currency it is
    offered in (`POST /v1/bookings` takes any of them), and what its checkout does."""
    return {
        "slug": session_type.slug, "name": session_type.name, "duration_minutes": session_type.duration_minutes,
        "price": session_type.price, "currency": session_type.currency,
        "prices": {currency: session_type.price_in(currency) for currency in session_type.currencies()},
        "promotion_codes": session_type.promotion_codes, "automatic_tax": session_type.automatic_tax,
        "invoice": session_type.invoice,
    }


def _currency_field(body: dict, session_type: SessionType) -> str:
    """The currency the client chose, one the session type is offered in; its default when not given."""
    value = body.get("currency")
    if value is None:
        return session_type.currency
    offered = session_type.currencies()
    if not isinstance(value, str) or value.lower() not in offered:
        shown = value if isinstance(value, str) and storable(value) else type(value).__name__
        raise ApiError(422, "currency_not_offered", f"session type {session_type.slug!r} is not offered in "
                       f"{shown[:10]!r}; offered: {', '.join(offered)}", field="currency")
    return value.lower()


def _creation_fields(body: dict) -> tuple[str, str, str]:
    return _text_field(body, "session_type", 100), _text_field(body, "email", 320), _text_field(body, "name", 200)


@bp.post("/v1/bookings")
def create_booking():
    body = _json_body()
    key = _idempotency_key()
    if key:
        found, earlier = bookings.created_with(key)
        if found:
            return _repeated_creation(earlier, body)
    slug, email, name = _creation_fields(body)
    if looks_like_a_list_or_name(email):
        raise ApiError(422, "invalid_field", "email must be one address, without a list (',' or ';'), a display "
                                             "name or a comment", field="email")
    if not EMAIL.match(email):
        raise ApiError(422, "invalid_field", "email is not an e-mail address", field="email")
    if not flags.is_enabled(flags.BOOKINGS_OPEN):
        raise ApiError(503, "bookings_closed", "new bookings are paused for now; please try again later")
    session_type = SessionType.get_or_none((SessionType.slug == slug) & (SessionType.active == True))  # noqa: E712
    if session_type is None:
        raise ApiError(422, "unknown_session_type", f"no session type {slug!r} is on offer", field="session_type")
    currency = _currency_field(body, session_type)
    try:
        booking = bookings.create(session_type, email, name, utcnow(), currency=currency, request_key=key or None)
    except peewee.IntegrityError:
        found, earlier = bookings.created_with(key) if key else (False, None)
        if not found:
            raise
        return _repeated_creation(earlier, body)  # the same key, sent twice at once: the other one won
    return _created(booking)


def _created(booking: Booking, replayed: bool = False):
    status_url = url_for("api.get_booking", booking_id=booking.id, _external=True)
    response = jsonify({
        "id": booking.id, "state": booking.state,
        "scheduling_url": scheduling_url(booking.session_type, booking), "status_url": status_url,
    })
    response.status_code = 201
    response.headers["Location"] = status_url
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _repeated_creation(earlier: Booking | None, body: dict):
    """A creation sent again under its Idempotency-Key: the same answer for the same request (the
    booking as it is now: its id, its link), whatever has changed since (a type no longer offered,
    bookings paused); a 409 when the key made another booking, or one that is gone. The fields are
    compared as the first request's were stored, so only who typed them gets the booking back."""
    slug, email, name = _creation_fields(body)
    if earlier is None:
        raise ApiError(409, "idempotency_key_reused", "the booking made under this Idempotency-Key is gone; "
                                                      "send a new key")
    currency = body.get("currency")
    currency = currency.lower() if isinstance(currency, str) else earlier.session_type.currency
    if not bookings.same_request(earlier, slug, email, name, currency):
        raise ApiError(409, "idempotency_key_reused", "this Idempotency-Key was sent with another booking request; "
                                                      "send a new key for a new booking")
    return _created(earlier, replayed=True)


def booking_view(booking: Booking) -> dict:
    history = (
        Transition.select(Transition.state, Transition.trigger, Transition.at, Transition.error_class,
                          Transition.error_message)
        .where(Transition.booking == booking.id)
        .order_by(Transition.at, Transition.id)
        .tuples()  # plain rows: no model instance per history row
    )
    return {
        "id": booking.id,
        "state": booking.state,
        "session_type": booking.session_type.slug,
        "email": mask_email(booking.email),
        "scheduled_start": _isoformat(booking.scheduled_start),
        "scheduled_end": _isoformat(booking.scheduled_end),
        "amount": booking.amount,
        "currency": booking.currency,
        "amount_paid": booking.amount_paid,
        "amount_refunded": booking.amount_refunded,
        "payments": [payment_view(payment) for payment in bookings.paid_payments(booking.id)],
        "checkout_url": booking.checkout_url if booking.state in CHECKOUT_OPEN else None,
        "updated_at": _isoformat(booking.updated_at),
        "error": {"class": booking.error_class, "message": booking.error_message} if booking.error_class else None,
        "history": [
            {"state": state, "trigger": trigger, "at": _isoformat(at),
             "error": {"class": error_class, "message": message} if error_class else None}
            for state, trigger, at, error_class, message in history
        ],
        "disputes": [
            {"status": status, "amount": amount, "currency": currency, "reason": reason,
             "opened_at": _isoformat(opened_at), "closed_at": _isoformat(closed_at)}
            for status, amount, currency, reason, opened_at, closed_at in (
                Dispute.select(Dispute.status, Dispute.amount, Dispute.currency, Dispute.reason, Dispute.created_at,
                               Dispute.closed_at)
                .where(Dispute.booking == booking.id).order_by(Dispute.created_at, Dispute.id).tuples())
        ],
    }


def payment_view(payment) -> dict:
    """A payment as the client paid it: the price, the discount, the tax and the total, and Stripe's
    receipt and invoice once Stripe has them (null until then)."""
    return {
        "amount_subtotal": payment.amount_subtotal if payment.amount_subtotal is not None else payment.amount,
        "amount_discount": payment.amount_discount, "amount_tax": payment.amount_tax, "amount_total": payment.amount,
        "currency": payment.currency, "receipt_url": payment.receipt_url, "invoice_url": payment.invoice_url,
    }


def _booking_with_session_type(booking_id: str) -> Booking | None:
    """The booking with its session type joined in: the view needs both, in one query."""
    return (
        Booking.select(Booking, SessionType.slug)
        .join(SessionType, on=Booking.session_type)
        .where(Booking.id == booking_id)
        .first()
    )


@bp.get("/v1/bookings/<booking_id>")
def get_booking(booking_id: str):
    # Every write bumps the version, so it is the ETag. A poll that sends its ETag is answered from the
    # version PostgreSQL last told this process (intake/poll_versions.py), or with one indexed read
    # while the booking is unchanged; the view is four queries in one snapshot (the booking with its
    # session type, its payments, history and disputes).
    if not BOOKING_ID.fullmatch(booking_id):  # match() would take a trailing newline
        raise ApiError(404, "not_found", "no such booking")
    epoch = KNOWN_VERSIONS.epoch
    if request.if_none_match:
        version = KNOWN_VERSIONS.version(booking_id)
        if version is None:
            version = bookings.version_of(booking_id)
            if version is None:
                raise ApiError(404, "not_found", "no such booking")
            KNOWN_VERSIONS.read(booking_id, version, epoch)
        etag = f"v{version}"
        if request.if_none_match.contains(etag):
            response = Response(status=304)
            response.set_etag(etag)
            response.headers["Cache-Control"] = "no-cache"
            return response
    with read_snapshot():
        # The booking row, its payments, history and disputes as of one moment: a transition that
        # commits meanwhile would otherwise show in the history under the older version's ETag.
        booking = _booking_with_session_type(booking_id)
        if booking is None:
            raise ApiError(404, "not_found", "no such booking")
        view = booking_view(booking)
    KNOWN_VERSIONS.read(booking_id, booking.version, epoch)
    response = jsonify(view)
    response.set_etag(f"v{booking.version}")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.post("/v1/bookings/<booking_id>/scheduled")
def report_scheduled(booking_id: str):
    booking = _booking_or_404(booking_id)
    body = _json_body()
    event_uri, invitee_uri = body.get("event_uri"), body.get("invitee_uri")
    if not is_event_uri(event_uri):
        raise ApiError(422, "invalid_field", "event_uri is not a Calendly scheduled event URI", field="event_uri")
    if not is_invitee_uri(invitee_uri) or urlsplit(event_uri_of_invitee(invitee_uri)).path != urlsplit(event_uri).path:
        raise ApiError(422, "invalid_field", "invitee_uri is not an invitee of event_uri", field="invitee_uri")
    if _accepted_before(booking, SCHEDULED):
        return _submit(booking, SCHEDULED, {"event_uri": event_uri, "invitee_uri": invitee_uri})
    if booking.state == State.IDLE.value:
        raise ApiError(409, "wrong_state", "the booking was abandoned", state=booking.state)
    _check_report_with_calendly(booking, event_uri, invitee_uri)
    return _submit(booking, SCHEDULED, {"event_uri": event_uri, "invitee_uri": invitee_uri})


def _check_report_with_calendly(booking: Booking, event_uri: str, invitee_uri: str) -> None:
    """A report is a claim: Calendly's API must confirm it names this booking's invitee, of its event
    type, held by no other booking; otherwise a clear 4xx and nothing stored. Only while the booking
    waits for its slot (afterwards the report changes nothing anyway). When Calendly cannot answer,
    the report is stored and the job checks it again before it moves anything."""
    if State(booking.state) not in REPORTABLE:
        return
    try:
        refusal = bookings.report_refusal(booking, event_uri, invitee_uri)
    except (calendly_client.CalendlyError, limits.RateLimited):
        return
    if refusal is not None:
        raise ApiError(422, refusal.code, refusal.message, field="invitee_uri")


def _idempotency_key() -> str:
    key = request.headers.get("Idempotency-Key", "").strip()[:100]
    if not storable(key):  # it becomes part of the stored event id; PostgreSQL refuses a NUL there
        raise ApiError(400, "invalid_header", "Idempotency-Key holds characters that are not text")
    return key


def _request_id(booking: Booking, kind: str, key: str) -> str:
    return f"{kind}:{booking.id}:{key}"


def _accepted_before(booking: Booking, kind: str) -> bool:
    """This request, by its Idempotency-Key, was stored before: a client that lost our 202 (or got a
    503 after the store) is sending it again. It gets 202 again, whatever state the booking has
    reached since; a 409 would tell it that its accepted request was refused."""
    key = _idempotency_key()
    return bool(key) and is_stored(CLIENT, _request_id(booking, kind, key))


def _submit(booking: Booking, kind: str, params: dict):
    """Store the client's request in the inbox, queue it, answer 202. A repeat carrying the same
    Idempotency-Key header is the same request."""
    key = _idempotency_key() or secrets.token_hex(16)
    inbox.accept(CLIENT, _request_id(booking, kind, key), kind, booking.id, json.dumps(params))
    return jsonify({"id": booking.id, "state": booking.state}), 202


def _require(booking: Booking, triggers: tuple[Trigger, ...], action: str, kind: str | None = None) -> None:
    """409 unless the state machine would take one of `triggers` now (the job decides for good), or
    this is a repeat of a request of `kind` already accepted."""
    if not any(allowed(booking, trigger) for trigger in triggers) and not (kind and _accepted_before(booking, kind)):
        raise ApiError(409, "wrong_state", f"cannot {action} a booking in {booking.state}", state=booking.state)


def _optional_json_body() -> dict:
    if not request.get_data(cache=True):
        return {}
    return _json_body()


@bp.post("/v1/bookings/<booking_id>/cancel")
def cancel_booking(booking_id: str):
    booking = _booking_or_404(booking_id)
    body = _optional_json_body()
    reason = body.get("reason")
    reason = "" if reason is None else reason
    if not isinstance(reason, str) or len(reason) > 500 or not storable(reason):
        raise ApiError(422, "invalid_field", "reason must be text of at most 500 characters", field="reason")
    _require(booking, (Trigger.cancelBooking, Trigger.cancelBookingProcess), "cancel", CANCEL)
    return _submit(booking, CANCEL, {"reason": reason.strip()})


@bp.post("/v1/bookings/<booking_id>/retry-payment")
def retry_payment(booking_id: str):
    booking = _booking_or_404(booking_id)
    _require(booking, (Trigger.retryPayment,), "retry the payment of", RETRY_PAYMENT)
    return _submit(booking, RETRY_PAYMENT, {})


@bp.post("/v1/bookings/<booking_id>/reschedule")
def reschedule_booking(booking_id: str):
    booking = _booking_or_404(booking_id)
    body = _optional_json_body()
    _require(booking, (Trigger.rescheduleBooking,), "reschedule")
    slug = body.get("session_type")
    current = booking.session_type
    if slug is not None and (not isinstance(slug, str) or not slug.strip() or not storable(slug)):
        raise ApiError(422, "invalid_field", "session_type must be a session type slug", field="session_type")
    if slug and slug != current.slug:
        target = SessionType.get_or_none((SessionType.slug == slug) & (SessionType.active == True))  # noqa: E712
        if target is None:
            raise ApiError(422, "unknown_session_type", f"no session type {slug!r} is on offer", field="session_type")
        if target.price_in(booking.currency) is None:
            # A difference is charged or refunded in the booking's currency: never across currencies.
            raise ApiError(422, "currency_mismatch", f"session type {slug!r} is not priced in {booking.currency}; "
                           f"it is offered in {', '.join(target.currencies())}", field="session_type")
        # Remembered, for a while, so that a new invitee of `target`'s event type is taken for this
        # reschedule. The price follows the event type actually booked, checked when it is matched.
        update_fields(booking.id, reschedule_session_type=target.id, reschedule_requested_at=utcnow())
        link = scheduling_url(target, booking, prefill=False)
    elif booking.calendly_reschedule_url:
        # Calendly's own reschedule page: it cancels the old slot and tells us both halves.
        update_fields(booking.id, reschedule_session_type=None, reschedule_requested_at=None)
        link = booking.calendly_reschedule_url
    else:
        update_fields(booking.id, reschedule_session_type=current.id, reschedule_requested_at=utcnow())
        link = scheduling_url(current, booking, prefill=False)
    return jsonify({"id": booking.id, "state": booking.state, "scheduling_url": link}), 202
