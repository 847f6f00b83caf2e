"""The scheduler's sweep over Calendly's webhook subscription: a subscription Calendly disabled (after
24 hours of failed deliveries), or one that is missing or incomplete, raises one alert per incident."""

from __future__ import annotations

import datetime as dt

import pytest

from bookingflow import settings as settings_module
from bookingflow.providers import calendly_subscription
from models.db import utcnow
from models.tables import Alert
from scheduler.subscription_health import ALERT_KIND, check_calendly_subscription
from support import suite

URL = suite.SUITE_SETTINGS.public_url + calendly_subscription.WEBHOOK_PATH


@pytest.fixture
def subscribed(app, sandbox):
    sandbox.calendly.clear_webhook_subscriptions()
    _, subscription = calendly_subscription.repair(calendly_subscription.standing(), URL, suite.CALENDLY_KEY)
    yield subscription
    sandbox.calendly.clear_webhook_subscriptions()


def alerts() -> list[Alert]:
    return list(Alert.select().where(Alert.kind == ALERT_KIND).order_by(Alert.id))


def test_an_active_subscription_raises_nothing(subscribed):
    assert check_calendly_subscription(utcnow()) == 0
    assert alerts() == []


def test_a_disabled_subscription_is_alerted_once(subscribed, sandbox):
    sandbox.calendly.disable_webhook_subscription(subscribed["uri"])

    assert check_calendly_subscription(utcnow()) == 1
    assert check_calendly_subscription(utcnow()) == 1

    [alert] = alerts()
    assert subscribed["uri"] in alert.text and "bookingflow calendly subscribe" in alert.text


def test_a_repaired_subscription_disabled_again_is_a_new_incident(subscribed, sandbox):
    sandbox.calendly.disable_webhook_subscription(subscribed["uri"])
    check_calendly_subscription(utcnow())
    _, again = calendly_subscription.repair(calendly_subscription.standing(), URL, suite.CALENDLY_KEY)
    assert check_calendly_subscription(utcnow()) == 0

    sandbox.calendly.disable_webhook_subscription(again["uri"])
    check_calendly_subscription(utcnow())

    assert [a.key for a in alerts()] == [f"calendly_subscription_disabled:{subscribed['uri']}",
                                         f"calendly_subscription_disabled:{again['uri']}"]


def test_a_missing_subscription_is_alerted_once_a_day(subscribed, sandbox):
    sandbox.calendly.clear_webhook_subscriptions()
    now = utcnow().replace(hour=12, minute=0)  # midday: fifteen minutes later is the same day

    check_calendly_subscription(now)
    check_calendly_subscription(now + dt.timedelta(minutes=15))
    assert len(alerts()) == 1
    check_calendly_subscription(now + dt.timedelta(days=1))

    assert len(alerts()) == 2
    assert all(URL in alert.text for alert in alerts())


def test_calendly_unreachable_raises_no_alert(subscribed):
    current = settings_module.get()
    settings_module.configure(current.replace(calendly_api_base="http://127.0.0.1:1"))
    try:
        assert check_calendly_subscription(utcnow()) == 0
    finally:
        settings_module.configure(current)
    assert alerts() == []


def test_the_interval_is_a_setting_with_a_default():
    assert settings_module.load({}).calendly_subscription_check_seconds == 15 * 60
    assert settings_module.load({"CALENDLY_SUBSCRIPTION_CHECK_SECONDS": "300"}).calendly_subscription_check_seconds == 300
    with pytest.raises(settings_module.SettingsError, match="CALENDLY_SUBSCRIPTION_CHECK_SECONDS"):
        settings_module.load({"CALENDLY_SUBSCRIPTION_CHECK_SECONDS": "0"})


def test_the_scheduler_runs_the_check_on_its_own_clock(subscribed, sandbox):
    from scheduler import run_subscription_check, start_in_background

    settings_module.configure(settings_module.get().replace(calendly_subscription_check_seconds=600))
    scheduler = start_in_background(60)
    try:
        job = scheduler.get_job("calendly_subscription")
        assert job.trigger.interval == dt.timedelta(seconds=600)
    finally:
        scheduler.shutdown(wait=False)
        settings_module.configure(suite.SUITE_SETTINGS)
    sandbox.calendly.disable_webhook_subscription(subscribed["uri"])

    assert run_subscription_check() == 1
    assert len(alerts()) == 1
