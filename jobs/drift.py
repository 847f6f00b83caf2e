"""The drift report: every booking of a period compared with what Stripe and Calendly say, each
difference listed with its repair, and the safe repairs applied on request.

Webhooks are hints that may never come; the reconciliation sweep (jobs/reconcile.py) looks at a
booking while it waits for one. This looks afterwards, at everything, through the providers' lists:
Checkout Sessions, PaymentIntents, refunds and disputes at Stripe, scheduled events at Calendly.

A repair is never a decision of its own. A lost webhook is repaired by running that webhook's handler
on the object read from the provider, as a stored delivery (`drift:...` in `bookingflow events list`)
through the event processor, so it is decided and recorded like any delivery; a refund still under
way is read again (ledger.refresh); a moved start time is written with the slot fields reconciliation
writes. Money that differs (amounts, currencies, a payment Stripe no longer calls succeeded) and a
slot Calendly no longer has are for an operator, never repaired here. A replay is stored under an id
naming the object and its status, so a repair is made once: if the drift is still there after it,
the next report hands it to an operator with what the handler decided.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import dramatiq

from bookingflow import broker
from bookingflow import deliveries as d
from bookingflow import settings as settings_module
from bookingflow.providers import calendly_client, stripe_amounts, stripe_client
from bookingflow.providers.calendly_claims import event_details
from bookingflow.providers.calendly_payloads import parse_invitee_notice
from jobs import dispatch, disputes, events, flow, ledger, payments, slots
from models import inbox
from models.alerts import raise_alert
from models.db import utcnow
from models.states import State, update_fields
from models.tables import Booking, Dispute, Payment, ProviderEvent, Refund

log = logging.getLogger(__name__)

OPERATOR = "operator"
REFRESH_REFUND = "ledger.refresh"
UPDATE_SLOT = "update slot"
REPLAY = "replay "  # + the delivery's type
REPLAY_PREFIX = "drift:"

# States in which the booking holds its Calendly slot: a cancelled or moved event matters there.
HOLDS_SLOT = frozenset({State.CALENDLY_WEBHOOK_RECEIVED, State.PAYMENT_PENDING, State.PAYMENT_PROCESSING,
                        State.PAYMENT_SUCCEEDED, State.PAYMENT_FAILED, State.BOOKING_CONFIRMED})
# States in which it holds none: an event still active at Calendly is a slot nobody gave back.
HOLDS_NO_SLOT = frozenset({State.IDLE, State.BOOKING_CANCELLED, State.REFUND_PENDING, State.REFUND_COMPLETED})
ALERT_LINES = 20


@dataclass(frozen=True)
class Drift:
    """One difference: what we have, what the provider has, and the repair (OPERATOR when none is safe)."""

    booking_id: str | None
    kind: str
    subject: str  # the provider's object: an id or a URI
    ours: str
    theirs: str
    repair: str
    # What the repair needs: the provider's object as read (a replay's body), or our refund row's id.
    provider_object: dict | None = field(default=None, compare=False, repr=False)
    refund_id: int | None = field(default=None, compare=False, repr=False)
    event_id: str | None = field(default=None, compare=False, repr=False)  # a replay's delivery id

    def as_dict(self) -> dict:
        return {"booking_id": self.booking_id, "kind": self.kind, "subject": self.subject,
                "ours": self.ours, "theirs": self.theirs, "repair": self.repair}


# --- replays: a lost webhook, delivered from what the provider's API says ------------------------

def replay_id(provider: str, event_type: str, subject: str, status: str | None = None) -> str:
    return f"{REPLAY_PREFIX}{provider}:{event_type}:{subject}" + (f":{status}" if status else "")


def _replay_or_operator(provider: str, event_type: str, event_id: str) -> str:
    """The repair replaying `event_type`, unless bookingflow has no handler for it, or the same replay
    was already made (the drift outlived it: an operator looks, with what the handler decided)."""
    if dispatch.handler_for(provider, event_type) is None or not d.is_handled(provider, event_type):
        return OPERATOR
    done = ProviderEvent.get_or_none(ProviderEvent.provider == provider, ProviderEvent.event_id == event_id[:255])
    if done is not None:
        return f"{OPERATOR} (replayed as {event_id}: {done.outcome or 'not yet processed'})"
    return REPLAY + event_type


def _stripe_body(event_id: str, event_type: str, obj: dict) -> dict:
    return {"id": event_id, "object": "event", "type": event_type, "data": {"object": obj}}


def _calendly_body(event_type: str, invitee: dict, event: dict) -> dict:
    return {"event": event_type, "created_at": utcnow().isoformat(), "payload": {**invitee, "scheduled_event": event}}


# --- Stripe ------------------------------------------------------------------------------------

def _unix(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def _money(amount, currency) -> str:
    """An amount for the operator; as Stripe sent it when it is not one (the drift may be just that)."""
    if isinstance(amount, int) and not isinstance(amount, bool) and isinstance(currency, str) and len(currency) == 3:
        return stripe_amounts.display(amount, currency)
    return f"{amount} {currency}"


def _session_drifts(payment: Payment, session: dict) -> list[Drift]:
    booking_id, sid = payment.booking_id, session["id"]
    paid_there = session.get("status") == "complete" and session.get("payment_status") in payments.PAID
    ours = f"session {payment.status}, {_money(payment.amount, payment.currency)}"
    theirs = (f"session {session.get('status')}/{session.get('payment_status')}, "
              f"{_money(session.get('amount_total'), session.get('currency'))}")
    if payment.status == "paid":
        if not paid_there:
            return [Drift(booking_id, "payment_not_paid_at_stripe", sid, ours, theirs, OPERATOR)]
        if session.get("amount_total") != payment.amount or str(session.get("currency")).lower() != payment.currency:
            return [Drift(booking_id, "amount_differs", sid, ours, theirs, OPERATOR)]
        return []
    if paid_there:
        if payments.mismatch(payment, session) is not None:
            return [Drift(booking_id, "amount_differs", sid, ours, theirs, OPERATOR)]
        event_id = replay_id(d.STRIPE, d.CHECKOUT_COMPLETED, sid)
        return [Drift(booking_id, "session_paid", sid, ours, theirs, _replay_or_operator(d.STRIPE, d.CHECKOUT_COMPLETED, event_id),
                      provider_object=session, event_id=event_id)]
    if session.get("status") == "expired" and payment.status == "open":
        event_id = replay_id(d.STRIPE, d.CHECKOUT_EXPIRED, sid)
        return [Drift(booking_id, "session_expired", sid, ours, theirs, _replay_or_operator(d.STRIPE, d.CHECKOUT_EXPIRED, event_id),
                      provider_object=session, event_id=event_id)]
    return []


def _intent_drifts(payment: Payment, intent: dict | None) -> list[Drift]:
    """A paid session's PaymentIntent: succeeded, for the amount and in the currency we recorded."""
    ours = f"paid {_money(payment.amount, payment.currency)}"
    if intent is None:
        return [Drift(payment.booking_id, "payment_intent_missing", payment.payment_intent_id, ours,
                      "not listed by Stripe", OPERATOR)]
    theirs = f"{intent.get('status')}, received {_money(intent.get('amount_received'), intent.get('currency'))}"
    if intent.get("status") != "succeeded":
        return [Drift(payment.booking_id, "payment_intent_status", intent["id"], ours, theirs, OPERATOR)]
    if intent.get("amount_received") != payment.amount or str(intent.get("currency")).lower() != payment.currency:
        return [Drift(payment.booking_id, "amount_differs", intent["id"], ours, theirs, OPERATOR)]
    return []


def _refund_drifts(refund: dict, payment: Payment) -> list[Drift]:
    ours_row = ledger.refund_of_stripe(refund)
    theirs = f"refund {refund.get('status')}, {_money(refund.get('amount'), refund.get('currency'))}"
    if ours_row is None:
        event_id = replay_id(d.STRIPE, d.REFUND_CREATED, refund["id"])
        return [Drift(payment.booking_id, "outside_refund", refund["id"], "no refund on our ledger", theirs,
                      _replay_or_operator(d.STRIPE, d.REFUND_CREATED, event_id), provider_object=refund, event_id=event_id)]
    ours = f"refund {ours_row.status}, {_money(ours_row.amount, ours_row.currency)}"
    if refund.get("amount") != ours_row.amount or str(refund.get("currency")).lower() != ours_row.currency:
        return [Drift(ours_row.booking_id, "amount_differs", refund["id"], ours, theirs, OPERATOR)]
    if refund.get("status") == ours_row.status:
        return []
    event_id = None
    if ours_row.status not in (*ledger.SETTLED_REFUND, *ledger.DEAD_REFUND) and ours_row.stripe_refund_id:
        repair = REFRESH_REFUND
    else:
        # A final status of ours Stripe has since changed (a refund that failed after succeeding): the
        # refund's own webhook decides which status may follow which.
        event_type = d.REFUND_FAILED if refund.get("status") == "failed" else d.REFUND_UPDATED
        event_id = replay_id(d.STRIPE, event_type, refund["id"], refund.get("status"))
        repair = _replay_or_operator(d.STRIPE, event_type, event_id)
    return [Drift(ours_row.booking_id, "refund_status", refund["id"], ours, theirs, repair,
                  provider_object=refund, refund_id=ours_row.id, event_id=event_id)]


def _dispute_drifts(dispute: dict, payment: Payment) -> list[Drift]:
    """A dispute of our payment missing from our ledger, or recorded with another status: repaired by
    the `charge.dispute.*` webhook that was lost (the handler records the dispute as Stripe sends it,
    flags the booking and alerts)."""
    row = Dispute.get_or_none(Dispute.stripe_dispute_id == dispute["id"])
    theirs = f"dispute {dispute.get('status')}, {_money(dispute.get('amount'), dispute.get('currency'))}"
    if row is None:
        ours, event_type = "no dispute on our ledger", d.DISPUTE_CREATED
    elif row.status != dispute.get("status"):
        ours = f"dispute {row.status}, {_money(row.amount, row.currency)}"
        event_type = d.DISPUTE_CLOSED if dispute.get("status") in disputes.CLOSED else d.DISPUTE_UPDATED
    else:
        return []
    event_id = replay_id(d.STRIPE, event_type, dispute["id"], dispute.get("status"))
    return [Drift(payment.booking_id, "dispute", dispute["id"], ours, theirs,
                  _replay_or_operator(d.STRIPE, event_type, event_id), provider_object=dispute, event_id=event_id)]


def stripe_drifts(bookings: dict[str, Booking], since: dt.datetime) -> list[Drift]:
    ours = list(Payment.select().where(Payment.booking.in_(list(bookings))))
    by_session = {p.checkout_session_id: p for p in ours}
    by_intent = {p.payment_intent_id: p for p in ours if p.payment_intent_id}
    created_since = _unix(since)
    found: list[Drift] = []
    seen: set[str] = set()
    for session in stripe_client.list_checkout_sessions(created_since):
        payment = by_session.get(session["id"])
        if payment is not None:
            seen.add(session["id"])
            drifted = _session_drifts(payment, session)
            if drifted:
                seen.discard(session["id"])  # one drift per payment: its intent is not compared again
                seen.add(f"drifted:{session['id']}")
            found += drifted
            intent = session.get("payment_intent")
            if isinstance(intent, str) and intent not in by_intent:
                by_intent[intent] = payment  # paid at Stripe, not yet on our ledger: its refunds are ours too
    for payment in ours:
        if payment.checkout_session_id not in seen and f"drifted:{payment.checkout_session_id}" not in seen:
            found.append(Drift(payment.booking_id, "session_missing", payment.checkout_session_id,
                               f"session {payment.status}", "not listed by Stripe", OPERATOR))
    intents = {intent["id"]: intent for intent in stripe_client.list_payment_intents(created_since)
               if intent["id"] in by_intent}
    for payment in ours:
        if payment.status == "paid" and payment.payment_intent_id and payment.checkout_session_id in seen:
            found += _intent_drifts(payment, intents.get(payment.payment_intent_id))
    for refund in stripe_client.list_refunds(created_since=created_since):
        if refund.get("payment_intent") in by_intent:
            found += _refund_drifts(refund, by_intent[refund["payment_intent"]])
    for dispute in stripe_client.list_disputes(created_since):
        if dispute.get("payment_intent") in by_intent:
            found += _dispute_drifts(dispute, by_intent[dispute["payment_intent"]])
    return found


# --- Calendly ------------------------------------------------------------------------------

def _start_of(event: dict) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(event.get("start_time")).replace("Z", "+00:00"))
    except ValueError:
        return None


def _event_drifts(booking: Booking, event: dict) -> list[Drift]:
    state, uri = State(booking.state), booking.calendly_event_uri
    ours = f"{booking.state}, starts {booking.scheduled_start.isoformat() if booking.scheduled_start else '-'}"
    theirs = f"event {event.get('status')}, starts {event.get('start_time')}"
    if state in HOLDS_SLOT and event.get("status") == "canceled":
        event_id = replay_id(d.CALENDLY, d.INVITEE_CANCELED, booking.calendly_invitee_uri or uri)
        repair = _replay_or_operator(d.CALENDLY, d.INVITEE_CANCELED, event_id) if booking.calendly_invitee_uri else OPERATOR
        return [Drift(booking.id, "event_cancelled", uri, ours, theirs, repair, provider_object=event, event_id=event_id)]
    if state in HOLDS_SLOT and event.get("status") == "active":
        start = _start_of(event)
        if start is not None and booking.scheduled_start is not None and start != booking.scheduled_start:
            repair = UPDATE_SLOT if booking.calendly_invitee_uri else OPERATOR
            return [Drift(booking.id, "start_moved", uri, ours, theirs, repair, provider_object=event)]
    if state in HOLDS_NO_SLOT and event.get("status") == "active" and (_start_of(event) or utcnow()) > utcnow():
        return [Drift(booking.id, "slot_still_held", uri, ours, theirs, OPERATOR)]
    return []


def calendly_drifts(bookings: dict[str, Booking], since: dt.datetime) -> list[Drift]:
    with_event = [b for b in bookings.values() if b.calendly_event_uri]
    if not with_event:
        return []
    wanted = {b.calendly_event_uri for b in with_event}
    # Events start after they are booked; a day's margin for a start moved earlier than the period.
    earliest = min([b.scheduled_start for b in with_event if b.scheduled_start] + [since]) - dt.timedelta(days=1)
    listed = {e["uri"]: e for e in calendly_client.list_scheduled_events(earliest) if e.get("uri") in wanted}
    found: list[Drift] = []
    for booking in with_event:
        event = listed.get(booking.calendly_event_uri)
        if event is None:
            try:
                event = calendly_client.get_scheduled_event(booking.calendly_event_uri)
            except calendly_client.CalendlyNotFound as gone:
                if State(booking.state) not in HOLDS_NO_SLOT:
                    found.append(Drift(booking.id, "event_missing", booking.calendly_event_uri,
                                       booking.state, f"Calendly answers {gone.status}", OPERATOR))
                continue
            except calendly_client.CalendlyRefused as refused:  # another host's event, a scope missing
                found.append(Drift(booking.id, "event_unreadable", booking.calendly_event_uri, booking.state,
                                   f"Calendly refuses ({refused.status})", OPERATOR))
                continue
        found += _event_drifts(booking, event)
    return found


# --- the report and the repairs --------------------------------------------------------------

def bookings_since(since: dt.datetime) -> dict[str, Booking]:
    return {b.id: b for b in Booking.select().where(Booking.created_at >= since).order_by(Booking.created_at)}


def find(since: dt.datetime) -> list[Drift]:
    """Every drift of the bookings created since `since`, Stripe's first."""
    bookings = bookings_since(since)
    if not bookings:
        return []
    return stripe_drifts(bookings, since) + calendly_drifts(bookings, since)


def _replay(provider: str, event_type: str, event_id: str, body: dict, subject: str | None) -> str:
    event, new = inbox.store(provider, event_id, event_type, subject, json.dumps(body))
    if not new:
        return f"already replayed as {event_id}: {event.outcome}"
    outcome = events.process(event.id)
    return f"replayed {event_type} as {event_id}: {outcome.name if outcome else 'processed elsewhere'}"


def _replay_stripe(drift: Drift) -> str:
    event_type = drift.repair.removeprefix(REPLAY)
    return _replay(d.STRIPE, event_type, drift.event_id, _stripe_body(drift.event_id, event_type, drift.provider_object),
                   drift.subject)


def _replay_calendly(drift: Drift) -> str:
    booking = Booking.get_by_id(drift.booking_id)
    invitee = calendly_client.get_invitee(booking.calendly_invitee_uri)
    if invitee.get("status") != "canceled":
        return "not repaired: the event is cancelled but its invitee is still active (an operator decides)"
    return _replay(d.CALENDLY, d.INVITEE_CANCELED, drift.event_id,
                   _calendly_body(d.INVITEE_CANCELED, invitee, drift.provider_object), invitee["uri"])


def _refresh_refund(drift: Drift) -> str:
    refund = Refund.get_by_id(drift.refund_id)
    if not ledger.refresh(refund):
        return "nothing to read: the refund is no longer under way"
    flow.settle_refund_state(refund.booking_id)
    return f"refund read again: {Refund.get_by_id(refund.id).status}"


def _update_slot(drift: Drift) -> str:
    """The start Calendly has, written as reconciliation writes a slot: the slot fields of the invitee."""
    booking = Booking.get_by_id(drift.booking_id)
    invitee = calendly_client.get_invitee(booking.calendly_invitee_uri)
    notice = parse_invitee_notice({"event": d.INVITEE_CREATED, "payload": {**invitee, "scheduled_event": drift.provider_object}})
    fields = slots.slot_fields(notice, event_details(notice))
    update_fields(booking.id, **fields)
    return f"slot updated: starts {fields['scheduled_start'].isoformat() if fields['scheduled_start'] else '-'}"


def apply(drift: Drift) -> str:
    """Apply the drift's safe repair; what was done, in words."""
    if drift.repair == REFRESH_REFUND:
        return _refresh_refund(drift)
    if drift.repair == UPDATE_SLOT:
        return _update_slot(drift)
    if drift.repair.startswith(REPLAY) and drift.kind == "event_cancelled":
        return _replay_calendly(drift)
    if drift.repair.startswith(REPLAY):
        return _replay_stripe(drift)
    return "left to an operator"


def repair(drifts: Iterable[Drift]) -> list[tuple[Drift, str]]:
    """Apply every safe repair, one at a time; one that fails is reported and the others still run."""
    done = []
    for drift in drifts:
        if drift.repair.startswith(OPERATOR):
            continue
        try:
            done.append((drift, apply(drift)))
        except Exception as exc:  # a provider down, a refused transition: the next report shows it again
            log.warning("drift %s of %s not repaired: %s", drift.kind, drift.booking_id, exc.__class__.__name__)
            done.append((drift, f"failed: {exc.__class__.__name__}: {str(exc)[:200]}"))
    return done


# --- the daily report ------------------------------------------------------------------------

def alert_text(drifts: list[Drift], since: dt.datetime) -> str:
    lines = [f"{d.kind} booking {d.booking_id} {d.subject}: ours {d.ours}; provider {d.theirs}; repair {d.repair}"
             for d in drifts[:ALERT_LINES]]
    more = [f"... and {len(drifts) - ALERT_LINES} more"] if len(drifts) > ALERT_LINES else []
    return "\n".join([f"{len(drifts)} drift(s) with Stripe and Calendly in bookings created since "
                      f"{since.date().isoformat()} (bookingflow reconcile report --repair applies the safe ones):",
                      *lines, *more])


def daily_report(day: str, now: dt.datetime | None = None) -> int:
    """The report of bookings created in the last DRIFT_REPORT_DAYS; an alert (one per day) when it
    finds drift. Repairs are left to an operator's `--repair`, after reading the report."""
    now = now or utcnow()
    since = now - dt.timedelta(days=settings_module.get().drift_report_days)
    drifts = find(since)
    log.info("drift report of %s: %d drift(s)", day, len(drifts))
    if drifts:
        raise_alert(f"drift:{day}", "drift", alert_text(drifts, since))
    return len(drifts)


@dramatiq.actor(actor_name=broker.REPORT_DRIFT, max_retries=3, min_backoff=60_000, max_backoff=600_000,
                max_age=12 * 3600_000, time_limit=1800_000)
def report_drift(day: str) -> None:
    daily_report(day)
