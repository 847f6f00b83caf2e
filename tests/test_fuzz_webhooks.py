"""Hostile deliveries to both webhook endpoints: whatever arrives, the answer is never a 5xx, a refusal
changes nothing, and no answer carries a traceback, a secret, SQL or an internal exception's name.

The in-process app takes many examples (FUZZ_EXAMPLES, per property); the real processes (gunicorn,
whose own parsing of hostile headers and bodies matters too) take a few of the same.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import requests
from hypothesis import assume, example, given
from hypothesis import strategies as st

from support.suite import CALENDLY_KEY, STRIPE_WEBHOOK_SECRET
from support.waiting import wait_until
from intake import MAX_BODY_BYTES
from intake.signatures import CALENDLY_TOLERANCE_SECONDS, STRIPE_TOLERANCE_SECONDS
from support.fuzzing import (
    E2E_EXAMPLES, EARLY_DAILY_RUN, EXAMPLES, assert_safe_answer, content_types, deeply_nested, fuzz_settings,
    header_text, hostile_bodies, raw_header_values, send_and_check, send_over_http, sized, stack_snapshot, wait_quiet,
)
from support.providers import calendly_invitee_delivery, checkout_session, encode, stripe_event

pytestmark = pytest.mark.fuzz


# --- signatures ------------------------------------------------------------------------------------

def sign(key: str, timestamp, body: bytes) -> str:
    return hmac.new(key.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


PROVIDERS = {
    "stripe": ("/webhooks/stripe", "Stripe-Signature", STRIPE_WEBHOOK_SECRET, STRIPE_TOLERANCE_SECONDS),
    "calendly": ("/webhooks/calendly", "Calendly-Webhook-Signature", CALENDLY_KEY, CALENDLY_TOLERANCE_SECONDS),
}


def a_valid_event(provider: str, tag: str) -> bytes:
    """A well-formed delivery of `provider`, unique by `tag`, about no booking of ours."""
    if provider == "stripe":
        session = checkout_session("f" * 32, 100)
        return encode(stripe_event("checkout.session.completed", session, event_id=f"evt_fuzz_{tag}"))
    event = f"https://api.calendly.com/scheduled_events/FUZZ{tag}"
    return encode(calendly_invitee_delivery("invitee.created", event_uri=event, invitee_uri=f"{event}/invitees/I{tag}",
                                            utm_content=None))


# --- strategies ------------------------------------------------------------------------------------


# Signature headers that are never genuine: junk, or well-formed parts around timestamps and
# signatures that cannot match (a digest that is not ours, an unreadable time).
signature_parts = st.lists(st.one_of(
    st.one_of(st.integers(min_value=-10**12, max_value=10**12).map(str),
              st.sampled_from(["", "abc", "\u00b2\u00b3", "\u0663\u0663", "-1", " 12", "1_000", "9" * 400, "9" * 5000,
                               "1e9", "0x10"])).map(lambda t: f"t={t}"),
    st.one_of(st.text("0123456789abcdef", min_size=64, max_size=64), header_text).map(lambda s: f"v1={s}"),
    st.sampled_from(["v0=abc", "=", "", "t", "v1", "x=y=z", " v1 = 00"]),
), max_size=6).map(",".join)
bad_signatures = st.one_of(st.none(), header_text, signature_parts)


def send_delivery(client, broker, provider: str, body: bytes, content_type: str, signature: str | None):
    path, header, key, _ = PROVIDERS[provider]
    headers = {"Content-Type": content_type}
    if signature == "VALID":  # signed now: an example written down earlier cannot go stale
        now = int(time.time())
        signature = f"t={now},v1={sign(key, now, body)}"
    if signature is not None:
        headers[header] = signature
    return send_and_check(client, broker, path, body, headers)


# --- the in-process app: many examples -------------------------------------------------------------

@pytest.mark.parametrize("provider", PROVIDERS)
@fuzz_settings()
@given(body=hostile_bodies, content_type=content_types)
# Python's json gives up on deep nesting with RecursionError: that was a 500.
@example(body=deeply_nested(20_000, "array"), content_type="application/json")
@example(body=deeply_nested(20_000, "object"), content_type="application/json")
# json.loads takes UTF-16 as well, but the payload is stored as UTF-8 text: that was a 500.
@example(body=json.dumps({"event": "invitee.created", "payload": {"uri": "x"}}).encode("utf-16"),
         content_type="application/json")
@example(body=b'\xef\xbb\xbf{"id": "evt_bom", "type": "x", "event": "y"}', content_type="application/json")
def test_a_signed_hostile_body_is_never_a_5xx_and_a_refusal_changes_nothing(client, broker, provider, body,
                                                                             content_type):
    response = send_delivery(client, broker, provider, body, content_type, "VALID")
    if len(body) > MAX_BODY_BYTES:
        assert response.status_code == 413


@pytest.mark.parametrize("provider", PROVIDERS)
@fuzz_settings()
@given(body=hostile_bodies, content_type=content_types, signature=bad_signatures)
# A digit int() cannot read, a time too long to read or to subtract from a float, a signature that is
# not ASCII (hmac.compare_digest raises on it): each was a 500.
@example(body=b"{}", content_type="application/json", signature="t=\u00b2,v1=00")
@example(body=b"{}", content_type="application/json", signature="t=" + "9" * 400 + ",v1=00")
@example(body=b"{}", content_type="application/json", signature="t=" + "9" * 5000 + ",v1=00")
@example(body=b"{}", content_type="application/json", signature="t=1,v1=\u00e9")
def test_a_delivery_without_a_genuine_signature_is_refused_cleanly(client, broker, provider, body, content_type,
                                                                   signature):
    response = send_delivery(client, broker, provider, body, content_type, signature)
    assert response.status_code in (400, 413)


OFFSETS = st.one_of(
    st.integers(min_value=-250, max_value=250),  # inside every tolerance, with room for a slow machine
    st.integers(min_value=-10**8, max_value=-310),  # too old for both
    st.integers(min_value=310, max_value=10**8),  # from the future
)


@pytest.mark.parametrize("provider", PROVIDERS)
@fuzz_settings()
@given(offset=OFFSETS, candidates=st.lists(st.sampled_from(["valid", "other body", "other key", "random", "empty"]),
                                           max_size=4),
       tag=st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=16))
@example(offset=0, candidates=["random", "valid", "other key"], tag="rotation1")  # one valid among several: accepted
@example(offset=0, candidates=["random", "other body", "other key"], tag="allinvalid")
@example(offset=0, candidates=["other body"], tag="otherbody1")  # a valid signature of another body
@example(offset=-301, candidates=["valid"], tag="tooold0001")
@example(offset=3600, candidates=["valid"], tag="future0001")  # Stripe's library alone would take this one
@example(offset=0, candidates=[], tag="nosignature")
def test_a_delivery_is_accepted_only_with_a_recent_signature_of_its_own_body(client, broker, provider, offset,
                                                                            candidates, tag):
    path, header, key, tolerance = PROVIDERS[provider]
    body = a_valid_event(provider, tag)
    timestamp = int(time.time()) + offset
    signature_of = {
        "valid": sign(key, timestamp, body), "other body": sign(key, timestamp, a_valid_event(provider, tag + "x")),
        "other key": sign("whsec_not_ours", timestamp, body), "random": hashlib.sha256(tag.encode()).hexdigest(),
        "empty": "",
    }
    signature = ",".join([f"t={timestamp}"] + [f"v1={signature_of[c]}" for c in candidates])
    response = send_and_check(client, broker, path, body, {"Content-Type": "application/json", header: signature})
    genuine = "valid" in candidates and abs(offset) <= tolerance
    assert response.status_code == (200 if genuine else 400), response.get_data(as_text=True)


@pytest.mark.parametrize("provider", PROVIDERS)
@fuzz_settings()
@given(size=st.integers(min_value=MAX_BODY_BYTES - 4096, max_value=MAX_BODY_BYTES + 4096), tag=st.uuids())
@example(size=MAX_BODY_BYTES, tag=None)
@example(size=MAX_BODY_BYTES + 1, tag=None)
def test_a_signed_delivery_is_taken_up_to_256_kib_and_refused_above(client, broker, provider, size, tag):
    import uuid

    path, header, key, _ = PROVIDERS[provider]
    event = json.loads(a_valid_event(provider, (tag or uuid.uuid4()).hex))
    event["padding"] = ""
    padding = size - len(encode(event))
    assume(padding >= 0)
    event["padding"] = "x" * padding
    body = encode(event)
    now = int(time.time())
    response = send_and_check(client, broker, path, body, {"Content-Type": "application/json",
                                                          header: f"t={now},v1={sign(key, now, body)}"})
    assert response.status_code == (200 if size <= MAX_BODY_BYTES else 413)


@pytest.fixture
def paid_delivery(frontend, sandbox):
    """(booking id, body, event id) of the checkout.session.completed that confirmed a booking."""
    from support.flows import confirmed_booking

    view = confirmed_booking(frontend, "short-call")
    (delivery,) = [d for d in sandbox.deliveries("stripe") if d["type"] == "checkout.session.completed"
                   and d["payload"]["data"]["object"]["client_reference_id"] == view["id"]]
    return view["id"], encode(delivery["payload"]), delivery["payload"]["id"]


@fuzz_settings(max(5, EXAMPLES // 3))
@given(variant=st.sampled_from(["fresh", "rotated", "stale", "future", "other body"]))
@example(variant="fresh")
@example(variant="stale")
def test_a_replayed_delivery_is_a_duplicate_that_moves_nothing(paid_delivery, broker, worker, live_server, variant):
    """A correctly signed replay of an event that already confirmed a booking: 2xx as a duplicate,
    stored once, never a second transition."""
    from models.tables import Booking, ProviderEvent, Transition

    booking_id, body, event_id = paid_delivery
    broker.join("default", timeout=60_000)
    worker.join()
    history = Transition.select().where(Transition.booking == booking_id).count()
    version = Booking.get_by_id(booking_id).version
    now = int(time.time())
    timestamp = {"stale": now - 3600, "future": now + 3600}.get(variant, now)
    signatures = {
        "rotated": [sign("whsec_retired", timestamp, body), sign(STRIPE_WEBHOOK_SECRET, timestamp, body)],
        "other body": [sign(STRIPE_WEBHOOK_SECRET, timestamp, body + b"\n")],
    }.get(variant, [sign(STRIPE_WEBHOOK_SECRET, timestamp, body)])
    header = ",".join([f"t={timestamp}"] + [f"v1={s}" for s in signatures])
    response = requests.post(f"{live_server}/webhooks/stripe", data=body, timeout=30,
                             headers={"Content-Type": "application/json", "Stripe-Signature": header})
    assert_safe_answer(response.status_code, response.text, response.headers.get("Content-Type", ""))
    if variant in ("fresh", "rotated"):
        assert response.status_code == 200 and response.json()["duplicate"] is True
    else:
        assert response.status_code == 400
    broker.join("default", timeout=60_000)
    worker.join()
    assert ProviderEvent.select().where(ProviderEvent.event_id == event_id).count() == 1
    assert Transition.select().where(Transition.booking == booking_id).count() == history
    assert Booking.get_by_id(booking_id).version == version


# --- the real processes: fewer examples, over HTTP ---------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from support.realstack import running_service

    with running_service(tmp_path_factory.mktemp("fuzz-webhooks"), extra_env=EARLY_DAILY_RUN) as running:
        wait_quiet(running)
        yield running


@pytest.mark.e2e
@pytest.mark.parametrize("provider", PROVIDERS)
@fuzz_settings(E2E_EXAMPLES)
@given(data=st.data())
def test_hostile_deliveries_to_the_real_processes_are_refused_cleanly(stack, provider, data):
    path, header, _, _ = PROVIDERS[provider]
    key = stack.env["STRIPE_WEBHOOK_SECRET" if provider == "stripe" else "CALENDLY_WEBHOOK_SIGNING_KEY"].split(",")[-1]
    body = data.draw(hostile_bodies, label="body")
    an_hour_ago = int(time.time()) - 3600
    replayed = f"t={an_hour_ago},v1={sign(key, an_hour_ago, body)}"
    signature = data.draw(st.one_of(bad_signatures.map(lambda h: h and h.encode()), raw_header_values,
                                    st.just(replayed)), label="signature")
    headers = {"Content-Type": data.draw(st.one_of(content_types.map(lambda t: t.encode()), raw_header_values))}
    if signature is not None:
        headers[header] = signature
    response = send_over_http(stack, path, body, headers)
    assume(response is not None)
    assert response.status_code in (400, 413)  # nothing here is a genuine delivery


@pytest.mark.e2e
@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_real_processes_refuse_deep_huge_and_chunked_bodies(stack, provider):
    path, header, _, _ = PROVIDERS[provider]
    key = stack.env["STRIPE_WEBHOOK_SECRET" if provider == "stripe" else "CALENDLY_WEBHOOK_SIGNING_KEY"].split(",")[-1]
    now = int(time.time())
    for body, expected in ((deeply_nested(20_000, "array"), 400), (deeply_nested(20_000, "object"), 400),
                           (sized(MAX_BODY_BYTES + 1), 413), (b"\xff\xfe{}", 400)):
        response = send_over_http(stack, path, body, {"Content-Type": "application/json",
                                                     header: f"t={now},v1={sign(key, now, body)}"})
        assert response.status_code == expected
    chunks = (b"x" * 65536 for _ in range(8))  # no Content-Length: only the stream's length tells
    before = stack_snapshot(stack)
    response = requests.post(stack.base + path, data=chunks, timeout=60, headers={header: f"t={now},v1=00"})
    assert response.status_code in (400, 413)
    assert stack_snapshot(stack) == before


@pytest.mark.e2e
def test_a_genuine_delivery_still_goes_through_the_real_processes(stack):
    """The refusals above are not a closed door: a rotated secret's delivery is taken, once."""
    body = a_valid_event("stripe", "e2egenuine")
    now = int(time.time())
    header = f"t={now},v1={sign('whsec_old_rotated', now, body)}"
    for duplicate in (False, True):
        response = requests.post(f"{stack.base}/webhooks/stripe", data=body, timeout=60,
                                 headers={"Content-Type": "application/json", "Stripe-Signature": header})
        assert response.status_code == 200 and response.json()["duplicate"] is duplicate
    wait_until(lambda: stack_snapshot(stack)["tables"]["ProviderEvent"], timeout=30, message="the event stored")
