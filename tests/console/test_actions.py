"""The console's actions over HTTP, carried out by the suite's workers: retry, force (with its
confirmation), replay, cancel by the policy or in full, a flag switched; each audited with who and why."""

from __future__ import annotations

from bookingflow import deliveries as d
from models.db import utcnow
from models.states import State
from models.tables import AuditEntry, Booking, FeatureFlag, ProviderEvent, Transition
from support.flows import assert_money, confirmed_booking, hours_from_now
from support.records import booking_in, fresh, stored
from support.waiting import wait_until


def state_of(booking_id: str) -> str:
    return Booking.get_by_id(booking_id).state


def audit_of(booking_id: str) -> list[tuple[str, str, str]]:
    return [(a.operator, a.action, a.reason) for a in AuditEntry.select().where(AuditEntry.booking_id == booking_id)]


def test_retrying_a_flagged_booking_clears_the_flag_and_its_step_runs_again(operator, worker, session_type):
    # Automation gave up on it; its payment hold ran out long ago, which its step acts on once it runs.
    stuck = booking_in(session_type, State.PAYMENT_FAILED, flagged_at=utcnow(), flag_reason="gave up")
    response = operator.post(f"/bookings/{stuck.id}/retry", {"reason": "the provider outage is over"},
                             page=f"/bookings/{stuck.id}")
    assert response.status_code == 302
    wait_until(lambda: state_of(stuck.id) == State.IDLE.value, message="the retried step to abandon the booking")
    assert fresh(stuck).flagged_at is None
    assert audit_of(stuck.id) == [("ada", "retry", "the provider outage is over")]
    html = operator.page(f"/bookings/{stuck.id}")
    assert "the provider outage is over" in html and "queued the step of PAYMENT_FAILED" in html


def test_forcing_asks_first_and_warns_of_money_the_booking_never_received(operator, session_type):
    unpaid = booking_in(session_type, State.ERROR_PAYMENT, amount_paid=0)
    page = operator.post(f"/bookings/{unpaid.id}/force", {"state": "BOOKING_CONFIRMED", "reason": "client says paid"},
                         page=f"/bookings/{unpaid.id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="force-warnings"' in html
    assert "has received $0.00" in html and "never paid for" in html
    assert state_of(unpaid.id) == State.ERROR_PAYMENT.value and not audit_of(unpaid.id)  # nothing yet

    operator.post(f"/bookings/{unpaid.id}/force", {"state": "BOOKING_CONFIRMED", "reason": "client says paid",
                                                   "confirmed": "yes"}, page=f"/bookings/{unpaid.id}")
    assert state_of(unpaid.id) == State.BOOKING_CONFIRMED.value
    last = Transition.select().where(Transition.booking == unpaid.id).order_by(Transition.id.desc()).first()
    assert (last.trigger, last.cause) == ("operatorOverride", "console ada: client says paid")
    assert audit_of(unpaid.id) == [("ada", "force", "client says paid")]


def test_forcing_a_paid_booking_to_confirmed_carries_no_warning(operator, session_type):
    paid = booking_in(session_type, State.PAYMENT_SUCCEEDED, amount_paid=session_type.price)
    html = operator.post(f"/bookings/{paid.id}/force", {"state": "BOOKING_CONFIRMED", "reason": "stuck"},
                         page=f"/bookings/{paid.id}").get_data(as_text=True)
    assert 'id="force-confirm"' in html and 'id="force-warnings"' not in html


def test_an_action_without_a_reason_is_refused_and_changes_nothing(operator, session_type):
    flagged = booking_in(session_type, State.ERROR_PAYMENT, flagged_at=utcnow(), flag_reason="gave up")
    for path, data in ((f"/bookings/{flagged.id}/retry", {"reason": "  "}),
                       (f"/bookings/{flagged.id}/force", {"state": "IDLE", "reason": "", "confirmed": "yes"}),
                       (f"/bookings/{flagged.id}/cancel", {"refund": "full"})):
        response = operator.post(path, data, page=f"/bookings/{flagged.id}")
        assert response.status_code == 302
        assert "Say why" in operator.page(f"/bookings/{flagged.id}")
    booking = fresh(flagged)
    assert (booking.state, booking.flagged_at is not None) == (State.ERROR_PAYMENT.value, True)
    assert not audit_of(flagged.id)
    assert not ProviderEvent.select().where(ProviderEvent.provider == d.OPERATOR).exists()


def test_replaying_a_failed_delivery_processes_it_again(operator, worker, session_type):
    waiting = booking_in(session_type, State.CALENDLY_SCHEDULING)
    event = stored(d.CLIENT, d.CANCEL, {"reason": "changed my mind"}, subject=waiting.id)
    ProviderEvent.update(processed_at=utcnow(), outcome="stale").where(ProviderEvent.id == event.id).execute()
    assert f"/deliveries/{event.id}/replay" in operator.page("/deliveries?view=failed")
    operator.post(f"/deliveries/{event.id}/replay", {"reason": "was refused during the outage"}, page="/deliveries")
    wait_until(lambda: state_of(waiting.id) == State.IDLE.value, message="the replayed cancellation")
    assert audit_of(waiting.id) == [("ada", "replay", "was refused during the outage")]


def test_cancelling_in_full_refunds_everything_the_policy_would_not(operator, frontend, sandbox):
    # Two hours before the start: short-call's policy refunds nothing.
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(2))
    operator.post(f"/bookings/{view['id']}/cancel", {"refund": "full", "reason": "the coach was ill"},
                  page=f"/bookings/{view['id']}")
    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    assert_money(sandbox, done, kept=0)
    assert fresh(Booking.get_by_id(view["id"])).cancelled_by == "operator_in_full"
    assert audit_of(view["id"]) == [("ada", "cancel", "the coach was ill")]


def test_cancelling_by_the_policy_refunds_what_the_client_would_get(operator, frontend, sandbox):
    view = confirmed_booking(frontend, "short-call", start_time=hours_from_now(30))  # 24 to 48 hours: half back
    operator.post(f"/bookings/{view['id']}/cancel", {"refund": "policy", "reason": "asked by phone"},
                  page=f"/bookings/{view['id']}")
    done = frontend.wait_for_state(view["id"], "REFUND_COMPLETED")
    assert_money(sandbox, done, kept=2500)


def test_switching_a_flag_is_audited(operator):
    operator.post("/flags/bookings_open", {"value": "off", "reason": "maintenance"}, page="/flags")
    assert FeatureFlag.get(FeatureFlag.name == "bookings_open").enabled is False
    entry = AuditEntry.get(AuditEntry.action == "flag")
    assert (entry.operator, entry.reason, entry.outcome) == ("ada", "maintenance", "bookings_open off")
    assert "maintenance" in operator.page("/flags")
