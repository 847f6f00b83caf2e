"""The booking state machine, walked through its public functions: every (state, trigger) pair.

A booking is set up directly in the state under test (fixture data); everything after that goes
through `apply()`, `timeout_for()` and `update_fields()`.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from bookingflow import settings as settings_module
from models.states import (
    ERROR_FOR_ORIGIN,
    ERROR_STATES,
    ORIGIN,
    TRANSITIONS,
    BookingNotFound,
    State,
    Trigger,
    TransitionRefused,
    apply,
    timeout_for,
    update_fields,
)
from models.tables import Booking, Transition

S, T = State, Trigger
LONG_AGO = dt.datetime(2024, 1, 1, 9, 30, tzinfo=dt.timezone.utc)

# Where a booking sitting in an error state plausibly went wrong: fixture data for the walk.
ORIGIN_OF = {
    S.ERROR_CALENDLY: S.CALENDLY_SCHEDULING,
    S.ERROR_WEBHOOK: S.CALENDLY_SCHEDULED,
    S.ERROR_PAYMENT: S.PAYMENT_PROCESSING,
    S.ERROR_RECOVERY: S.PAYMENT_PENDING,
}
# The seed's "appropriate error state" for a failed recovery, by where the booking went wrong.
ERROR_AFTER_FAILED_RECOVERY = {
    S.CALENDLY_SCHEDULING: S.ERROR_CALENDLY,
    S.CALENDLY_SCHEDULED: S.ERROR_WEBHOOK,
    S.CALENDLY_WEBHOOK_RECEIVED: S.ERROR_WEBHOOK,
    S.PAYMENT_PENDING: S.ERROR_PAYMENT,
    S.PAYMENT_PROCESSING: S.ERROR_PAYMENT,
    S.PAYMENT_SUCCEEDED: S.ERROR_PAYMENT,
    S.PAYMENT_FAILED: S.ERROR_PAYMENT,
    S.REFUND_PENDING: S.ERROR_PAYMENT,
}
# States a booking rests in by design (the contract: a timeout for every non-terminal state).
RESTING = {S.IDLE, S.BOOKING_CONFIRMED, S.REFUND_COMPLETED}

ALLOWED = sorted(TRANSITIONS, key=lambda pair: (pair[0].value, pair[1].value))
REFUSED = [(state, trigger) for state in State for trigger in Trigger if (state, trigger) not in TRANSITIONS]


def pair_id(pair) -> str:
    return f"{pair[0].value}-{pair[1].value}"


# Guarded pairs need a booking that meets the guard: cancelling (not abandoning) a payment state is
# for a booking that already took money (a reschedule's difference still open).
PAID_BEFORE = {(state, T.cancelBooking) for state in (S.PAYMENT_PENDING, S.PAYMENT_PROCESSING, S.PAYMENT_FAILED)}
# and confirming without a checkout is for a free session (its type collects no payment).
FREE = {(S.CALENDLY_WEBHOOK_RECEIVED, T.confirmBooking), (S.CALENDLY_SCHEDULED, T.confirmBooking)}


@pytest.fixture
def make_booking(session_type):
    def make(state: State, error_origin: State | None = None, amount_paid: int = 0, free: bool = False) -> Booking:
        return Booking.create(
            session_type=session_type, state=state.value, email="ada@example.com", name="Ada Lovelace",
            amount=0 if free else session_type.price, currency=session_type.currency, amount_paid=amount_paid,
            error_origin=error_origin.value if error_origin else None,
            state_changed_at=LONG_AGO, created_at=LONG_AGO, updated_at=LONG_AGO,
        )

    return make


def reload(booking: Booking) -> Booking:
    return Booking.get(Booking.id == booking.id)


def history(booking: Booking) -> list[Transition]:
    return list(Transition.select().where(Transition.booking == booking.id).order_by(Transition.id))


def snapshot(booking: Booking) -> dict:
    row = reload(booking)
    return {name: getattr(row, name) for name in Booking._meta.fields if name != "session_type"}


def expected_target(state: State, trigger: Trigger, origin: State | None) -> State:
    target = TRANSITIONS[(state, trigger)]
    if target == ORIGIN:
        return origin
    if target == ERROR_FOR_ORIGIN:
        return ERROR_AFTER_FAILED_RECOVERY[origin]
    return target


@pytest.mark.parametrize("pair", ALLOWED, ids=pair_id)
def test_an_allowed_pair_moves_the_booking_and_writes_one_history_row(make_booking, pair):
    state, trigger = pair
    origin = ORIGIN_OF.get(state)
    booking = make_booking(state, error_origin=origin, amount_paid=5000 if pair in PAID_BEFORE else 0,
                           free=pair in FREE)
    target = expected_target(state, trigger, origin)

    applied = apply(booking.id, trigger, cause=f"cause-{trigger.value}")

    assert applied.changed is True
    assert applied.state == target
    stored = reload(booking)
    assert stored.state == target.value
    assert stored.version == booking.version + 1
    assert stored.state_changed_at > LONG_AGO
    assert stored.updated_at == stored.state_changed_at
    if target in ERROR_STATES:
        # Entering the error world remembers where it went wrong; moving inside it keeps that.
        assert stored.error_origin == (origin or state).value
    else:
        assert stored.error_origin is None
    [row] = history(booking)
    assert (row.from_state, row.state, row.trigger, row.cause) == (
        state.value, target.value, trigger.value, f"cause-{trigger.value}")
    assert row.at == stored.state_changed_at


@pytest.mark.parametrize("pair", REFUSED, ids=pair_id)
def test_a_pair_outside_the_table_is_refused_and_changes_nothing(make_booking, pair):
    state, trigger = pair
    booking = make_booking(state, error_origin=ORIGIN_OF.get(state))
    before = snapshot(booking)

    with pytest.raises(TransitionRefused) as refused:
        apply(booking.id, trigger, cause="evt_refused", checkout_url="https://checkout.example/never")

    assert (refused.value.booking_id, refused.value.state, refused.value.trigger) == (
        booking.id, state.value, trigger.value)
    assert snapshot(booking) == before
    assert history(booking) == []


def test_every_trigger_is_used_and_only_the_refund_completed_state_is_final():
    assert {trigger for _, trigger in TRANSITIONS} == set(Trigger)
    assert set(State) - {state for state, _ in TRANSITIONS} == {S.REFUND_COMPLETED}


@pytest.mark.parametrize("state", sorted(set(State) - RESTING, key=lambda s: s.value), ids=lambda s: s.value)
def test_a_booking_stuck_in_a_state_with_a_timeout_can_be_recovered_or_abandoned(state):
    assert (state, T.attemptRecovery) in TRANSITIONS or (state, T.cancelBookingProcess) in TRANSITIONS


def test_recovery_cannot_succeed_without_an_origin_and_changes_nothing(make_booking):
    booking = make_booking(S.ERROR_RECOVERY, error_origin=None)
    before = snapshot(booking)

    with pytest.raises(TransitionRefused):
        apply(booking.id, T.recoverySucceeded, cause="recovery-1")

    assert snapshot(booking) == before
    assert history(booking) == []


def test_a_failed_recovery_without_an_origin_lands_in_the_payment_error_state(make_booking):
    booking = make_booking(S.ERROR_RECOVERY, error_origin=None)

    assert apply(booking.id, T.recoveryFailed, cause="recovery-1").state == S.ERROR_PAYMENT


@pytest.mark.parametrize("origin", sorted(ERROR_AFTER_FAILED_RECOVERY, key=lambda s: s.value), ids=lambda s: s.value)
def test_recovery_returns_to_the_origin_or_to_its_error_state(make_booking, origin):
    succeeded = make_booking(S.ERROR_RECOVERY, error_origin=origin)
    failed = make_booking(S.ERROR_RECOVERY, error_origin=origin)

    assert apply(succeeded.id, T.recoverySucceeded, cause="sweep-1").state == origin
    assert reload(succeeded).error_origin is None
    assert apply(failed.id, T.recoveryFailed, cause="sweep-1").state == ERROR_AFTER_FAILED_RECOVERY[origin]
    assert reload(failed).error_origin == origin.value


def test_an_error_remembers_its_origin_through_recovery_and_back(make_booking):
    booking = make_booking(S.PAYMENT_PROCESSING)

    apply(booking.id, T.onPaymentError, cause="job-1")
    assert (reload(booking).state, reload(booking).error_origin) == (S.ERROR_PAYMENT.value, "PAYMENT_PROCESSING")
    apply(booking.id, T.attemptRecovery, cause="sweep-1")
    assert (reload(booking).state, reload(booking).error_origin) == (S.ERROR_RECOVERY.value, "PAYMENT_PROCESSING")
    applied = apply(booking.id, T.recoverySucceeded, cause="sweep-2")

    assert applied.state == S.PAYMENT_PROCESSING
    assert reload(booking).error_origin is None
    assert [(row.from_state, row.state) for row in history(booking)] == [
        ("PAYMENT_PROCESSING", "ERROR_PAYMENT"),
        ("ERROR_PAYMENT", "ERROR_RECOVERY"),
        ("ERROR_RECOVERY", "PAYMENT_PROCESSING"),
    ]
    assert reload(booking).version == booking.version + 3


def test_a_replayed_cause_is_a_no_op(make_booking):
    booking = make_booking(S.PAYMENT_PROCESSING)
    first = apply(booking.id, T.onPaymentSucceeded, cause="evt_paid_1")
    after_first = snapshot(booking)

    replay = apply(booking.id, T.onPaymentSucceeded, cause="evt_paid_1")

    assert (first.changed, replay.changed) == (True, False)
    assert replay.state == S.PAYMENT_SUCCEEDED
    assert snapshot(booking) == after_first
    assert len(history(booking)) == 1


def test_a_replay_after_the_booking_moved_on_is_still_a_no_op(make_booking):
    booking = make_booking(S.PAYMENT_PROCESSING)
    apply(booking.id, T.onPaymentSucceeded, cause="evt_paid_1")
    apply(booking.id, T.confirmBooking, cause="job-confirm")
    before = snapshot(booking)

    replay = apply(booking.id, T.onPaymentSucceeded, cause="evt_paid_1")

    assert replay.changed is False
    assert replay.state == S.BOOKING_CONFIRMED
    assert snapshot(booking) == before
    assert len(history(booking)) == 2


def test_without_a_cause_a_second_application_is_judged_by_the_table(make_booking):
    booking = make_booking(S.PAYMENT_PROCESSING)
    apply(booking.id, T.onPaymentSucceeded)

    with pytest.raises(TransitionRefused):
        apply(booking.id, T.onPaymentSucceeded)
    assert len(history(booking)) == 1


def test_changes_passed_to_apply_are_written_with_the_state(make_booking):
    booking = make_booking(S.PAYMENT_PENDING)

    apply(booking.id, T.onStripeSessionCreated, cause="job-1", checkout_session_id="cs_test_1",
          checkout_url="https://checkout.example/cs_test_1")

    stored = reload(booking)
    assert (stored.state, stored.checkout_session_id, stored.checkout_url) == (
        "PAYMENT_PROCESSING", "cs_test_1", "https://checkout.example/cs_test_1")


def test_an_unknown_booking_is_reported_as_not_found(app):
    with pytest.raises(BookingNotFound):
        apply("no-such-booking", T.cancelBookingProcess, cause="request-1")


def run_in_threads(count: int, work) -> tuple[list, list]:
    """Run work(index) in `count` threads released together, each on its own connection."""
    from models.db import database

    barrier = threading.Barrier(count)
    results, errors = [], []
    lock = threading.Lock()

    def run(index: int) -> None:
        try:
            with database.connection_context():
                barrier.wait(timeout=10)
                outcome = work(index)
        except BaseException as exc:  # noqa: BLE001  (collected and asserted below)
            outcome = exc
        with lock:
            (errors if isinstance(outcome, BaseException) else results).append(outcome)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    return results, errors


RACES = [
    (S.PAYMENT_PROCESSING, T.onPaymentSucceeded),
    (S.CALENDLY_SCHEDULING, T.onCalendlyWebhookReceived),
    (S.BOOKING_CONFIRMED, T.cancelBooking),
]


@pytest.mark.parametrize("pair", RACES, ids=pair_id)
def test_eight_threads_applying_the_same_cause_change_the_booking_once(make_booking, pair):
    state, trigger = pair
    booking = make_booking(state)

    results, errors = run_in_threads(8, lambda index: apply(booking.id, trigger, cause="evt_same"))

    assert errors == []
    assert sorted(result.changed for result in results) == [False] * 7 + [True]
    stored = reload(booking)
    assert stored.state == TRANSITIONS[pair].value
    assert stored.version == booking.version + 1
    assert len(history(booking)) == 1


@pytest.mark.parametrize("pair", RACES, ids=pair_id)
def test_eight_threads_with_different_causes_let_exactly_one_win(make_booking, pair):
    state, trigger = pair
    booking = make_booking(state)

    results, errors = run_in_threads(8, lambda index: apply(booking.id, trigger, cause=f"evt_{index}"))

    assert [type(error) for error in errors] == [TransitionRefused] * len(errors)
    assert [result.changed for result in results].count(True) == 1
    assert len(results) + len(errors) == 8
    stored = reload(booking)
    assert stored.state == TRANSITIONS[pair].value
    assert stored.version == booking.version + 1
    [row] = history(booking)
    assert row.cause in {f"evt_{index}" for index in range(8)}


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
def test_every_state_but_the_resting_ones_has_a_timeout(state):
    timeout = timeout_for(state)
    if state in RESTING:
        assert timeout is None
    else:
        assert isinstance(timeout, dt.timedelta) and timeout > dt.timedelta(0)


def test_a_payment_in_progress_outlives_the_longest_checkout_session():
    assert timeout_for(S.PAYMENT_PROCESSING) > dt.timedelta(minutes=1440)


def test_state_timeout_overrides_from_settings_win_and_leave_the_others_alone():
    overrides = settings_module.load({"STATE_TIMEOUTS": "payment_pending=90,ERROR_RECOVERY=7200"}).state_timeouts

    assert timeout_for(S.PAYMENT_PENDING, overrides) == dt.timedelta(seconds=90)
    assert timeout_for(S.ERROR_RECOVERY, overrides) == dt.timedelta(hours=2)
    assert timeout_for(S.PAYMENT_PROCESSING, overrides) == timeout_for(S.PAYMENT_PROCESSING)
    assert timeout_for(S.BOOKING_CONFIRMED, overrides) is None


def test_update_fields_refuses_to_write_the_state(make_booking):
    booking = make_booking(S.PAYMENT_PENDING)
    before = snapshot(booking)

    with pytest.raises(ValueError):
        update_fields(booking.id, state=S.BOOKING_CONFIRMED.value)

    assert snapshot(booking) == before


def test_update_fields_bumps_the_version_without_touching_state_or_history(make_booking):
    booking = make_booking(S.PAYMENT_PROCESSING)

    assert update_fields(booking.id, checkout_url="https://checkout.example/cs_2") == 1

    stored = reload(booking)
    assert (stored.state, stored.version, stored.checkout_url) == (
        "PAYMENT_PROCESSING", booking.version + 1, "https://checkout.example/cs_2")
    assert stored.updated_at > LONG_AGO
    assert stored.state_changed_at == LONG_AGO
    assert history(booking) == []


def test_a_transition_decided_on_a_copy_read_before_another_write_reads_again_and_decides_afresh(make_booking):
    booking = make_booking(S.PAYMENT_PENDING)
    copy = reload(booking)  # what a job read before another worker moved the booking on
    apply(booking.id, T.onStripeSessionCreated, cause="job-1", checkout_session_id="cs_test_1")
    with pytest.raises(TransitionRefused):
        apply(booking.id, T.onStripeSessionCreated, cause="job-2", read=copy, checkout_session_id="cs_test_2")
    assert reload(booking).checkout_session_id == "cs_test_1"
    assert [row.cause for row in history(booking)] == ["job-1"]

    # A write of other fields since the copy was read: the transition is decided again on the row as
    # it is now, and keeps that write.
    copy = reload(booking)
    update_fields(booking.id, checkout_url="https://checkout.example/cs_test_1")
    applied = apply(booking.id, T.onPaymentSucceeded, cause="paid-1", read=copy)
    assert (applied.booking.state, applied.booking.checkout_url, applied.booking.version) == (
        "PAYMENT_SUCCEEDED", "https://checkout.example/cs_test_1", copy.version + 2)


def test_writes_of_the_same_columns_each_carry_their_own_values(make_booking):
    # The statement for a set of columns is rendered once and reused: the second write must still send
    # its own values, through each field's conversion (encrypted text, UTC datetimes, nulls).
    first, second = make_booking(S.PAYMENT_PENDING), make_booking(S.PAYMENT_PENDING)
    when = dt.datetime(2030, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    for booking, name, url in ((first, "Ada", "https://checkout.example/1"), (second, "Grace", None)):
        assert update_fields(booking.id, invitee_name=name, next_check_at=when, checkout_url=url) == 1
    assert [(b.invitee_name, b.next_check_at, b.checkout_url, b.version) for b in map(reload, (first, second))] == [
        ("Ada", when, "https://checkout.example/1", first.version + 1), ("Grace", when, None, second.version + 1)]

    moved = [apply(booking.id, T.onStripeSessionCreated, cause=f"job-{index}", checkout_session_id=f"cs_test_{index}")
             for index, booking in enumerate((first, second))]
    assert [(m.booking.state, m.booking.checkout_session_id, m.booking.version) for m in moved] == [
        ("PAYMENT_PROCESSING", "cs_test_0", first.version + 2), ("PAYMENT_PROCESSING", "cs_test_1", second.version + 2)]
    assert [(b.checkout_session_id, b.invitee_name) for b in map(reload, (first, second))] == [
        ("cs_test_0", "Ada"), ("cs_test_1", "Grace")]


def test_an_address_written_later_is_encrypted_with_its_lookup_hash(make_booking):
    from cryptography.fernet import Fernet

    from bookingflow import crypto

    booking = make_booking(S.PAYMENT_PENDING)
    original = settings_module.get()
    settings_module.configure(original.replace(data_encryption_keys=(Fernet.generate_key().decode(),)))
    try:
        for address in ("grace@example.com", "ada@example.com"):  # the second write reuses the first's statement
            update_fields(booking.id, email=address)
            stored = reload(booking)
            assert (stored.email, stored.email_hash) == (address, crypto.email_hash(address))
            assert crypto.email_hash(address) is not None
    finally:
        settings_module.configure(original)


@pytest.mark.parametrize("origin", [S.REFUND_PENDING, S.BOOKING_CANCELLED, S.PAYMENT_SUCCEEDED], ids=lambda s: s.value)
def test_an_error_after_money_was_taken_can_neither_charge_again_nor_be_abandoned(make_booking, origin):
    booking = make_booking(S.ERROR_PAYMENT, error_origin=origin)
    for trigger in (T.retryPayment, T.cancelBookingProcess):
        before = snapshot(booking)
        with pytest.raises(TransitionRefused):
            apply(booking.id, trigger, cause="guarded")
        assert snapshot(reload(booking)) == before and history(booking) == []
    # The way out is recovery, back to where the refund was.
    apply(booking.id, T.attemptRecovery, cause="sweep")
    assert apply(booking.id, T.recoverySucceeded, cause="sweep").state == origin


def test_an_error_before_payment_may_still_be_retried_or_abandoned(make_booking):
    retried = make_booking(S.ERROR_PAYMENT, error_origin=S.PAYMENT_PROCESSING)
    assert apply(retried.id, T.retryPayment, cause="client").state == S.PAYMENT_PENDING
    abandoned = make_booking(S.ERROR_PAYMENT, error_origin=S.PAYMENT_PENDING)
    assert apply(abandoned.id, T.cancelBookingProcess, cause="client").state == S.IDLE


@pytest.mark.parametrize("state", [S.PAYMENT_PENDING, S.PAYMENT_PROCESSING, S.PAYMENT_FAILED], ids=lambda s: s.value)
def test_a_booking_that_took_money_is_cancelled_by_policy_never_abandoned(make_booking, state):
    paid = make_booking(state, amount_paid=5000)
    with pytest.raises(TransitionRefused):
        apply(paid.id, T.cancelBookingProcess, cause="client")
    assert apply(paid.id, T.cancelBooking, cause="client").state == S.BOOKING_CANCELLED
    unpaid = make_booking(state)
    with pytest.raises(TransitionRefused):
        apply(unpaid.id, T.cancelBooking, cause="client")
    assert apply(unpaid.id, T.cancelBookingProcess, cause="client").state == S.IDLE
