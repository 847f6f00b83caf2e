"""Operator views and actions over bookings and events (`bookingflow bookings|events|stats ...`)."""

from __future__ import annotations

import datetime as dt
import getpass
import json

import peewee

from bookingflow import crypto
from bookingflow import settings as settings_module
from bookingflow.privacy import mask_email
from bookingflow.providers.stripe_amounts import display
from models import operations
from models.db import utcnow, write_transaction
from models.operations import email_matches, stuck_bookings
from models.states import BookingNotFound, State, TransitionRefused, force
from models.tables import Booking, Dispute, Outbox, Payment, ProviderEvent, Refund, Transition
from ops.columns import print_table


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def parse_time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


BOOKING_HEADERS = ("ID", "STATE", "AMOUNT", "SINCE", "CLIENT", "FLAGGED")


def _booking_row(booking: Booking) -> tuple:
    return (booking.id, booking.state, display(booking.amount, booking.currency), _when(booking.state_changed_at),
            mask_email(booking.email), booking.flag_reason if booking.flagged_at else "")


def list_bookings(state: str | None, limit: int, stuck: bool = False, flagged: bool = False,
                  email: str | None = None) -> int:
    if stuck:
        rows = [booking for booking in stuck_bookings(utcnow())
                if email is None or crypto.normalize_email(booking.email) == crypto.normalize_email(email)][:limit]
    else:
        query = Booking.select().order_by(Booking.created_at.desc()).limit(limit)
        if state:
            if state.upper() not in State.__members__:
                print(f"unknown state {state!r}; one of: {', '.join(State.__members__)}")
                return 2
            query = query.where(Booking.state == state.upper())
        if flagged:
            query = query.where(Booking.flagged_at.is_null(False))
        if email is not None:
            query = query.where(email_matches(email))
        rows = list(query)
    print_table(BOOKING_HEADERS, (_booking_row(booking) for booking in rows), "no bookings")
    return 0


def _policy_line(booking: Booking) -> str:
    """The refund terms the booking's refunds follow, and whether they are frozen yet."""
    if booking.refund_policy_frozen_at is None:
        policy, when = booking.session_type.refund_policy, "the session type's current one (not yet paid)"
    else:
        policy, when = booking.refund_policy, f"frozen {_when(booking.refund_policy_frozen_at)}"
    terms = json.dumps(policy, sort_keys=True) if policy else "none (full refund)"
    cap = f"; at most {booking.refund_percent_cap}% after a reschedule" if booking.refund_percent_cap is not None else ""
    return f"{terms}, {when}{cap}"


def _payment_parts(payment: Payment) -> str:
    """What a paid total is made of, when a promotion code or tax made it differ from the price."""
    if payment.amount_subtotal is None or not (payment.amount_discount or payment.amount_tax):
        return ""
    parts = [f"price {display(payment.amount_subtotal, payment.currency)}"]
    if payment.amount_discount:
        parts.append(f"discount {display(-payment.amount_discount, payment.currency)}")
    if payment.amount_tax:
        parts.append(f"tax {display(payment.amount_tax, payment.currency)}")
    return f" ({', '.join(parts)})"


def show_booking(booking_id: str) -> int:
    booking = Booking.by_id(booking_id)
    if booking is None:
        print(f"no booking {booking_id}")
        return 1
    print(f"booking {booking.id}: {booking.state} (since {_when(booking.state_changed_at)})")
    if booking.flagged_at:
        print(f"  FLAGGED {_when(booking.flagged_at)}: {booking.flag_reason}")
    print(f"  session type {booking.session_type.slug}, {display(booking.amount, booking.currency)}, "
          f"paid {display(booking.amount_paid, booking.currency)}, "
          f"refunded {display(booking.amount_refunded, booking.currency)}")
    print(f"  client {mask_email(booking.email)}, invitee in Calendly {mask_email(booking.invitee_email) or '-'}; "
          f"slot {_when(booking.scheduled_start)} - {_when(booking.scheduled_end)}")
    print(f"  calendly event {booking.calendly_event_uri or '-'}")
    print(f"  refund policy {_policy_line(booking)}")
    print(f"  checkout {booking.checkout_session_id or '-'} (attempt {booking.payment_attempt}), "
          f"payment intent {booking.payment_intent_id or '-'}")
    for reason in (booking.cancel_reason, booking.payment_failure, booking.last_error):
        if reason:
            print(f"  note: {reason}")
    print(f"  next check {_when(booking.next_check_at)}, recoveries {booking.recovery_attempts}")
    print("history:")
    for row in Transition.select().where(Transition.booking == booking.id).order_by(Transition.at, Transition.id):
        print(f"  {_when(row.at)}  {row.from_state or '-':<26} -> {row.state:<26} {row.trigger} ({row.cause or '-'})")
    print("payments:")
    for payment in Payment.select().where(Payment.booking == booking.id).order_by(Payment.created_at):
        print(f"  {payment.checkout_session_id} attempt {payment.attempt}: {display(payment.amount, payment.currency)} "
              f"{payment.status}{_payment_parts(payment)}")
    print("refunds:")
    for refund in Refund.select().where(Refund.booking == booking.id).order_by(Refund.created_at):
        print(f"  {refund.stripe_refund_id or '(not yet asked)'} {refund.purpose}: {display(refund.amount, refund.currency)} "
              f"{refund.status}" + (f" ({refund.reason})" if refund.purpose == "outside" or refund.status == "withdrawn" else ""))
    print("disputes:")
    for dispute in Dispute.select().where(Dispute.booking == booking.id).order_by(Dispute.created_at, Dispute.id):
        closed = f", closed {_when(dispute.closed_at)}" if dispute.closed_at else ", open"
        print(f"  {dispute.stripe_dispute_id} of {dispute.payment_intent_id}: {display(dispute.amount, dispute.currency)} "
              f"{dispute.status} ({dispute.reason or 'no reason'}){closed}")
    print("e-mails:")
    for mail in Outbox.select().where(Outbox.booking == booking.id).order_by(Outbox.created_at, Outbox.id):
        if mail.sent_at:
            status = f"sent {_when(mail.sent_at)}"
        elif mail.withheld_at:
            status = f"WITHHELD, never sent: {mail.withheld_reason}"
        else:
            status = f"waiting ({mail.attempts} attempt(s){', ' + mail.last_error if mail.last_error else ''})"
        print(f"  {_when(mail.created_at)}  {mail.kind}: {status}")
    print("events:")
    for event in ProviderEvent.select().where(
            (ProviderEvent.booking == booking.id) | (ProviderEvent.subject == booking.id)).order_by(ProviderEvent.received_at):
        print(f"  {_when(event.received_at)}  {event.provider} {event.type} {event.event_id}: {event.outcome or 'pending'}")
    return 0


def _sweep_note() -> str:
    from ops.dev import DEV_SWEEP_SECONDS

    return (f"no BROKER_URL here: the scheduler's next sweep queues it (within "
            f"{settings_module.get().sweep_interval_seconds}s of `bookingflow scheduler`, {DEV_SWEEP_SECONDS}s of "
            f"`bookingflow dev`)")


def retry_booking(booking_id: str, queue: bool = True) -> int:
    """Run the booking's current step again, whatever its flag or backoff says: now when `queue` (a
    broker is installed), else at the scheduler's next sweep (unflagging makes it due at once)."""
    booking = Booking.by_id(booking_id)
    if booking is None:
        print(f"no booking {booking_id}")
        return 1
    operations.retry(booking_id, queue)
    if not queue:
        print(f"due now: the current step of booking {booking_id} ({booking.state}); {_sweep_note()}")
        return 0
    print(f"queued: the current step of booking {booking_id} ({booking.state})")
    return 0


def force_booking(booking_id: str, state: str, reason: str) -> int:
    if state.upper() not in State.__members__:
        print(f"unknown state {state!r}; one of: {', '.join(State.__members__)}")
        return 2
    try:
        booking = force(booking_id, State(state.upper()), reason, operator=f"operator {getpass.getuser()}")
    except ValueError as exc:
        print(str(exc))
        return 2
    except TransitionRefused:
        print(f"booking {booking_id} changed while forcing; look again")
        return 1
    except BookingNotFound:
        print(f"no booking {booking_id}")
        return 1
    print(f"booking {booking.id} forced to {booking.state}: {reason}")
    return 0


def list_events(unprocessed: bool, limit: int) -> int:
    query = ProviderEvent.select().order_by(ProviderEvent.received_at.desc()).limit(limit)
    if unprocessed:
        query = query.where(ProviderEvent.processed_at.is_null())
    print_table(("ID", "RECEIVED", "FROM", "TYPE", "OUTCOME", "EVENT"),
                ((event.id, _when(event.received_at), event.provider, event.type, event.outcome or "pending",
                  event.event_id) for event in query), "no unprocessed events" if unprocessed else "no events")
    return 0


def _events_to_replay(key: str | None, failed: bool, since: dt.datetime | None) -> list[ProviderEvent]:
    if key:
        event = ProviderEvent.get_or_none(ProviderEvent.id == int(key)) if key.isdigit() else None
        event = event or ProviderEvent.get_or_none(ProviderEvent.event_id == key)
        return [event] if event else []
    query = ProviderEvent.select().where(ProviderEvent.payload.is_null(False)).order_by(ProviderEvent.received_at)
    if failed:
        query = query.where(operations.failed_events())
    if since:
        query = query.where(ProviderEvent.received_at >= since)
    return list(query)


def replay_events(key: str | None, failed: bool, since: dt.datetime | None, queue: bool = True) -> int:
    """Process stored events again. Safe: handlers are idempotent, transitions dedupe on the cause.
    Each is reopened, then queued when `queue` (a broker is installed); a reopened event is also what
    the scheduler's sweep of unprocessed ones queues again."""
    chosen = _events_to_replay(key, failed, since)
    if not chosen:
        print("no event to replay" if not key else f"no event {key}")
        return 1 if key else 0
    for number, event in enumerate(chosen, 1):
        operations.replay(event, queue)
        if number == len(chosen) or number % 50 == 0:
            print(f"{'queued' if queue else 'reopened'} {number}/{len(chosen)}: {event.provider} {event.type} "
                  f"{event.event_id}", flush=True)
    if not queue:
        print(_sweep_note())
    return 0


def _rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _per_currency(rows) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in rows:
        totals[row.currency.lower()] = totals.get(row.currency.lower(), 0) + row.amount
    return totals


def _money(rows) -> str:
    """Amounts summed per currency, never across: "$50.00 + €12.00", or "0"."""
    return " + ".join(display(amount, currency) for currency, amount in sorted(_per_currency(rows).items())) or "0"


def money_by_currency(booking_ids, refunds, lost_disputes) -> dict[str, dict[str, int]]:
    """The money of bookings `booking_ids` (a query of their ids), one entry per currency and never a
    sum across currencies: what their paid checkouts charged (`charged`, the totals) made of the
    prices (`subtotal`), less the discounts promotion codes gave, plus the tax Stripe Tax added;
    `refunded` (succeeded `refunds`), `disputes_lost` (`lost_disputes`), and `net`, what stays:
    charged less both (tax included)."""
    paid = (Payment.select(Payment.currency, peewee.fn.COUNT(Payment.id).alias("payments"),
                           peewee.fn.SUM(Payment.amount).alias("charged"),
                           # A payment recorded without its parts (before they were kept) was its price.
                           peewee.fn.SUM(peewee.fn.COALESCE(Payment.amount_subtotal,
                                                            Payment.amount + Payment.amount_discount - Payment.amount_tax)
                                         ).alias("subtotal"),
                           peewee.fn.SUM(Payment.amount_discount).alias("discount"),
                           peewee.fn.SUM(Payment.amount_tax).alias("tax"))
            .where(Payment.booking.in_(booking_ids), Payment.status == "paid").group_by(Payment.currency))
    zero = dict.fromkeys(("payments", "subtotal", "discount", "tax", "charged", "refunded", "disputes_lost", "net"), 0)
    money: dict[str, dict[str, int]] = {}
    for row in paid:
        entry = money.setdefault(row.currency.lower(), dict(zero))
        for key in ("payments", "subtotal", "discount", "tax", "charged"):
            entry[key] += int(getattr(row, key) or 0)
    for key, rows in (("refunded", refunds), ("disputes_lost", lost_disputes)):
        for currency, amount in _per_currency(rows).items():
            money.setdefault(currency, dict(zero))[key] += amount
    for entry in money.values():
        entry["net"] = entry["charged"] - entry["refunded"] - entry["disputes_lost"]
    return dict(sorted(money.items()))


def stats(since: dt.datetime, until: dt.datetime) -> int:
    """Conversion, payment success, cancellation and refund rates; per currency, what was charged (prices,
    discounts, tax), refunded and kept; average booking value."""
    created = Booking.select().where(Booking.created_at >= since, Booking.created_at < until)
    ids = [b.id for b in created.select(Booking.id)]
    total = len(ids)

    def reached(*states: str) -> int:
        if not ids:
            return 0
        return (Transition.select(Transition.booking).distinct()
                .where(Transition.booking.in_(ids), Transition.state.in_(states)).count())

    confirmed = reached(State.BOOKING_CONFIRMED.value)
    cancelled = reached(State.BOOKING_CANCELLED.value)
    payments = Payment.select().where(Payment.booking.in_(ids)) if ids else Payment.select().where(False)
    paid = payments.where(Payment.status == "paid")
    refunds = Refund.select().where(Refund.booking.in_(ids), Refund.status == "succeeded") if ids else []
    values = Booking.select(Booking.currency, peewee.fn.SUM(Booking.amount_paid - Booking.amount_refunded).alias("net"),
                            peewee.fn.COUNT(Booking.id).alias("n")).where(
        Booking.id.in_(ids or [""]), Booking.amount_paid > 0).group_by(Booking.currency)
    print(f"bookings created {_when(since)} to {_when(until)}: {total}")
    print(f"  conversion (reached BOOKING_CONFIRMED): {confirmed} ({_rate(confirmed, total)})")
    print(f"  payment success (checkouts paid): {paid.count()} of {payments.count()} ({_rate(paid.count(), payments.count())})")
    print(f"  cancellation (after confirmation): {cancelled} ({_rate(cancelled, confirmed)})")
    refunded_bookings = len({r.booking_id for r in refunds})
    print(f"  refunds: {refunded_bookings} bookings ({_rate(refunded_bookings, confirmed)}), {_money(refunds)}")
    outside = [r for r in refunds if r.purpose == "outside"]
    print(f"  refunded outside bookingflow: {len({r.booking_id for r in outside})} bookings, {_money(outside)}")
    # Disputes of the period's bookings, and those that matched no payment of ours (recorded when opened).
    disputes = list(Dispute.select().where(Dispute.booking.in_(ids) if ids else Dispute.id.is_null()))
    unmatched = Dispute.select().where(Dispute.booking.is_null(), Dispute.created_at >= since,
                                       Dispute.created_at < until).count()
    by_status = {status: [d for d in disputes if d.status == status] for status in ("won", "lost")}
    still_open = [d for d in disputes if d.closed_at is None]
    print(f"  disputes: {len(disputes)} ({_rate(len({d.booking_id for d in disputes}), confirmed)} of confirmed bookings): "
          f"{len(still_open)} open ({_money(still_open)}), "
          f"{len(by_status['won'])} won ({_money(by_status['won'])}), "
          f"{len(by_status['lost'])} lost ({_money(by_status['lost'])}); "
          f"{unmatched} of payments not bookingflow's")
    money = money_by_currency(created.select(Booking.id), refunds, by_status["lost"])
    print("  money, per currency (never added up across currencies):" + ("" if money else " none"))
    for currency, m in money.items():
        shown = {key: display(value, currency) for key, value in m.items()}
        print(f"    {currency.upper()}: charged {shown['charged']} in {m['payments']} payment(s): prices {shown['subtotal']}, "
              f"discounts given {shown['discount']}, tax collected {shown['tax']}; refunded {shown['refunded']}, "
              f"lost in disputes {shown['disputes_lost']}; net {shown['net']}")
    for row in values:
        print(f"  average booking value, net of refunds: {display(int(row.net) // row.n, row.currency)} "
              f"over {row.n} paid bookings")
    return 0


def rotate_data_key(batch_size: int = 500) -> int:
    """Re-encrypt every booking's e-mail and name and its invitee's (re-computing its e-mail hash), every
    outbox e-mail's address (re-computing its hash) and text, and every stored delivery's body, with the first key of DATA_ENCRYPTION_KEY
    (plaintext rows written before a key was set are encrypted too). One transaction per batch of
    `batch_size` rows, in id order; safe to run again, and to stop and start over."""
    # email_hash is written with email (Booking._normalize_data), recipient_hash with recipient (Outbox's).
    bookings, unreadable = _reencrypt(Booking, ("email", "name", "invitee_email", "invitee_name"), "booking", "",
                                      batch_size, progress="")
    emails, unreadable_emails = _reencrypt(Outbox, ("recipient", "body"), "outbox e-mail", 0, batch_size,
                                           progress="outbox e-mails: ")
    deliveries, unreadable_deliveries = _reencrypt(ProviderEvent, ("payload",), "stored delivery", 0, batch_size,
                                                   progress="stored deliveries: ")
    if unreadable or unreadable_emails or unreadable_deliveries:
        print(f"{unreadable} booking(s), {unreadable_emails} e-mail(s) and {unreadable_deliveries} stored "
              f"deliveries could not be decrypted with the listed keys: add the key that wrote them to "
              f"DATA_ENCRYPTION_KEY (after the first) and run this again")
        return 1
    print(f"done: {bookings} booking(s), {emails} e-mail(s) in the outbox and {deliveries} stored deliveries "
          f"encrypted with the first key of DATA_ENCRYPTION_KEY")
    return 0


def _reencrypt(model, names: tuple[str, ...], what: str, before_first, batch_size: int,
               progress: str) -> tuple[int, int]:
    """Write `names` of every row of `model` again (sealed under the first key): (rotated, unreadable).
    Each batch prints `{progress}rotated N/TOTAL`; `before_first` sorts before every primary key."""
    key = model._meta.primary_key
    fields = [getattr(model, name) for name in names]
    total = model.select().count()
    rotated = unreadable = 0
    last_id = before_first
    while True:
        with write_transaction():
            # The stored values as they are (no decryption on read), so one unreadable row fails alone.
            batch = list(model.select(key, *(field.coerce(False) for field in fields))
                         .where(key > last_id).order_by(key).limit(batch_size).tuples())
            for row_id, *stored in batch:
                try:
                    # None: a delivery whose body was pruned after PAYLOAD_RETENTION_DAYS.
                    values = [None if value is None else crypto.unseal(value) for value in stored]
                except crypto.DecryptionError as exc:
                    unreadable += 1
                    print(f"{what} {row_id} left as it is: {exc}", flush=True)
                    continue
                model.update(dict(zip(fields, values))).where(key == row_id).execute()
                rotated += 1
        if not batch:
            return rotated, unreadable
        last_id = batch[-1][0]
        print(f"{progress}rotated {rotated}/{total}", flush=True)
