"""The one reader of the environment.

Every process (web, worker, scheduler, CLI) calls `get()`; nothing else reads `os.environ`.
A missing or malformed value raises `SettingsError`, whose message is one line naming the variable;
the entry points print that line and exit.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import os
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NoReturn
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "sqlite:///bookingflow.db"
DEFAULT_CALENDLY_API_BASE = "https://api.calendly.com"
DEFAULT_STRIPE_API_BASE = "https://api.stripe.com"
# The in-process broker: only `bookingflow dev` and the test-suite select it.
EMBEDDED_BROKER_URL = "stub://"
# Per client address: a flood guard, not a quota. 3000 a minute is fifty open tabs behind one address
# (an office, a carrier's NAT) polling every second, or a test polling every 20 ms; bursts up to 100
# in a second. One address alone still cannot take more than a small share of web's capacity.
DEFAULT_CLIENT_RATE_LIMIT = "100/second;3000/minute"
MAX_TRUSTED_PROXIES = 5
# E-mails to one address in any hour: more than a booking's whole life sends (confirmation, a failed
# payment or two, a reschedule, a cancellation and its refund), far less than a relay would want.
DEFAULT_MAIL_PER_ADDRESS_PER_HOUR = 10
# Calendly disables a subscription after 24 hours of failed deliveries; a look every 15 minutes (three
# API calls) finds it long before that, and a missing one within the quarter hour.
DEFAULT_CALENDLY_SUBSCRIPTION_CHECK_SECONDS = 15 * 60
DEFAULT_WORKER_METRICS_HOST = "127.0.0.1"
DEFAULT_WORKER_METRICS_PORT = 9191
# A scraper's token is compared in constant time, but a short one can still be guessed.
MIN_METRICS_TOKEN_LENGTH = 16
DEFAULT_CONSOLE_PORT = 5050
# The console's session cookie is signed with it: as long as a strong random token.
MIN_CONSOLE_SECRET_KEY_LENGTH = 32

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def stop(message: str) -> NoReturn:
    """How an entry point stops on a bad setting (or any set-up it cannot go on without): one line."""
    # One write with its newline: in a Dramatiq worker process stderr is a pipe to the parent that
    # sends each write as a message, and print() writes the text and the newline apart, so the
    # parent's own "exited unexpectedly" line could land in the middle of ours.
    sys.stderr.write(f"bookingflow: {message}\n")
    sys.stderr.flush()
    raise SystemExit(2)


class SettingsError(Exception):
    """A setting is missing or malformed. str() is one line naming the variable."""


@dataclass(frozen=True)
class Settings:
    # URLs may carry passwords: kept out of repr() like the secrets.
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    broker_url: str = field(default="", repr=False)
    stripe_secret_key: str = field(default="", repr=False)
    stripe_webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    stripe_api_base: str = DEFAULT_STRIPE_API_BASE
    calendly_api_token: str = field(default="", repr=False)
    calendly_signing_keys: tuple[str, ...] = field(default=(), repr=False)
    calendly_api_base: str = DEFAULT_CALENDLY_API_BASE
    public_url: str = ""
    # Where Stripe and Calendly reach this service (its webhooks), when not under PUBLIC_URL.
    service_url: str = ""
    port: int = 5000
    checkout_expires_minutes: int = 30
    payment_hold_minutes: int = 60
    # How long a client's request to reschedule stays open: a slot booked later is not taken for it.
    reschedule_request_minutes: int = 120
    sweep_interval_seconds: int = 60
    # How often the scheduler asks Calendly whether our webhook subscription is still active.
    calendly_subscription_check_seconds: int = DEFAULT_CALENDLY_SUBSCRIPTION_CHECK_SECONDS
    state_timeouts: Mapping[str, int] = field(default_factory=dict)
    smtp_url: str = field(default="", repr=False)
    mail_from: str = "bookings@localhost"
    # Over it, an e-mail is kept in the outbox as withheld, not sent.
    mail_per_address_per_hour: int = DEFAULT_MAIL_PER_ADDRESS_PER_HOUR
    alert_webhook_url: str = field(default="", repr=False)
    payload_retention_days: int = 90
    # Fernet keys for the client's e-mail and name at rest: the first encrypts, all decrypt (rotation).
    data_encryption_keys: tuple[str, ...] = field(default=(), repr=False)
    prometheus_multiproc_dir: str = ""  # set for gunicorn's workers by bookingflow.gunicorn_conf
    # `limits` notation, e.g. "20/second;300/minute"; "" when switched off.
    client_rate_limit: str = DEFAULT_CLIENT_RATE_LIMIT
    # Where the counters live; "" means the broker's Redis, else this process's memory.
    rate_limit_storage_url: str = field(default="", repr=False)
    # Proxies in front of the web process whose X-Forwarded-For is believed; 0 believes none.
    trusted_proxy_count: int = 0
    # Where each provider may deliver from; empty accepts any source.
    stripe_webhook_source_networks: tuple[IPNetwork, ...] = ()
    calendly_webhook_source_networks: tuple[IPNetwork, ...] = ()
    # Bearer token that opens web's /metrics; "" keeps /metrics closed (404).
    metrics_token: str = field(default="", repr=False)
    # Where each worker host serves Dramatiq's Prometheus exporter: loopback by default, since it has
    # no authentication, and a port of its own so it never competes with web for PORT.
    worker_metrics_host: str = DEFAULT_WORKER_METRICS_HOST
    worker_metrics_port: int = DEFAULT_WORKER_METRICS_PORT
    # The daily drift report (jobs/drift.py): the UTC hour the scheduler runs it, and how many days of
    # bookings (by creation) it compares with the providers.
    drift_report_hour: int = 4
    drift_report_days: int = 30
    # The operator console (`bookingflow console`): its port, and the key its session cookie is signed with.
    console_port: int = DEFAULT_CONSOLE_PORT
    console_secret_key: str = field(default="", repr=False)

    @property
    def webhook_base(self) -> str:
        """This service's address as the providers see it: SERVICE_URL, else PUBLIC_URL (one host
        serving the frontend and bookingflow)."""
        return self.service_url or self.public_url

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)


# Variables every serving process needs; `db upgrade` and the like need none of them.
SERVICE_REQUIREMENTS = (
    ("BROKER_URL", "broker_url"),
    ("STRIPE_SECRET_KEY", "stripe_secret_key"),
    ("STRIPE_WEBHOOK_SECRET", "stripe_webhook_secrets"),
    ("CALENDLY_API_TOKEN", "calendly_api_token"),
    ("CALENDLY_WEBHOOK_SIGNING_KEY", "calendly_signing_keys"),
    ("PUBLIC_URL", "public_url"),
)


def _text(env: Mapping[str, str], name: str, default: str = "") -> str:
    value = env.get(name, "").strip()
    return value or default


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _secret_list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    # Several comma-separated secrets are accepted while one is being rotated.
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _url(env: Mapping[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = _text(env, name, default)
    if value and urlsplit(value).scheme not in schemes:
        raise SettingsError(f"{name} must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
    return value.rstrip("/") if value else value


def _fernet_keys(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated Fernet keys (32 url-safe base64-encoded bytes each); never echoed back."""
    keys = _secret_list(env, name)
    for number, key in enumerate(keys, 1):
        try:
            valid = bool(re.fullmatch(r"[A-Za-z0-9_-]{43}=", key)) and len(base64.urlsafe_b64decode(key)) == 32
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise SettingsError(f"{name} must be comma-separated Fernet keys (32 url-safe base64-encoded bytes, "
                                f"as Fernet.generate_key() makes them); key {number} of {len(keys)} is not one")
    return keys


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    raw = _text(env, name, default)
    if raw.lower() == "off":
        return ""
    from limits import parse_many  # local: only a serving process needs it, and it validates here

    try:
        items = parse_many(raw)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise SettingsError(f"{name} must look like 120/minute, several separated by ';' "
                            f"(20/second;300/minute), or off; got {raw!r}")
    return raw


def _storage_url(env: Mapping[str, str], name: str) -> str:
    value = _text(env, name)
    scheme = urlsplit(value).scheme
    if value and scheme not in ("redis", "rediss", "memory"):
        raise SettingsError(f"{name} must be a URL starting with redis://, rediss:// or memory://")
    return "memory://" if scheme == "memory" else value


def _networks(env: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    networks = []
    for part in env.get(name, "").split(","):
        if not part.strip():
            continue
        try:
            # strict: 10.0.0.1/8 is more likely a typo than a way to write 10.0.0.0/8
            networks.append(ipaddress.ip_network(part.strip()))
        except ValueError as exc:
            raise SettingsError(f"{name} must be comma-separated networks or addresses (IPv4 or IPv6, "
                                f"e.g. 192.0.2.0/24,2001:db8::/32); {part.strip()!r} is not one: {exc}") from None
    return tuple(networks)


def _metrics_token(env: Mapping[str, str], name: str) -> str:
    token = _text(env, name)
    if token and (len(token) < MIN_METRICS_TOKEN_LENGTH or not re.fullmatch(r"[\x21-\x7e]+", token)):
        # Never echoed back: it is a secret even when it is a bad one.
        raise SettingsError(f"{name} must be at least {MIN_METRICS_TOKEN_LENGTH} printable characters "
                            f"without spaces (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return token


def _console_secret_key(env: Mapping[str, str], name: str) -> str:
    key = _text(env, name)
    if key and len(key) < MIN_CONSOLE_SECRET_KEY_LENGTH:
        raise SettingsError(f"{name} must be at least {MIN_CONSOLE_SECRET_KEY_LENGTH} characters "
                            f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return key


def require_console(settings: Settings) -> Settings:
    """Refuse to serve the console without what it needs: the key that signs its cookie, and the broker
    its actions send work to."""
    if not settings.console_secret_key:
        raise SettingsError("CONSOLE_SECRET_KEY is not set (e.g. python -c 'import secrets; "
                            "print(secrets.token_urlsafe(32))')")
    if not settings.broker_url:
        raise SettingsError("BROKER_URL is not set (nor REDIS_URL): the console's actions send work to the workers")
    return settings


def _host(env: Mapping[str, str], name: str, default: str) -> str:
    value = _text(env, name, default)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise SettingsError(f"{name} must be an IP address to bind (127.0.0.1, 0.0.0.0, ::1), got {value!r}") from None
    return value


def _state_timeouts(env: Mapping[str, str]) -> dict[str, int]:
    raw = env.get("STATE_TIMEOUTS", "").strip()
    timeouts: dict[str, int] = {}
    if not raw:
        return timeouts
    # The names are checked against the state machine where it lives, when a process starts
    # (models.bootstrap): settings sit below the models and do not know their states.
    for item in raw.split(","):
        name, sep, seconds = item.partition("=")
        name = name.strip().upper()
        if not sep or not re.fullmatch(r"[A-Z_]+", name) or not re.fullmatch(r"[0-9]+", seconds.strip()):
            raise SettingsError(f"STATE_TIMEOUTS must look like STATE=seconds,STATE=seconds; bad item {item.strip()!r}")
        timeouts[name] = int(seconds)
    return timeouts


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every variable; raise SettingsError naming the first bad one."""
    env = os.environ if env is None else env
    broker_variable = "BROKER_URL" if _text(env, "BROKER_URL") else "REDIS_URL"
    broker_url = _text(env, broker_variable)
    if broker_url and urlsplit(broker_url).scheme not in ("redis", "rediss", "amqp", "amqps", "stub"):
        raise SettingsError(f"{broker_variable} must start with redis://, rediss:// or amqp://")
    database_url = _text(env, "DATABASE_URL", DEFAULT_DATABASE_URL)
    if urlsplit(database_url).scheme not in ("sqlite", "postgres", "postgresql"):
        raise SettingsError("DATABASE_URL must start with postgresql:// or sqlite:///")
    if urlsplit(database_url).scheme != "sqlite" and not urlsplit(database_url).path.strip("/"):
        # Without a name PostgreSQL would connect to the user's default database, not fail.
        raise SettingsError("DATABASE_URL names no database: postgresql://user@host:5432/dbname")
    smtp_url = _url(env, "SMTP_URL", "", ("smtp", "smtps"))
    return Settings(
        database_url=database_url,
        broker_url=broker_url,
        stripe_secret_key=_text(env, "STRIPE_SECRET_KEY"),
        stripe_webhook_secrets=_secret_list(env, "STRIPE_WEBHOOK_SECRET"),
        stripe_api_base=_url(env, "STRIPE_API_BASE", DEFAULT_STRIPE_API_BASE, ("http", "https")),
        calendly_api_token=_text(env, "CALENDLY_API_TOKEN"),
        calendly_signing_keys=_secret_list(env, "CALENDLY_WEBHOOK_SIGNING_KEY"),
        calendly_api_base=_url(env, "CALENDLY_API_BASE", DEFAULT_CALENDLY_API_BASE, ("http", "https")),
        public_url=_url(env, "PUBLIC_URL", "", ("http", "https")),
        service_url=_url(env, "SERVICE_URL", "", ("http", "https")),
        port=_int(env, "PORT", 5000, 1, 65535),
        checkout_expires_minutes=_int(env, "CHECKOUT_EXPIRES_MINUTES", 30, 30, 1440),
        payment_hold_minutes=_int(env, "PAYMENT_HOLD_MINUTES", 60, 1, 7 * 24 * 60),
        reschedule_request_minutes=_int(env, "RESCHEDULE_REQUEST_MINUTES", 120, 5, 7 * 24 * 60),
        sweep_interval_seconds=_int(env, "SWEEP_INTERVAL_SECONDS", 60, 1, 24 * 3600),
        calendly_subscription_check_seconds=_int(env, "CALENDLY_SUBSCRIPTION_CHECK_SECONDS",
                                                 DEFAULT_CALENDLY_SUBSCRIPTION_CHECK_SECONDS, 10, 24 * 3600),
        state_timeouts=_state_timeouts(env),
        smtp_url=smtp_url,
        mail_from=_text(env, "MAIL_FROM", "bookings@localhost"),
        mail_per_address_per_hour=_int(env, "MAIL_PER_ADDRESS_PER_HOUR", DEFAULT_MAIL_PER_ADDRESS_PER_HOUR, 1, 10_000),
        alert_webhook_url=_url(env, "ALERT_WEBHOOK_URL", "", ("http", "https")),
        payload_retention_days=_int(env, "PAYLOAD_RETENTION_DAYS", 90, 1, 3650),
        data_encryption_keys=_fernet_keys(env, "DATA_ENCRYPTION_KEY"),
        prometheus_multiproc_dir=_text(env, "PROMETHEUS_MULTIPROC_DIR"),
        client_rate_limit=_rate_limit(env, "CLIENT_RATE_LIMIT", DEFAULT_CLIENT_RATE_LIMIT),
        rate_limit_storage_url=_storage_url(env, "RATE_LIMIT_STORAGE_URL"),
        trusted_proxy_count=_int(env, "TRUSTED_PROXY_COUNT", 0, 0, MAX_TRUSTED_PROXIES),
        stripe_webhook_source_networks=_networks(env, "STRIPE_WEBHOOK_SOURCE_NETWORKS"),
        calendly_webhook_source_networks=_networks(env, "CALENDLY_WEBHOOK_SOURCE_NETWORKS"),
        metrics_token=_metrics_token(env, "METRICS_TOKEN"),
        worker_metrics_host=_host(env, "WORKER_METRICS_HOST", DEFAULT_WORKER_METRICS_HOST),
        worker_metrics_port=_int(env, "WORKER_METRICS_PORT", DEFAULT_WORKER_METRICS_PORT, 1, 65535),
        drift_report_hour=_int(env, "DRIFT_REPORT_HOUR", 4, 0, 23),
        drift_report_days=_int(env, "DRIFT_REPORT_DAYS", 30, 1, 366),
        console_port=_int(env, "CONSOLE_PORT", DEFAULT_CONSOLE_PORT, 1, 65535),
        console_secret_key=_console_secret_key(env, "CONSOLE_SECRET_KEY"),
    )


def missing(settings: Settings, variables: tuple[str, ...]) -> list[str]:
    """Those of `variables` (names in SERVICE_REQUIREMENTS) that are not set."""
    attributes = dict(SERVICE_REQUIREMENTS)
    return [variable for variable in variables if not getattr(settings, attributes[variable])]


def require(settings: Settings, variables: tuple[str, ...], needs: str) -> Settings:
    """Refuse unless every one of `variables` is set, naming all that are not in one line: `needs`
    says who needs them ("a serving process", "reconcile report")."""
    unset = missing(settings, variables)
    if unset:
        named = ", ".join("BROKER_URL (or REDIS_URL: redis://... or amqp://...)" if v == "BROKER_URL" else v
                          for v in unset)
        also = "" if len(unset) == len(variables) else f" (and {', '.join(v for v in variables if v not in unset)})"
        raise SettingsError(f"{named} {'is' if len(unset) == 1 else 'are'} not set: {needs} needs "
                            f"{'it' if len(unset) == 1 else 'them'}{also}; see README, Configuration")
    return settings


def require_service(settings: Settings) -> Settings:
    """Refuse to serve without the credentials and URLs a serving process needs."""
    return require(settings, tuple(variable for variable, _ in SERVICE_REQUIREMENTS), "a serving process")


_lock = threading.Lock()
_current: Settings | None = None


def get() -> Settings:
    """The process's settings, loaded from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = load()
        return _current


def configure(settings: Settings) -> Settings:
    """Install settings built by an entry point (`bookingflow dev`, the tests) instead of the environment."""
    global _current
    with _lock:
        _current = settings
        return settings

