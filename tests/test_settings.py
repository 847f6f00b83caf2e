"""Configuration: `settings.load` with explicit environments, and the real processes stopping at start
with one line naming the variable when it is missing or malformed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bookingflow import settings
from bookingflow.settings import SERVICE_REQUIREMENTS, SettingsError

ROOT = Path(__file__).resolve().parent.parent

SERVICE_ENV = {
    "BROKER_URL": "redis://127.0.0.1:6379/0",
    "STRIPE_SECRET_KEY": "sk_test_do_not_print_1",
    "STRIPE_WEBHOOK_SECRET": "whsec_do_not_print_2",
    "CALENDLY_API_TOKEN": "calendly_do_not_print_3",
    "CALENDLY_WEBHOOK_SIGNING_KEY": "signing_do_not_print_4",
    "PUBLIC_URL": "https://frontend.example",
}


def test_defaults_follow_the_contract():
    loaded = settings.load({})

    assert loaded.database_url == "sqlite:///bookingflow.db"
    assert loaded.calendly_api_base == "https://api.calendly.com"
    assert loaded.port == 5000
    assert loaded.checkout_expires_minutes == 30
    assert loaded.payment_hold_minutes == 60
    assert loaded.sweep_interval_seconds == 60
    assert loaded.state_timeouts == {}
    assert loaded.broker_url == ""


def test_blank_values_count_as_unset():
    loaded = settings.load({"PORT": "  ", "DATABASE_URL": "", "CHECKOUT_EXPIRES_MINUTES": " "})

    assert (loaded.port, loaded.database_url, loaded.checkout_expires_minutes) == (
        5000, "sqlite:///bookingflow.db", 30)


def test_values_in_range_are_read():
    loaded = settings.load({
        "DATABASE_URL": "postgresql://app@db.internal:5432/bookings", "PORT": "8080",
        "CHECKOUT_EXPIRES_MINUTES": "1440", "PAYMENT_HOLD_MINUTES": "15", "SWEEP_INTERVAL_SECONDS": "5",
        "CALENDLY_API_BASE": "http://127.0.0.1:9000/calendly/",
    })

    assert loaded.database_url == "postgresql://app@db.internal:5432/bookings"
    assert (loaded.port, loaded.checkout_expires_minutes) == (8080, 1440)
    assert (loaded.payment_hold_minutes, loaded.sweep_interval_seconds) == (15, 5)
    assert loaded.calendly_api_base == "http://127.0.0.1:9000/calendly"


def test_the_broker_falls_back_to_redis_url():
    assert settings.load({"REDIS_URL": "redis://cache:6379/1"}).broker_url == "redis://cache:6379/1"


def test_broker_url_wins_over_redis_url():
    loaded = settings.load({"BROKER_URL": "amqp://rabbit:5672", "REDIS_URL": "redis://cache:6379/1"})

    assert loaded.broker_url == "amqp://rabbit:5672"


def test_comma_separated_secrets_become_tuples_without_blanks():
    loaded = settings.load({
        "STRIPE_WEBHOOK_SECRET": " whsec_new , whsec_old,, ",
        "CALENDLY_WEBHOOK_SIGNING_KEY": "key_one",
    })

    assert loaded.stripe_webhook_secrets == ("whsec_new", "whsec_old")
    assert loaded.calendly_signing_keys == ("key_one",)
    assert settings.load({}).stripe_webhook_secrets == ()


def test_state_timeouts_are_parsed_into_a_dict_of_state_names():
    loaded = settings.load({"STATE_TIMEOUTS": "payment_pending=90, CALENDLY_SCHEDULED = 30"})

    assert loaded.state_timeouts == {"PAYMENT_PENDING": 90, "CALENDLY_SCHEDULED": 30}


def test_a_state_timeout_for_no_state_stops_a_process_at_start_naming_the_variable():
    from models.bootstrap import checked

    with pytest.raises(SettingsError) as error:
        checked(settings.load({"STATE_TIMEOUTS": "PAYMENT_PENDING=90,NOPE=5"}))
    assert "STATE_TIMEOUTS" in str(error.value) and "NOPE" in str(error.value)
    assert checked(settings.load({"STATE_TIMEOUTS": "PAYMENT_PENDING=90"})).state_timeouts == {"PAYMENT_PENDING": 90}


@pytest.mark.parametrize(("env", "variable"), [
    ({"PORT": "abc"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"CHECKOUT_EXPIRES_MINUTES": "10"}, "CHECKOUT_EXPIRES_MINUTES"),
    ({"CHECKOUT_EXPIRES_MINUTES": "2000"}, "CHECKOUT_EXPIRES_MINUTES"),
    ({"PAYMENT_HOLD_MINUTES": "0"}, "PAYMENT_HOLD_MINUTES"),
    ({"SWEEP_INTERVAL_SECONDS": "1.5"}, "SWEEP_INTERVAL_SECONDS"),
    ({"BROKER_URL": "http://x"}, "BROKER_URL"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"DATABASE_URL": "postgresql://app@db.internal:5432/"}, "DATABASE_URL"),
    ({"STATE_TIMEOUTS": "NOPE-5=5"}, "STATE_TIMEOUTS"),
    ({"STATE_TIMEOUTS": "PAYMENT_PENDING=abc"}, "STATE_TIMEOUTS"),
    ({"STATE_TIMEOUTS": "PAYMENT_PENDING"}, "STATE_TIMEOUTS"),
    ({"PUBLIC_URL": "ftp://x"}, "PUBLIC_URL"),
    ({"STRIPE_API_BASE": "api.stripe.com"}, "STRIPE_API_BASE"),
    ({"SMTP_URL": "http://mail.example"}, "SMTP_URL"),
    ({"ALERT_WEBHOOK_URL": "mailto:ops@example.com"}, "ALERT_WEBHOOK_URL"),
    ({"CLIENT_RATE_LIMIT": "lots"}, "CLIENT_RATE_LIMIT"),
    ({"CLIENT_RATE_LIMIT": "0/minute"}, "CLIENT_RATE_LIMIT"),
    ({"CLIENT_RATE_LIMIT": "120/fortnight"}, "CLIENT_RATE_LIMIT"),
    ({"CLIENT_RATE_LIMIT": "20/second;"}, "CLIENT_RATE_LIMIT"),
    ({"RATE_LIMIT_STORAGE_URL": "memcached://cache:11211"}, "RATE_LIMIT_STORAGE_URL"),
    ({"TRUSTED_PROXY_COUNT": "-1"}, "TRUSTED_PROXY_COUNT"),
    ({"TRUSTED_PROXY_COUNT": "one"}, "TRUSTED_PROXY_COUNT"),
    ({"STRIPE_WEBHOOK_SOURCE_NETWORKS": "3.18.12.63,stripe.com"}, "STRIPE_WEBHOOK_SOURCE_NETWORKS"),
    ({"STRIPE_WEBHOOK_SOURCE_NETWORKS": "10.0.0.1/8"}, "STRIPE_WEBHOOK_SOURCE_NETWORKS"),
    ({"CALENDLY_WEBHOOK_SOURCE_NETWORKS": "192.0.2.0/33"}, "CALENDLY_WEBHOOK_SOURCE_NETWORKS"),
    ({"CALENDLY_WEBHOOK_SOURCE_NETWORKS": "2001:db8::/129"}, "CALENDLY_WEBHOOK_SOURCE_NETWORKS"),
    ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN"),
    ({"METRICS_TOKEN": "a token with spaces in it"}, "METRICS_TOKEN"),
    ({"WORKER_METRICS_PORT": "metrics"}, "WORKER_METRICS_PORT"),
    ({"WORKER_METRICS_PORT": "0"}, "WORKER_METRICS_PORT"),
    ({"WORKER_METRICS_HOST": "metrics.internal"}, "WORKER_METRICS_HOST"),
], ids=lambda value: "-".join(f"{k}={v}" for k, v in value.items()) if isinstance(value, dict) else "")
def test_a_malformed_value_raises_one_line_naming_the_variable(env, variable):
    with pytest.raises(SettingsError) as error:
        settings.load(env)

    message = str(error.value)
    assert variable in message
    assert "\n" not in message


def test_metrics_are_closed_and_the_worker_exporter_on_loopback_by_default():
    loaded = settings.load({})

    assert loaded.metrics_token == ""
    assert (loaded.worker_metrics_host, loaded.worker_metrics_port) == ("127.0.0.1", 9191)


def test_metrics_settings_are_read():
    loaded = settings.load({"METRICS_TOKEN": " scrape-me-0123456789 ", "WORKER_METRICS_HOST": "::",
                            "WORKER_METRICS_PORT": "9400", "PORT": "9400"})

    assert loaded.metrics_token == "scrape-me-0123456789"
    assert (loaded.worker_metrics_host, loaded.worker_metrics_port, loaded.port) == ("::", 9400, 9400)


def test_a_malformed_metrics_token_is_not_echoed_back():
    with pytest.raises(SettingsError) as error:
        settings.load({"METRICS_TOKEN": "hunter2 hunter2 hunter2"})

    assert "hunter2" not in str(error.value)


@pytest.mark.parametrize("variable", ["SMTP_URL", "RATE_LIMIT_STORAGE_URL"])
def test_a_malformed_secret_is_not_echoed_back(variable):
    with pytest.raises(SettingsError) as error:
        settings.load({variable: "http://user:hunter2@mail.example"})

    assert "hunter2" not in str(error.value)


def test_the_console_listens_on_5050_unless_told_and_its_key_is_read():
    assert (settings.load({}).console_port, settings.load({}).console_secret_key) == (5050, "")
    loaded = settings.load({"CONSOLE_PORT": "6060", "CONSOLE_SECRET_KEY": "k" * 32})
    assert (loaded.console_port, loaded.console_secret_key) == (6060, "k" * 32)


def test_a_short_console_key_is_refused_without_being_echoed_back():
    with pytest.raises(SettingsError) as error:
        settings.load({"CONSOLE_SECRET_KEY": "hunter2hunter2"})

    assert "CONSOLE_SECRET_KEY" in str(error.value) and "hunter2" not in str(error.value)


@pytest.mark.parametrize(("env", "missing"), [
    ({"BROKER_URL": "redis://127.0.0.1:6379/0"}, "CONSOLE_SECRET_KEY"),
    ({"CONSOLE_SECRET_KEY": "k" * 32}, "BROKER_URL"),
])
def test_the_console_needs_its_key_and_the_broker(env, missing):
    with pytest.raises(SettingsError, match=missing):
        settings.require_console(settings.load(env))


def test_the_client_rate_limit_is_on_by_default_and_the_rest_is_open():
    loaded = settings.load({})

    assert loaded.client_rate_limit == settings.DEFAULT_CLIENT_RATE_LIMIT
    assert loaded.rate_limit_storage_url == ""  # the broker's Redis, else memory
    assert loaded.trusted_proxy_count == 0  # X-Forwarded-For is believed from nobody
    assert loaded.stripe_webhook_source_networks == loaded.calendly_webhook_source_networks == ()


def test_the_default_rate_limit_never_holds_back_fifty_tabs_polling_every_second():
    from limits import parse_many

    for item in parse_many(settings.DEFAULT_CLIENT_RATE_LIMIT):
        assert item.amount / item.get_expiry() >= 50, item


@pytest.mark.parametrize("raw", ["off", "OFF", " Off "])
def test_the_client_rate_limit_can_be_switched_off(raw):
    assert settings.load({"CLIENT_RATE_LIMIT": raw}).client_rate_limit == ""


def test_rate_limit_settings_are_read():
    loaded = settings.load({
        "CLIENT_RATE_LIMIT": "20/second; 300/minute", "RATE_LIMIT_STORAGE_URL": "redis://limits:6379/3",
        "TRUSTED_PROXY_COUNT": "2",
    })

    assert loaded.client_rate_limit == "20/second; 300/minute"
    assert loaded.rate_limit_storage_url == "redis://limits:6379/3"
    assert loaded.trusted_proxy_count == 2
    assert settings.load({"RATE_LIMIT_STORAGE_URL": "memory://"}).rate_limit_storage_url == "memory://"


def test_source_networks_take_ipv4_and_ipv6_networks_and_single_addresses():
    loaded = settings.load({
        "STRIPE_WEBHOOK_SOURCE_NETWORKS": " 3.18.12.63, 192.0.2.0/24,,2001:db8::/32 ",
        "CALENDLY_WEBHOOK_SOURCE_NETWORKS": "2001:db8::1",
    })

    assert [str(network) for network in loaded.stripe_webhook_source_networks] == [
        "3.18.12.63/32", "192.0.2.0/24", "2001:db8::/32"]
    assert [str(network) for network in loaded.calendly_webhook_source_networks] == ["2001:db8::1/128"]


@pytest.mark.parametrize("missing", [variable for variable, _ in SERVICE_REQUIREMENTS])
def test_require_service_names_the_missing_variable(missing):
    env = {name: value for name, value in SERVICE_ENV.items() if name != missing}

    with pytest.raises(SettingsError) as error:
        settings.require_service(settings.load(env))

    assert missing in str(error.value)
    assert "\n" not in str(error.value)


def test_require_service_names_every_missing_variable_in_one_line():
    first, second = SERVICE_REQUIREMENTS[0][0], SERVICE_REQUIREMENTS[1][0]

    with pytest.raises(SettingsError) as error:
        settings.require_service(settings.load({}))
    assert all(variable in str(error.value) for variable, _ in SERVICE_REQUIREMENTS)
    assert "\n" not in str(error.value)
    with pytest.raises(SettingsError) as error:
        settings.require_service(settings.load({first: SERVICE_ENV[first]}))
    unset, _, needs = str(error.value).partition(" are not set")
    assert second in unset and first not in unset


def test_require_service_accepts_a_complete_environment():
    loaded = settings.load(SERVICE_ENV)

    assert settings.require_service(loaded) is loaded


def test_secrets_never_appear_in_the_repr():
    env = {
        **SERVICE_ENV,
        "STRIPE_WEBHOOK_SECRET": "whsec_do_not_print_2,whsec_do_not_print_5",
        "SMTP_URL": "smtp://mailer:smtp_do_not_print_6@mail.example:587",
        "ALERT_WEBHOOK_URL": "https://hooks.example/alerts/hook_do_not_print_7",
        "RATE_LIMIT_STORAGE_URL": "redis://:redis_do_not_print_8@limits:6379/0",
        "METRICS_TOKEN": "metrics_do_not_print_9",
        "CONSOLE_SECRET_KEY": "console_do_not_print_10_" + "x" * 32,
    }

    shown = repr(settings.load(env))

    assert "do_not_print" not in shown
    assert "frontend.example" in shown  # the repr is still useful


# --- the real processes ---------------------------------------------------------------------------

def run(args: list[str], cwd: Path, timeout: float = 90, **env: str) -> subprocess.CompletedProcess:
    """Run a command with a minimal environment: only what the case sets, plus what Python needs."""
    base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(args, cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=timeout)


def bookingflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "ops.cli", *args]


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("missing", [variable for variable, _ in SERVICE_REQUIREMENTS])
def test_the_scheduler_stops_at_start_with_one_line_naming_the_first_missing_variable(tmp_path, missing):
    names = [variable for variable, _ in SERVICE_REQUIREMENTS]
    env = {name: SERVICE_ENV[name] for name in names[:names.index(missing)]}

    result = run(bookingflow("scheduler"), tmp_path, **env)

    assert result.returncode != 0
    [line] = stderr_lines(result)
    assert missing in line
    assert "Traceback" not in result.stderr
    assert all(secret not in result.stdout + result.stderr for secret in env.values() if "do_not_print" in secret)


def test_the_worker_refuses_to_start_without_a_broker(tmp_path):
    result = run([sys.executable, "-m", "dramatiq", "--processes", "1", "--threads", "1", "jobs"], tmp_path,
                 timeout=60, **{name: value for name, value in SERVICE_ENV.items() if name != "BROKER_URL"})

    assert result.returncode != 0
    assert "BROKER_URL" in result.stdout + result.stderr


def test_db_upgrade_with_a_malformed_port_prints_one_line_naming_it_and_touches_no_database(tmp_path):
    result = run(bookingflow("db", "upgrade"), tmp_path, PORT="abc")

    assert result.returncode != 0
    [line] = stderr_lines(result)
    assert "PORT" in line
    assert list(tmp_path.iterdir()) == []  # the default sqlite:///bookingflow.db was never created


@pytest.mark.parametrize("variable, value", [
    ("CLIENT_RATE_LIMIT", "plenty"), ("STRIPE_WEBHOOK_SOURCE_NETWORKS", "stripe.com"),
])
def test_a_malformed_rate_limit_or_source_network_stops_a_process_with_one_line(tmp_path, variable, value):
    result = run(bookingflow("db", "upgrade"), tmp_path, **{variable: value})

    assert result.returncode != 0
    [line] = stderr_lines(result)
    assert variable in line


def test_db_upgrade_needs_no_service_credentials(tmp_path):
    result = run(bookingflow("db", "upgrade"), tmp_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "bookingflow.db").exists()  # the contract's default DATABASE_URL


@pytest.mark.parametrize("variable, env", [
    ("STRIPE_SECRET_KEY", {name: value for name, value in SERVICE_ENV.items() if name != "STRIPE_SECRET_KEY"}),
    ("CLIENT_RATE_LIMIT", {**SERVICE_ENV, "CLIENT_RATE_LIMIT": "plenty"}),
], ids=["missing", "malformed"])
def test_web_stops_at_start_with_one_line_instead_of_restarting_its_workers_for_ever(tmp_path, variable, env):
    """gunicorn's master checks the settings before it forks: a worker that failed on them was
    replaced by another that failed the same way, for ever, and web never exited."""
    from support.waiting import wait_until
    from support.realstack import free_port, start_procfile_process, stop_group

    base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env = {**base, **env, "PORT": str(free_port()), "DATABASE_URL": f"sqlite:///{tmp_path}/web.db",
           "TMPDIR": str(tmp_path)}
    web = start_procfile_process("web", env, tmp_path / "stdout.log", stderr_path=tmp_path / "stderr.log")
    try:
        wait_until(lambda: web.poll() is not None, timeout=60, interval=0.05, message="web to exit")
    finally:
        if web.poll() is None:
            stop_group(web)

    stderr = (tmp_path / "stderr.log").read_text()
    assert web.returncode != 0
    [line] = [line for line in stderr.splitlines() if line.strip()]
    assert variable in line and "Traceback" not in stderr
    assert all(secret not in stderr for secret in SERVICE_ENV.values() if "do_not_print" in secret)
