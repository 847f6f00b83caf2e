"""The tables. A booking's state and every field a client sees are written by models/ alone: the
state machine's apply() and force(), update_fields() and the functions built on it (models.states),
and its creation (models.bookings), each bumping its version."""

from __future__ import annotations

import datetime as dt
import json
import secrets

import peewee

from bookingflow import crypto
from models.db import UTCDateTimeField, database, utcnow
from models.encrypted import EncryptedTextField
from models.statements import RenderedByKey


class JSONField(peewee.TextField):
    def db_value(self, value):
        return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)

    def python_value(self, value):
        return None if value is None else json.loads(value)


# Defaults the database itself applies, to a column added by a migration: the previous release, still
# running while the new one is deployed, inserts rows without it.
OFF = peewee.SQL("DEFAULT FALSE")
ZERO = peewee.SQL("DEFAULT 0")


class _RelatedById(peewee.ForeignKeyAccessor):
    """`row.<foreign key>` loads the related row with `by_id` (SQL rendered once) instead of a query
    built anew: a booking's session type is read on almost every step of a job."""

    def get_rel_instance(self, instance):
        value = instance.__data__.get(self.name)
        if value is not None and self.name not in instance.__rel__ and self.field.lazy_load \
                and self.field.rel_field is self.rel_model._meta.primary_key:
            instance.__rel__[self.name] = self.rel_model.get_by_id(value)
        return super().get_rel_instance(instance)


class ForeignKey(peewee.ForeignKeyField):
    accessor_class = _RelatedById


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False

    @classmethod
    def by_id(cls, pk):
        """The row with this primary key, or None: read with SQL rendered once (models/statements.py)."""
        rendered = cls.__dict__.get("_rendered_by_id")
        if rendered is None:
            rendered = RenderedByKey(cls, cls._meta.primary_key)
            setattr(cls, "_rendered_by_id", rendered)
        return rendered.get(pk)

    @classmethod
    def get_by_id(cls, pk):
        row = cls.by_id(pk)
        if row is None:
            raise cls.DoesNotExist(f"{cls.__name__} with id {pk!r} does not exist")
        return row


class HashesItsAddress:
    """A model whose e-mail address column is written with its keyed hash (`hashed_address` names the
    two), to find rows by address without reading the encrypted column. Under create(), save(),
    insert() and update() alike; insert_many() and insert_from() bypass this, and nothing writes these
    rows that way."""

    hashed_address: tuple[str, str]

    @classmethod
    def _normalize_data(cls, data, kwargs):
        normalized = super()._normalize_data(data, kwargs)
        if isinstance(normalized, dict):
            address, hashed = (getattr(cls, name) for name in cls.hashed_address)
            for field, value in list(normalized.items()):
                if field is address and not isinstance(value, peewee.Node):
                    normalized[hashed] = crypto.email_hash(value)
        return normalized


class SessionType(BaseModel):
    slug = peewee.CharField(max_length=100, unique=True)
    name = peewee.CharField(max_length=200)
    duration_minutes = peewee.IntegerField()
    price = peewee.BigIntegerField()  # minor units of `currency`
    currency = peewee.CharField(max_length=3)  # ISO 4217, lowercase as Stripe writes it
    calendly_event_type = peewee.CharField(max_length=500)
    scheduling_url = peewee.CharField(max_length=500)
    refund_policy = JSONField(null=True)
    active = peewee.BooleanField(default=True)  # off: not offered for new bookings
    collect_payment = peewee.BooleanField(default=True)  # off: a free session, confirmed without checkout
    # Prices in other currencies than `currency`, minor units of each: {"usd": 13000, "gbp": 10500}.
    prices = JSONField(null=True)
    # What Stripe Checkout does for this type: accept promotion codes, compute tax with Stripe Tax,
    # issue an invoice for the payment.
    promotion_codes = peewee.BooleanField(default=False, constraints=[OFF])
    automatic_tax = peewee.BooleanField(default=False, constraints=[OFF])
    invoice = peewee.BooleanField(default=False, constraints=[OFF])
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    def price_in(self, currency: str) -> int | None:
        """The price in `currency` (minor units), or None when the type is not offered in it."""
        currency = currency.lower()
        if currency == self.currency:
            return self.price
        amount = (self.prices or {}).get(currency)
        return amount if isinstance(amount, int) and not isinstance(amount, bool) else None

    def currencies(self) -> list[str]:
        """The currencies the type is offered in, its default first."""
        return [self.currency, *sorted(c for c in (self.prices or {}) if c != self.currency)]


def new_booking_id() -> str:
    # 192 random bits: the id is the only key to a booking's status, so it must not be guessable. Never
    # starting with "-", which a command line (`bookingflow bookings show <id>`) would take for an option.
    while True:
        candidate = secrets.token_urlsafe(24)
        if not candidate.startswith("-"):
            return candidate


class Booking(HashesItsAddress, BaseModel):
    id = peewee.CharField(primary_key=True, max_length=64, default=new_booking_id)
    session_type = ForeignKey(SessionType, backref="bookings", on_delete="RESTRICT")
    state = peewee.CharField(max_length=40)
    # Bumped by every write; the ETag of the status endpoint.
    version = peewee.IntegerField(default=1)
    # The client's personal data: encrypted at rest when DATA_ENCRYPTION_KEY is set (bookingflow.crypto).
    email = EncryptedTextField()
    name = EncryptedTextField()
    # The keyed hash of the normalized e-mail, to find bookings by address; NULL without a key. Written
    # with every write of `email` (see _normalize_data), never by callers.
    email_hash = peewee.CharField(max_length=64, null=True, index=True)
    amount = peewee.BigIntegerField()  # what the booking costs, minor units
    currency = peewee.CharField(max_length=3)
    # What the current payment attempt charges: the price, or a reschedule's price difference.
    amount_due = peewee.BigIntegerField(default=0)
    # Sums of the Payment and Refund ledgers below, kept beside the booking for the status page.
    amount_paid = peewee.BigIntegerField(default=0)
    amount_refunded = peewee.BigIntegerField(default=0)
    # The invitee as Calendly reported it (its webhook or its API), never as the client typed it: the
    # only address the client's e-mails go to, and the name they greet. NULL until Calendly told.
    invitee_email = EncryptedTextField(null=True)
    invitee_name = EncryptedTextField(null=True)
    calendly_event_uri = peewee.CharField(max_length=500, null=True, index=True)
    calendly_invitee_uri = peewee.CharField(max_length=500, null=True, index=True)
    calendly_cancel_url = peewee.CharField(max_length=500, null=True)
    calendly_reschedule_url = peewee.CharField(max_length=500, null=True)
    scheduled_start = UTCDateTimeField(null=True)
    scheduled_end = UTCDateTimeField(null=True)
    # Each payment attempt gets its own Checkout Session and its own idempotency key.
    payment_attempt = peewee.IntegerField(default=0)
    checkout_session_id = peewee.CharField(max_length=255, null=True, index=True)
    checkout_url = peewee.TextField(null=True)
    checkout_expires_at = UTCDateTimeField(null=True)
    payment_intent_id = peewee.CharField(max_length=255, null=True, index=True)
    payment_failure = peewee.CharField(max_length=200, null=True)  # why the last attempt failed
    last_error = peewee.CharField(max_length=500, null=True)  # what went wrong last, for operators
    # The last failure's class (transient, validation, payment, integration, system) and a message
    # fit for the client; cleared by the next transition that is not itself an error.
    error_class = peewee.CharField(max_length=20, null=True)
    error_message = peewee.CharField(max_length=300, null=True)
    cancelled_by = peewee.CharField(max_length=20, null=True)  # client, invitee, host, system, operator(_in_full)
    cancel_reason = peewee.CharField(max_length=500, null=True)
    # A reschedule in progress: the session type chosen (when it changes), the invitee Calendly
    # created, and the event it replaces (cancelled by us when the client moved to another type).
    reschedule_session_type = ForeignKey(SessionType, null=True, on_delete="SET NULL")
    reschedule_invitee_uri = peewee.CharField(max_length=500, null=True, index=True)
    replaced_event_uri = peewee.CharField(max_length=500, null=True)
    # When the client asked to move to another slot or type: a request expires (a new invitee booked
    # after RESCHEDULE_REQUEST_MINUTES is not taken for it). And the start of the slot a reschedule
    # gives up, which prices a downgrade's refund under the policy.
    reschedule_requested_at = UTCDateTimeField(null=True)
    rescheduled_from_start = UTCDateTimeField(null=True)
    # The refund policy in force when the client paid, used for every later refund of the booking, so
    # that an operator's later edit of the session type does not change terms already agreed. Before
    # it is frozen (refund_policy_frozen_at NULL) the session type's current policy applies.
    refund_policy = JSONField(null=True)
    refund_policy_frozen_at = UTCDateTimeField(null=True)
    # The most a later cancellation may refund, in percent, after a reschedule: what cancelling would
    # have refunded when a slot was given up. Moving a slot inside the no-refund window to a later
    # date, then cancelling, must not buy back the refund the policy had already ruled out.
    refund_percent_cap = peewee.IntegerField(null=True)
    # Closing work of a cancelled or abandoned booking: the Calendly slot and open checkouts released,
    # then the refund decided. A sweep finishes whatever a dead worker left undone.
    released_at = UTCDateTimeField(null=True)
    settled_at = UTCDateTimeField(null=True)
    # When the scheduler looks at the booking next (a provider check, a timeout, a recovery), and
    # how often it has looked in this state. A sweep claims a due booking by moving this forward.
    next_check_at = UTCDateTimeField(null=True, index=True)
    check_attempts = peewee.IntegerField(default=0)
    recovery_attempts = peewee.IntegerField(default=0)
    # Set when automation gave up: an operator must look (the alert went out once).
    flagged_at = UTCDateTimeField(null=True, index=True)
    flag_reason = peewee.CharField(max_length=500, null=True)
    # The state a booking was in when it went wrong; ERROR_RECOVERY returns there.
    error_origin = peewee.CharField(max_length=40, null=True)
    state_changed_at = UTCDateTimeField(default=utcnow)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("state", "state_changed_at"), False),)

    hashed_address = ("email", "email_hash")


class Transition(BaseModel):
    """The history of a booking: one row per state change, written with it."""

    booking = ForeignKey(Booking, backref="history", on_delete="CASCADE")
    from_state = peewee.CharField(max_length=40, null=True)
    state = peewee.CharField(max_length=40)
    trigger = peewee.CharField(max_length=40)
    # What caused it: a provider event id, a job, a client request. (booking, trigger, cause) is
    # unique, so the same cause can never move a booking twice.
    cause = peewee.CharField(max_length=255, null=True)
    at = UTCDateTimeField(default=utcnow)
    # For a transition caused by a failure: its class and the client-safe message.
    error_class = peewee.CharField(max_length=20, null=True)
    error_message = peewee.CharField(max_length=300, null=True)

    class Meta:
        indexes = ((("booking", "trigger", "cause"), True),)


class ProviderEvent(BaseModel):
    """Every accepted webhook delivery, stored before it is acknowledged."""

    provider = peewee.CharField(max_length=20)
    event_id = peewee.CharField(max_length=255)
    type = peewee.CharField(max_length=100)
    # The Calendly invitee (or Stripe object) the event is about, to match it later.
    subject = peewee.CharField(max_length=500, null=True, index=True)
    booking = ForeignKey(Booking, null=True, backref="events", on_delete="SET NULL")
    received_at = UTCDateTimeField(default=utcnow, index=True)
    processed_at = UTCDateTimeField(null=True)
    outcome = peewee.CharField(max_length=40, null=True)
    detail = peewee.TextField(null=True)
    attempts = peewee.IntegerField(default=0)
    # The body as received, less card and cardholder details (intake/inbox.py). Encrypted at rest like
    # the booking's e-mail and name: Calendly's invitee and Stripe's customer details carry them too.
    payload = EncryptedTextField(null=True)

    class Meta:
        indexes = (
            (("provider", "event_id"), True),
            (("processed_at", "received_at"), False),
        )


class Payment(BaseModel):
    """One Checkout Session we created: one per booking and payment attempt."""

    booking = ForeignKey(Booking, backref="payments", on_delete="CASCADE")
    attempt = peewee.IntegerField(index=True)
    checkout_session_id = peewee.CharField(max_length=255, unique=True)
    # What the attempt asks for until it is paid; then what Stripe charged (the total, after any
    # discount, with any tax): the money held, what refunds are a share of.
    amount = peewee.BigIntegerField()
    currency = peewee.CharField(max_length=3)
    status = peewee.CharField(max_length=20, default="open")  # open, paid, expired, failed
    payment_intent_id = peewee.CharField(max_length=255, null=True, index=True)
    # As Stripe reported the paid session: the price before discounts and tax (what confirms the
    # booking), the discount a promotion code gave, and the tax Stripe Tax added.
    amount_subtotal = peewee.BigIntegerField(null=True)
    amount_discount = peewee.BigIntegerField(default=0, constraints=[ZERO])
    amount_tax = peewee.BigIntegerField(default=0, constraints=[ZERO])
    # The client's receipt (the charge's receipt_url) and, for a type with `invoice`, Stripe's invoice.
    receipt_url = peewee.TextField(null=True)
    invoice_id = peewee.CharField(max_length=255, null=True)
    invoice_url = peewee.TextField(null=True)
    # When the receipt and invoice were last asked of Stripe: a sweep asks again, now and then, for
    # those Stripe did not have yet.
    documents_checked_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)


def documents_missing() -> peewee.Expression:
    """A paid payment whose receipt (it has a charge) or invoice (one was issued) is not on record yet.
    Migration 10's partial index serves exactly this condition."""
    return ((Payment.status == "paid")
            & ((Payment.receipt_url.is_null() & Payment.payment_intent_id.is_null(False))
               | (Payment.invoice_url.is_null() & Payment.invoice_id.is_null(False))))


class Refund(BaseModel):
    """Money we send back, one row per Stripe refund. The row exists before the Stripe call, and
    its key names the decision (purpose and booking), so a retried job finds it instead of refunding twice."""

    booking = ForeignKey(Booking, backref="refunds", on_delete="CASCADE")
    key = peewee.CharField(max_length=255, unique=True)
    purpose = peewee.CharField(max_length=30)  # cancellation, abandoned, reschedule, duplicate_payment
    payment_intent_id = peewee.CharField(max_length=255)
    amount = peewee.BigIntegerField()
    currency = peewee.CharField(max_length=3)
    status = peewee.CharField(max_length=20, default="new")  # new, pending, succeeded, failed, canceled
    stripe_refund_id = peewee.CharField(max_length=255, null=True, unique=True)
    reason = peewee.CharField(max_length=500, null=True)
    # How many times Stripe definitively refused to create this refund: the idempotency key of each
    # new request carries it (jobs/ledger.py says why that can never refund twice).
    attempt = peewee.IntegerField(default=0)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)


class Dispute(BaseModel):
    """A chargeback on a payment of a booking (Stripe's `charge.dispute.*`), as Stripe last told it.
    Money under dispute is never refunded by bookingflow: the card network decides where it goes."""

    booking = ForeignKey(Booking, null=True, backref="disputes", on_delete="SET NULL")
    stripe_dispute_id = peewee.CharField(max_length=255, unique=True)
    charge_id = peewee.CharField(max_length=255, null=True)
    payment_intent_id = peewee.CharField(max_length=255, null=True, index=True)
    amount = peewee.BigIntegerField()  # minor units of `currency`
    currency = peewee.CharField(max_length=3)
    # Stripe's status, kept as sent (an open set): warning_needs_response, needs_response,
    # under_review, won, lost, ... `closed_at` is set once it is won or lost.
    status = peewee.CharField(max_length=40)
    reason = peewee.CharField(max_length=60, null=True)
    closed_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)


# A claim older than this belongs to a sender that died; the row may be sent again. Past send_email's
# time limit (60 s, the SMTP timeout of 20 s within it), no live sender still holds it: an e-mail
# whose worker was killed mid-send waits two minutes, not ten.
OUTBOX_CLAIM_TIMEOUT = dt.timedelta(minutes=2)


class Outbox(HashesItsAddress, BaseModel):
    """E-mails to clients, written in the same transaction as the change they announce. One that must
    not go out (its recipient is not one plain address, or the address had its hourly share) is kept,
    with `withheld_at` and the reason, and never sent."""

    booking = ForeignKey(Booking, null=True, backref="emails", on_delete="SET NULL")
    key = peewee.CharField(max_length=255, unique=True)
    kind = peewee.CharField(max_length=40)
    # The client's address and the e-mail's text (their name is in it): personal data, encrypted at
    # rest like the booking's when DATA_ENCRYPTION_KEY is set.
    recipient = EncryptedTextField()
    # The keyed hash of the normalized recipient (crypto.email_hash), what the per-address cap counts
    # by; NULL without a key. Written with every write of `recipient` (see _normalize_data).
    recipient_hash = peewee.CharField(max_length=64, null=True)
    subject = peewee.CharField(max_length=300)
    body = EncryptedTextField()
    created_at = UTCDateTimeField(default=utcnow)
    claimed_at = UTCDateTimeField(null=True)
    sent_at = UTCDateTimeField(null=True, index=True)
    attempts = peewee.IntegerField(default=0)
    last_error = peewee.CharField(max_length=500, null=True)
    withheld_at = UTCDateTimeField(null=True)
    withheld_reason = peewee.CharField(max_length=300, null=True)

    class Meta:
        indexes = ((("recipient_hash", "created_at"), False),)

    hashed_address = ("recipient", "recipient_hash")

    @classmethod
    def sendable(cls, now):
        """Rows a sender may claim now: not sent, not withheld, and not held by a live sender (a claim
        older than OUTBOX_CLAIM_TIMEOUT belongs to a sender that died)."""
        return (cls.sent_at.is_null() & cls.withheld_at.is_null()
                & (cls.claimed_at.is_null() | (cls.claimed_at < now - OUTBOX_CLAIM_TIMEOUT)))


class FeatureFlag(BaseModel):
    """Switches an operator flips at run time (`bookingflow flags`); absent means the default."""

    name = peewee.CharField(max_length=100, unique=True)
    enabled = peewee.BooleanField()
    note = peewee.CharField(max_length=500, null=True)
    updated_at = UTCDateTimeField(default=utcnow)


class Alert(BaseModel):
    """A critical incident for operators, raised once per key and POSTed to ALERT_WEBHOOK_URL."""

    key = peewee.CharField(max_length=255, unique=True)
    kind = peewee.CharField(max_length=40)  # flagged_booking, refund_failed, delivery_failing
    booking = ForeignKey(Booking, null=True, backref="alerts", on_delete="SET NULL")
    text = peewee.TextField()
    created_at = UTCDateTimeField(default=utcnow)
    sent_at = UTCDateTimeField(null=True, index=True)
    attempts = peewee.IntegerField(default=0)


class ScheduledRun(BaseModel):
    """A periodic job's run claimed for its period (the drift report for a day): the unique pair is
    the claim, so two schedulers, or one a minute later, run it once."""

    job = peewee.CharField(max_length=100)
    period = peewee.CharField(max_length=40)  # e.g. the UTC day, 2026-12-01
    claimed_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("job", "period"), True),)

    @classmethod
    def claim(cls, job: str, period: str) -> bool:
        """True for the one caller that claims the period first."""
        try:
            with database.atomic():  # a savepoint inside a caller's transaction
                cls.create(job=job, period=period)
        except peewee.IntegrityError:
            return False
        return True


class ConsoleUser(BaseModel):
    """An operator who signs in to the console (`bookingflow console add-user NAME`). The password is
    kept only as its salted hash (console/passwords.py)."""

    name = peewee.CharField(max_length=100, unique=True)
    password_hash = peewee.CharField(max_length=255)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)


class ConsoleSession(BaseModel):
    """A signed-in operator. The session cookie carries a random token; only its SHA-256 is stored, so
    reading this table gives no way in. Ended on sign-out, and after the idle or absolute timeout."""

    token_hash = peewee.CharField(max_length=64, unique=True)
    user = ForeignKey(ConsoleUser, backref="sessions", on_delete="CASCADE")
    created_at = UTCDateTimeField(default=utcnow)
    last_seen_at = UTCDateTimeField(default=utcnow)
    ended_at = UTCDateTimeField(null=True)


class SignInAttempt(BaseModel):
    """Every sign-in tried at the console, kept in the database so that the limits per user name and
    per client address hold across console processes. Never the password, right or wrong."""

    user_name = peewee.CharField(max_length=100)
    address = peewee.CharField(max_length=64)
    outcome = peewee.CharField(max_length=20)  # succeeded, wrong_password, refused (over a limit)
    at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("user_name", "at"), False), (("address", "at"), False))


class AuditEntry(BaseModel):
    """What an operator did in the console: who, when, what, why, and what came of it. A booking's
    entries are shown on its page; kept when the booking is not (no foreign key)."""

    operator = peewee.CharField(max_length=100)
    action = peewee.CharField(max_length=40)  # retry, force, replay, cancel, flag
    booking_id = peewee.CharField(max_length=64, null=True, index=True)
    # What the action was about besides the booking: the target state, the delivery, the flag.
    subject = peewee.CharField(max_length=255, null=True)
    reason = peewee.CharField(max_length=500)
    outcome = peewee.CharField(max_length=300)
    at = UTCDateTimeField(default=utcnow, index=True)


CONSOLE_TABLES = (ConsoleUser, ConsoleSession, SignInAttempt, AuditEntry)

ALL_TABLES = (SessionType, Booking, Transition, ProviderEvent, Payment, Refund, Outbox, Alert, FeatureFlag, Dispute,
              ScheduledRun, *CONSOLE_TABLES)
