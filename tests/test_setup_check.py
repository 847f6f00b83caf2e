"""`bookingflow check` and `bookingflow calendly subscribe`, run as real processes against the sandbox.

Each test starts from a sound set-up (a Stripe endpoint to us with every event in our API version, a
Calendly subscription made by `calendly subscribe`, an offered session type whose event type is
active) and breaks one piece: the check must name that piece and fail, and only that piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bookingflow.providers.stripe_client import API_VERSION
from ops.check import STRIPE_EVENTS, STRIPE_WEBHOOK_PATH
from support import suite
from support.catalogue import make_session_type
from support.cli import cli_on
from support.realstack import base_environment, run_cli

PUBLIC_URL = suite.SUITE_SETTINGS.public_url
STRIPE_URL = PUBLIC_URL + STRIPE_WEBHOOK_PATH
CALENDLY_URL = PUBLIC_URL + "/webhooks/calendly"
EVENT_TYPE = "setup-check-coaching"


def environment(**changes: str) -> dict[str, str]:
    env = {**base_environment(), **suite.service_environment(
        suite.SANDBOX_BASE, suite.SUITE_SETTINGS.database_url, suite.SUITE_BROKER_URL)}
    return {**env, **changes}


def check(*args: str, **env_changes: str):
    return run_cli(environment(**env_changes), "check", *args, check=False)


def subscribe(**env_changes: str):
    return run_cli(environment(**env_changes), "calendly", "subscribe")


def rows(output: str) -> dict[str, str]:
    """check name -> status, from the printed table."""
    found = {}
    for line in output.splitlines():
        for status in (" OK ", " FAIL ", " WARN "):
            name, sep, _ = line.partition(status)
            if sep and name.strip() and not line.startswith(" "):
                found[name.strip()] = status.strip()
                break
    return found


def failures(result) -> dict[str, str]:
    return {name: status for name, status in rows(result.stdout).items() if status == "FAIL"}


@dataclass
class SetUp:
    endpoint: dict
    sandbox: object

    def subscription(self) -> dict:
        [only] = self.sandbox.calendly.webhook_subscriptions()
        return only


@pytest.fixture
def sound(app, sandbox):
    """A set-up that passes every check."""
    sandbox.stripe.clear_webhook_endpoints()
    sandbox.calendly.clear_webhook_subscriptions()
    endpoint = sandbox.stripe.register_webhook_endpoint(STRIPE_URL, list(STRIPE_EVENTS), API_VERSION)
    sandbox.calendly.add_event_type(EVENT_TYPE, "Coaching", 60)
    make_session_type(sandbox.base, EVENT_TYPE)
    subscribe()
    yield SetUp(endpoint, sandbox)
    sandbox.stripe.clear_webhook_endpoints()
    sandbox.calendly.clear_webhook_subscriptions()
    sandbox.calendly.remove_event_type(EVENT_TYPE)
    sandbox.calendly.revoke_grants()


def test_a_sound_set_up_passes_every_check_and_prints_no_secret(sound):
    result = check()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    assert failures(result) == {}
    assert rows(result.stdout)["calendly webhook subscription"] == "OK"
    assert rows(result.stdout)[f"event type of {EVENT_TYPE}"] == "OK"
    for secret in (suite.STRIPE_KEY, suite.STRIPE_WEBHOOK_SECRET, suite.CALENDLY_TOKEN, suite.CALENDLY_KEY):
        assert secret not in result.stdout + result.stderr


def test_a_test_key_where_live_mode_is_asked_for_fails(sound):
    result = check("--stripe-mode", "live")

    assert result.returncode == 1
    assert failures(result) == {"stripe key mode": "FAIL"}
    assert "live-mode key" in result.stdout


def test_the_webhooks_are_looked_for_at_service_url_when_the_service_has_a_host_of_its_own(sound, sandbox):
    """The frontend on one host (PUBLIC_URL), bookingflow on another (SERVICE_URL): the endpoint and
    the subscription are expected at SERVICE_URL, and `calendly subscribe` makes it there."""
    service = "https://api.frontend.example"
    sandbox.stripe.register_webhook_endpoint(service + STRIPE_WEBHOOK_PATH, list(STRIPE_EVENTS), API_VERSION)
    sandbox.calendly.clear_webhook_subscriptions()
    subscribe(SERVICE_URL=service)

    assert sound.subscription()["callback_url"] == service + "/webhooks/calendly"
    assert check(SERVICE_URL=service).returncode == 0
    # Under PUBLIC_URL alone, the subscription just made is not one to this service.
    assert failures(check()) == {"calendly webhook subscription": "FAIL"}


BASE_SCOPES = {"users:read", "organizations:read", "event_types:read", "webhooks:write"}


@pytest.mark.parametrize("scopes, failing, named", [
    (BASE_SCOPES | {"scheduled_events:read"}, {"calendly event cancellation"}, "scheduled_events:write"),
    (BASE_SCOPES, {"calendly scheduled events", "calendly event cancellation"}, "scheduled_events:read"),
])
def test_a_calendly_token_without_a_scope_bookingflow_needs_fails_naming_the_scope(sound, sandbox, scopes, failing, named):
    sandbox.calendly.grant(suite.CALENDLY_TOKEN, scopes=scopes)

    result = check()

    assert result.returncode == 1
    assert set(failures(result)) == failing
    assert named in result.stdout


def test_a_key_stripe_refuses_fails(sound):
    result = check(STRIPE_SECRET_KEY="sk_test_" + "0" * 24)

    assert result.returncode == 1
    assert "stripe key" in failures(result)
    assert "0" * 24 not in result.stdout


def test_a_publishable_key_fails(sound):
    result = check(STRIPE_SECRET_KEY="pk_test_" + "0" * 24)

    assert result.returncode == 1
    assert "stripe key" in failures(result)


def test_no_stripe_endpoint_to_this_service_fails(sound):
    sound.sandbox.stripe.update_webhook_endpoint_record(sound.endpoint["id"], url="https://elsewhere.example/hook")

    result = check()

    assert result.returncode == 1
    assert failures(result) == {"stripe webhook endpoint": "FAIL"}
    assert f"no endpoint sends to {STRIPE_URL}" in result.stdout


def test_a_disabled_stripe_endpoint_fails(sound):
    sound.sandbox.stripe.update_webhook_endpoint_record(sound.endpoint["id"], status="disabled")

    result = check()

    assert failures(result) == {"stripe webhook endpoint": "FAIL"}


def test_a_stripe_endpoint_missing_an_event_fails_and_names_it(sound):
    events = [e for e in STRIPE_EVENTS if e != "charge.refunded"]
    sound.sandbox.stripe.update_webhook_endpoint_record(sound.endpoint["id"], enabled_events=events)

    result = check()

    assert result.returncode == 1
    assert failures(result) == {"stripe webhook endpoint": "FAIL"}
    assert "lacks charge.refunded" in result.stdout


def test_a_stripe_endpoint_with_every_event_counts_as_having_ours(sound):
    sound.sandbox.stripe.update_webhook_endpoint_record(sound.endpoint["id"], enabled_events=["*"])

    result = check()

    assert result.returncode == 0, result.stdout
    assert rows(result.stdout)["stripe webhook endpoint"] == "OK"


def test_a_stripe_endpoint_in_another_api_version_fails(sound):
    sound.sandbox.stripe.update_webhook_endpoint_record(sound.endpoint["id"], api_version="2020-08-27")

    result = check()

    assert result.returncode == 1
    assert failures(result) == {"stripe api version": "FAIL"}
    assert f"this code reads {API_VERSION}" in result.stdout


def test_a_disabled_calendly_subscription_fails(sound):
    sound.sandbox.calendly.disable_webhook_subscription(sound.subscription()["uri"])

    result = check()

    assert result.returncode == 1
    assert failures(result) == {"calendly webhook subscription": "FAIL"}
    assert "is disabled" in result.stdout and "bookingflow calendly subscribe" in result.stdout


def test_a_missing_calendly_subscription_fails(sound):
    sound.sandbox.calendly.clear_webhook_subscriptions()

    result = check()

    assert result.returncode == 1
    assert failures(result) == {"calendly webhook subscription": "FAIL"}
    assert f"no subscription sends to {CALENDLY_URL}" in result.stdout


def test_a_calendly_subscription_without_cancellations_fails(sound, sandbox):
    sandbox.calendly.clear_webhook_subscriptions()
    organization_subscription(sandbox, ["invitee.created"])

    result = check()

    assert failures(result) == {"calendly webhook subscription": "FAIL"}
    assert "lacks invitee.canceled" in result.stdout


def test_an_inactive_event_type_fails_and_names_the_session_type(sound):
    sound.sandbox.calendly.set_event_type_active(EVENT_TYPE, False)

    result = check()

    assert result.returncode == 1
    assert failures(result) == {f"event type of {EVENT_TYPE}": "FAIL"}
    assert f"session-types disable {EVENT_TYPE}" in result.stdout


def test_an_event_type_calendly_does_not_know_fails(sound):
    sound.sandbox.calendly.remove_event_type(EVENT_TYPE)

    result = check()

    assert failures(result) == {f"event type of {EVENT_TYPE}": "FAIL"}
    assert "does not exist in Calendly" in result.stdout


def test_a_calendly_token_calendly_refuses_fails(sound):
    result = check(CALENDLY_API_TOKEN="not-the-token")

    assert result.returncode == 1
    assert failures(result) == {"calendly token": "FAIL"}
    assert "not-the-token" not in result.stdout


def test_an_unreachable_broker_fails(sound):
    result = check(BROKER_URL="redis://127.0.0.1:1/0")

    assert result.returncode == 1
    assert failures(result) == {"broker": "FAIL"}


def test_a_missing_setting_fails_and_names_it(sound):
    env = environment()
    del env["CALENDLY_WEBHOOK_SIGNING_KEY"]

    result = run_cli(env, "check", check=False)

    assert result.returncode == 1
    assert "settings" in failures(result)
    assert "CALENDLY_WEBHOOK_SIGNING_KEY is not set" in result.stdout


def test_a_database_not_migrated_to_the_newest_version_fails(sound, database_url):
    cli_on(database_url, "db", "upgrade")
    cli_on(database_url, "db", "downgrade", "--to", "6")

    result = check(DATABASE_URL=database_url)

    assert result.returncode == 1
    assert failures(result) == {"database schema": "FAIL"}
    assert "not applied: 7, 8" in result.stdout and "bookingflow db upgrade" in result.stdout


def test_an_empty_database_fails(sound, database_url):
    result = check(DATABASE_URL=database_url)

    assert result.returncode == 1
    assert "database schema" in failures(result)


# --- bookingflow calendly subscribe ------------------------------------------------------------


def organization_subscription(sandbox, events: list[str]) -> None:
    """A subscription to our URL made by hand, e.g. by an earlier version or another tool."""
    import requests

    user = requests.get(sandbox.base + "/calendly/users/me", headers=auth(), timeout=5).json()["resource"]
    answer = requests.post(sandbox.base + "/calendly/webhook_subscriptions", headers=auth(), timeout=5, json={
        "url": CALENDLY_URL, "events": events, "organization": user["current_organization"],
        "scope": "organization", "signing_key": suite.CALENDLY_KEY})
    assert answer.status_code == 201, answer.text


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {suite.CALENDLY_TOKEN}"}


def test_subscribe_creates_an_organization_subscription_signed_with_the_configured_key(sound, sandbox):
    subscription = sound.subscription()

    assert subscription["callback_url"] == CALENDLY_URL
    assert subscription["state"] == "active" and subscription["scope"] == "organization"
    assert sorted(subscription["events"]) == ["invitee.canceled", "invitee.created"]
    assert sandbox.calendly.subscription_signing_key(subscription["uri"]) == suite.CALENDLY_KEY


def test_subscribe_again_leaves_an_active_subscription_alone(sound, sandbox):
    before = sound.subscription()

    result = subscribe()

    assert "left alone" in result.stdout
    assert sandbox.calendly.webhook_subscriptions() == [before]


def test_subscribe_replaces_a_disabled_subscription(sound, sandbox):
    disabled = sound.subscription()
    sandbox.calendly.disable_webhook_subscription(disabled["uri"])

    result = subscribe()

    assert "deleted and created again" in result.stdout
    now = sound.subscription()
    assert now["uri"] != disabled["uri"] and now["state"] == "active"
    assert check().returncode == 0


def test_subscribe_adds_missing_events_by_recreating(sound, sandbox):
    sandbox.calendly.clear_webhook_subscriptions()
    organization_subscription(sandbox, ["invitee.created"])

    subscribe()

    assert sorted(sound.subscription()["events"]) == ["invitee.canceled", "invitee.created"]


def test_subscribe_uses_the_user_scope_for_a_member_who_is_not_an_admin(sound, sandbox):
    sandbox.calendly.clear_webhook_subscriptions()
    sandbox.calendly.grant(suite.CALENDLY_TOKEN, role="user")

    subscribe()

    subscription = sound.subscription()
    assert subscription["scope"] == "user" and subscription["user"] == sandbox.calendly.host_uri
    assert check().returncode == 0


def test_subscribe_without_a_signing_key_says_so_and_changes_nothing(sound, sandbox):
    sandbox.calendly.clear_webhook_subscriptions()
    env = environment()
    del env["CALENDLY_WEBHOOK_SIGNING_KEY"]

    result = run_cli(env, "calendly", "subscribe", check=False)

    assert result.returncode == 2
    assert "CALENDLY_WEBHOOK_SIGNING_KEY is not set" in result.stderr
    assert sandbox.calendly.webhook_subscriptions() == []


# --- bookingflow dev ---------------------------------------------------------------------------


def test_dev_sets_up_its_sandbox_so_that_every_check_passes(tmp_path):
    import subprocess
    import sys

    from support.realstack import ROOT, stop_group
    from support.suite import _free_port
    from support.waiting import wait_until

    log = tmp_path / "dev.log"
    env = {**base_environment(), "DATABASE_URL": f"sqlite:///{tmp_path}/dev.db", "PORT": str(_free_port())}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "ops.cli", "dev"], env=env, cwd=ROOT, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: "passed (" in log.read_text() or " failed, " in log.read_text()
                   or process.poll() is not None, timeout=60, message="the set-up check of bookingflow dev")
        output = log.read_text()
    finally:
        stop_group(process)
    assert "all checks passed" in output, output
    assert rows(output)["calendly webhook subscription"] == "OK"
    assert rows(output)["stripe webhook endpoint"] == "OK"
