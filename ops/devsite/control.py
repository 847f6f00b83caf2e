"""A control page per booking: the sandbox's simulator endpoints, driven for this booking, playing the
invitee and the host in Calendly and the card holder at Stripe Checkout. Each button posts here; the
page calls the sandbox in process and comes back saying what the sandbox answered."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Callable
from urllib.parse import urlencode

from flask import Blueprint, abort, current_app, redirect, request

from intake.api import BOOKING_ID, scheduling_url
from models.tables import Booking, Outbox, Transition
from ops.devsite.html import money, page, table, when


@dataclass(frozen=True)
class Action:
    label: str
    hint: str
    # The sandbox path and JSON body for this booking, or None when the booking lacks what it needs.
    request: Callable[[Booking, dict], tuple[str, dict] | None]
    takes_start: bool = False
    done: str = ""  # what to say once the sandbox took it, when its answer alone would mislead


def _slot_link(booking: Booking) -> str:
    """The link the client would be given: the reschedule's session type while one is asked for."""
    return scheduling_url(booking.reschedule_session_type or booking.session_type, booking)


def _calendly(path: str, **fixed) -> Callable[[Booking, dict], tuple[str, dict] | None]:
    def build(booking: Booking, form: dict):
        if not booking.calendly_invitee_uri:
            return None
        body = {"invitee_uri": booking.calendly_invitee_uri, **fixed}
        if form.get("start_time"):
            body["start_time"] = form["start_time"]
        return path, body
    return build


def _schedule(booking: Booking, form: dict):
    body = {"scheduling_url": _slot_link(booking)}
    if form.get("start_time"):
        body["start_time"] = form["start_time"]
    return "/calendly/_sandbox/schedule", body


def _checkout(verb: str, **body) -> Callable[[Booking, dict], tuple[str, dict] | None]:
    def build(booking: Booking, form: dict):
        if not booking.checkout_session_id:
            return None
        return f"/stripe/checkout/{booking.checkout_session_id}/{verb}", dict(body)
    return build


CALENDLY_ACTIONS = {
    "schedule": Action("Schedule a slot", "as the invitee, with this booking's link (utm_content); Calendly sends "
                       "invitee.created", _schedule, takes_start=True),
    "reschedule": Action("Reschedule", "as the invitee, on Calendly's reschedule page: invitee.canceled "
                         "(rescheduled) and invitee.created", _calendly("/calendly/_sandbox/reschedule"), takes_start=True),
    "cancel_invitee": Action("Cancel as the invitee", "invitee.canceled by the invitee: refunded by the policy",
                             _calendly("/calendly/_sandbox/cancel", canceler_type="invitee")),
    "cancel_host": Action("Cancel as the host", "invitee.canceled by the host: refunded in full",
                          _calendly("/calendly/_sandbox/cancel", canceler_type="host")),
}
STRIPE_ACTIONS = {
    "pay": Action("Pay", "checkout.session.completed, paid", _checkout("pay", outcome="paid")),
    "decline": Action("Decline the card", "as Stripe Checkout does: the session stays open for another card and "
                      "Stripe sends no event, so the booking stays in PAYMENT_PROCESSING. Expire the session (or pay "
                      "later, then settle as failed) to see the payment fail and retry it",
                      _checkout("pay", outcome="failed"),
                      done="the card was declined; the session stays open for another card, and Stripe sends no event"),
    "pay_later": Action("Pay later", "a delayed method (e.g. a bank debit): completed, unpaid, until it settles",
                        _checkout("pay", outcome="delayed")),
    "settle": Action("Settle: succeeded", "the delayed payment arrives: async_payment_succeeded",
                     _checkout("settle", outcome="succeeded")),
    "settle_failed": Action("Settle: failed", "the delayed payment fails: async_payment_failed",
                            _checkout("settle", outcome="failed")),
    "expire": Action("Expire the session", "its expires_at passes: checkout.session.expired",
                     _checkout("expire")),
}
ACTIONS = {**CALENDLY_ACTIONS, **STRIPE_ACTIONS}


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/dev/bookings/<booking_id>", "control", control_page)
    bp.add_url_rule("/dev/bookings/<booking_id>", "act", act, methods=["POST"])


def _booking(booking_id: str) -> Booking:
    booking = Booking.by_id(booking_id) if BOOKING_ID.fullmatch(booking_id) else None
    if booking is None:
        abort(404)
    return booking


def act(booking_id: str):
    booking = _booking(booking_id)
    name = request.form.get("action", "")
    action = ACTIONS.get(name)
    if action is None:
        abort(400)
    built = action.request(booking, request.form.to_dict())
    if built is None:
        said, ok = f"{action.label}: this booking has nothing to do it on yet.", False
    else:
        path, body = built
        answer = current_app.config["DEVSITE"].sandbox.app.test_client().post(path, json=body)
        ok = answer.status_code < 400
        said = f"{action.label}: the sandbox answered {answer.status_code}"
        if ok and action.done:
            said += f": {action.done}"
        if not ok:
            said += f" ({_refusal(answer.get_json(silent=True))})"
    return redirect(f"/dev/bookings/{booking.id}?" + urlencode({"said": said, "ok": int(ok)}), 303)


def _refusal(body) -> str:
    """Either provider's error message, as their fakes write it."""
    if not isinstance(body, dict):
        return "no details"
    error = body.get("error") if isinstance(body.get("error"), dict) else body
    details = "; ".join(f"{d.get('parameter')}: {d.get('message')}" for d in body.get("details") or [])
    return " ".join(filter(None, [str(error.get("message") or body.get("title") or ""), details]))


def _forms(booking: Booking, actions: dict[str, Action]) -> str:
    forms = []
    for name, action in actions.items():
        ready = action.request(booking, {}) is not None
        start = ' <input name="start_time" placeholder="start, UTC (optional)" size=22>' if action.takes_start else ""
        forms.append(f'<form method=post><input type=hidden name=action value="{name}">'
                     f'<button name=go id="{name}"{"" if ready else " disabled"}>{escape(action.label)}</button>{start} '
                     f'<span class=hint>{escape(action.hint)}</span></form>')
    return "".join(forms)


def control_page(booking_id: str):
    booking = _booking(booking_id)
    said = request.args.get("said")
    notice = (f'<p class="{"said" if request.args.get("ok") == "1" else "refused"}" role=status>{escape(said)}</p>'
              if said else "")
    prefix = current_app.config["DEVSITE"].sandbox_prefix
    checkout = ""
    if booking.checkout_session_id:
        checkout = (f'<a href="{escape(prefix)}/stripe/checkout/{escape(booking.checkout_session_id)}">'
                    f"{escape(booking.checkout_session_id[:20])}…</a>")
    details = table(["", ""], [
        ["state", f'<code id="state">{escape(booking.state)}</code>'],
        ["session type", escape(booking.session_type.name)],
        ["price", money(booking.amount, booking.currency)],
        ["paid, refunded", f"{money(booking.amount_paid, booking.currency)}, {money(booking.amount_refunded, booking.currency)}"],
        ["slot", f"{when(booking.scheduled_start)} to {when(booking.scheduled_end)}" if booking.scheduled_start else "none yet"],
        ["Calendly invitee", f"<code>{escape(booking.calendly_invitee_uri or 'none yet')}</code>"],
        ["Checkout Session", checkout or "none yet"],
        ["flagged", escape(booking.flag_reason or "yes") if booking.flagged_at else "no"],
    ])
    history = table(["at", "from", "to", "trigger"], [
        [when(t.at), escape(t.from_state or ""), f"<code>{escape(t.state)}</code>", escape(t.trigger)]
        for t in Transition.select().where(Transition.booking == booking.id).order_by(Transition.at, Transition.id)])
    emails = [f'<li><a href="/dev/outbox/{row.id}">{escape(row.subject)}</a></li>'
              for row in Outbox.select(Outbox.id, Outbox.subject).where(Outbox.booking == booking.id).order_by(Outbox.id)]
    body = (f'{notice}<p>The client sees this booking at <a href="/bookings/{escape(booking.id)}">its status page</a>. '
            f"Reload this page to see what the buttons caused: webhooks take a moment.</p>{details}"
            f"<h2>In Calendly</h2>{_forms(booking, CALENDLY_ACTIONS)}"
            f"<h2>At Stripe Checkout</h2>{_forms(booking, STRIPE_ACTIONS)}"
            f"<h2>History</h2>{history}<h2>E-mails</h2><ul>{''.join(emails) or '<li>none</li>'}</ul>")
    return page(f"Booking {booking.id[:8]}…", body)
