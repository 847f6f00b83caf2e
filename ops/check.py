"""`bookingflow check`: is this set-up able to take a booking from start to end?

Each check reads, never changes: the settings, the database and its schema, the broker, Stripe's key
and the webhook endpoint that must send to us, Calendly's token, what it may read, the webhook
subscription that must send to us, and each offered session type's event type. The table names what
to do about every FAIL; secrets are never printed (a key is named by its kind and mode only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import stripe

from bookingflow import deliveries
from bookingflow import settings as settings_module
from bookingflow.providers import calendly_client, calendly_subscription, stripe_client
from bookingflow.settings import Settings, SettingsError

OK, WARN, FAIL = "OK", "WARN", "FAIL"
STRIPE_WEBHOOK_PATH = "/webhooks/stripe"  # intake/webhooks.py
STRIPE_EVENTS = tuple(sorted(kind for provider, kind in deliveries.HANDLED if provider == deliveries.STRIPE))
SUBSCRIBE = "run `bookingflow calendly subscribe`"
# A key's kind and mode from its prefix: sk_ secret, rk_ restricted; pk_ is publishable and useless here.
KEY_KINDS = {"sk_test_": ("secret", "test"), "sk_live_": ("secret", "live"),
             "rk_test_": ("restricted", "test"), "rk_live_": ("restricted", "live")}


@dataclass(frozen=True)
class Result:
    check: str
    status: str
    detail: str
    todo: str = ""


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {text[0][:200]}" if text else exc.__class__.__name__


# --- the service's own parts ------------------------------------------------------------------


def check_settings(current: Settings) -> Result:
    from models.bootstrap import checked

    try:
        checked(settings_module.require_service(current))
    except SettingsError as exc:
        return Result("settings", FAIL, str(exc), "set it in the environment (README, Configuration)")
    return Result("settings", OK, "every variable a serving process needs is set and well-formed")


def check_database() -> Iterator[Result]:
    from models import migrations
    from models.db import database

    try:
        database.connect(reuse_if_open=True)
        database.execute_sql("SELECT 1")
    except Exception as exc:
        yield Result("database", FAIL, f"unreachable ({_first_line(exc)})", "check DATABASE_URL and that the server is up")
        return
    yield Result("database", OK, "reachable")
    newest = max(migration.version for migration in migrations.MIGRATIONS)
    missing = sorted({m.version for m in migrations.MIGRATIONS} - migrations.applied_versions())
    if missing:
        yield Result("database schema", FAIL, f"at version {migrations.current_version()} of {newest}; "
                     f"not applied: {', '.join(map(str, missing))}", "run `bookingflow db upgrade`")
    elif migrations.current_version() > newest:
        yield Result("database schema", FAIL, f"at version {migrations.current_version()}, newer than this code's {newest}",
                     "deploy the code that matches the database, or `bookingflow db downgrade`")
    else:
        yield Result("database schema", OK, f"at the newest version, {newest}")


def check_broker(current: Settings) -> Result:
    from urllib.parse import urlsplit

    scheme = urlsplit(current.broker_url).scheme
    if not scheme:
        return Result("broker", FAIL, "BROKER_URL is not set (nor REDIS_URL)", "set BROKER_URL to redis://... or amqp://...")
    if scheme == "stub":
        return Result("broker", OK, "in-process (bookingflow dev and the tests only)")
    try:
        if scheme in ("redis", "rediss"):
            import redis

            redis.Redis.from_url(current.broker_url, socket_connect_timeout=3, socket_timeout=5).ping()
        else:
            import pika

            from bookingflow.broker import rabbitmq_url

            pika.BlockingConnection(pika.URLParameters(rabbitmq_url(current.broker_url))).close()
    except Exception as exc:
        return Result("broker", FAIL, f"unreachable ({_first_line(exc)})", "check BROKER_URL and that the server is up")
    return Result("broker", OK, f"{'Redis' if scheme.startswith('redis') else 'RabbitMQ'} reachable")


# --- Stripe --------------------------------------------------------------------------------------


def check_stripe_key(current: Settings, expected_mode: str | None) -> Iterator[Result]:
    prefix = current.stripe_secret_key[:8]
    if prefix not in KEY_KINDS:
        yield Result("stripe key", FAIL, "STRIPE_SECRET_KEY is not a secret (sk_) or restricted (rk_) key",
                     "use the secret key from the Dashboard's API keys page (never the publishable pk_ one)")
        return
    kind, mode = KEY_KINDS[prefix]
    if expected_mode and mode != expected_mode:
        yield Result("stripe key mode", FAIL, f"a {mode}-mode {kind} key, but {expected_mode} mode was asked for",
                     f"set STRIPE_SECRET_KEY to the {expected_mode}-mode key (and its webhook secret)")
    elif mode == "test":
        yield Result("stripe key mode", WARN, f"a test-mode {kind} key: no real money moves",
                     "fine for staging; `bookingflow check --stripe-mode live` in production")
    else:
        yield Result("stripe key mode", OK, f"a live-mode {kind} key")
    try:
        balance = stripe_client.retrieve_balance()
    except stripe.AuthenticationError:
        yield Result("stripe key", FAIL, "Stripe refuses the key", "set STRIPE_SECRET_KEY to a current key (rolled keys stop working)")
        return
    except stripe.PermissionError:
        if kind == "restricted":  # a restricted key need not read the balance: the endpoint check proves it
            yield Result("stripe key", WARN, "accepted, but may not read the balance",
                         "nothing, if the webhook endpoint check below passes")
        else:
            yield Result("stripe key", FAIL, "Stripe refuses to let the secret key read the balance",
                         "see the Dashboard: the account may be restricted")
        return
    except stripe.StripeError as exc:
        yield Result("stripe key", FAIL, f"Stripe could not be asked ({_first_line(exc)})", "check STRIPE_API_BASE and the network")
        return
    if bool(balance.livemode) != (mode == "live"):
        yield Result("stripe key", FAIL, f"the key looks {mode}-mode but Stripe says livemode={balance.livemode}",
                     "set STRIPE_SECRET_KEY to a key of the intended mode")
    else:
        yield Result("stripe key", OK, "Stripe accepts it (GET /v1/balance)")


def _covers(enabled: list[str], wanted: str) -> bool:
    return "*" in enabled or wanted in enabled


def check_stripe_endpoint(current: Settings) -> Iterator[Result]:
    url = current.webhook_base + STRIPE_WEBHOOK_PATH
    try:
        endpoints = [e for e in stripe_client.list_webhook_endpoints() if e.url == url]
    except stripe.StripeError as exc:
        yield Result("stripe webhook endpoint", FAIL, f"cannot list webhook endpoints ({_first_line(exc)})",
                     "give the key the Webhook Endpoints read permission, or use the secret key")
        return
    create = (f"add an endpoint for {url} in the Dashboard (Developers, Webhooks) with events "
              f"{', '.join(STRIPE_EVENTS)} and API version {stripe_client.API_VERSION}")
    if not endpoints:
        yield Result("stripe webhook endpoint", FAIL, f"no endpoint sends to {url}", create)
        return
    enabled = [e for e in endpoints if e.status == "enabled"]
    if not enabled:
        yield Result("stripe webhook endpoint", FAIL, f"{endpoints[0].id} to {url} is {endpoints[0].status}",
                     "enable it in the Dashboard (Developers, Webhooks)")
        return
    endpoint = max(enabled, key=lambda e: sum(_covers(e.enabled_events, w) for w in STRIPE_EVENTS))
    missing = [w for w in STRIPE_EVENTS if not _covers(endpoint.enabled_events, w)]
    if missing:
        yield Result("stripe webhook endpoint", FAIL, f"{endpoint.id} to {url} lacks {', '.join(missing)}",
                     f"add {', '.join(missing)} to its events in the Dashboard")
    else:
        yield Result("stripe webhook endpoint", OK, f"{endpoint.id} sends {len(STRIPE_EVENTS)} event types to {url}")
    if endpoint.api_version is None:
        yield Result("stripe api version", WARN, f"{endpoint.id} follows the account's default API version",
                     f"pin it: make the endpoint anew with API version {stripe_client.API_VERSION}")
    elif endpoint.api_version != stripe_client.API_VERSION:
        yield Result("stripe api version", FAIL, f"{endpoint.id} sends events in {endpoint.api_version}, "
                     f"this code reads {stripe_client.API_VERSION}",
                     f"make the endpoint anew with API version {stripe_client.API_VERSION} (the version of an "
                     f"endpoint cannot be changed), then delete the old one")
    else:
        yield Result("stripe api version", OK, endpoint.api_version)


# --- Calendly ------------------------------------------------------------------------------------


def _calendly_failure(check: str, exc: calendly_client.CalendlyError, scope: str) -> Result:
    if exc.status in (401, 403):
        return Result(check, FAIL, f"the token may not ({exc})",
                      f"use a token of a user who may ({scope}); an OAuth app needs the scope {scope}")
    return Result(check, FAIL, f"Calendly could not be asked ({exc})", "check CALENDLY_API_BASE and the network")


def check_calendly(current: Settings) -> Iterator[Result]:
    try:
        user = calendly_client.current_user()
    except calendly_client.CalendlyError as exc:
        yield Result("calendly token", FAIL, f"GET /users/me failed ({exc})",
                     "set CALENDLY_API_TOKEN to a current personal access token (Integrations, API and webhooks)")
        return
    yield Result("calendly token", OK, "Calendly accepts it (GET /users/me)")
    organization = user["current_organization"]
    try:
        role = calendly_client.organization_role(user["uri"], organization)
        yield Result("calendly organization role", OK, f"{role}: the subscription's scope is "
                     f"{calendly_subscription.Standing(user['uri'], organization, role).scope}")
    except calendly_client.CalendlyError as exc:
        role = None
        yield _calendly_failure("calendly organization role", exc, "users:read")
    try:
        calendly_client.list_scheduled_events_probe(user["uri"])
        yield Result("calendly scheduled events", OK, "the token may read them")
    except calendly_client.CalendlyError as exc:
        yield _calendly_failure("calendly scheduled events", exc, "scheduled_events:read")
    try:
        calendly_client.cancel_scope_probe()
        yield Result("calendly event cancellation", OK, "the token may cancel events (slots are released)")
    except calendly_client.CalendlyError as exc:
        yield _calendly_failure("calendly event cancellation", exc, "scheduled_events:write")
    yield from check_calendly_subscription(current, calendly_subscription.Standing(user["uri"], organization, role))
    yield from check_event_types()


def check_calendly_subscription(current: Settings, at: calendly_subscription.Standing) -> Iterator[Result]:
    url = calendly_subscription.callback_url(current)
    try:
        found = calendly_subscription.health(at, url)
    except calendly_client.CalendlyError as exc:
        yield _calendly_failure("calendly webhook subscription", exc, "webhooks:read")
        return
    status, todo = (OK, "") if found.problem is None else (FAIL, SUBSCRIBE)
    yield Result("calendly webhook subscription", status, f"{at.scope} scope: {found.describe(url)}", todo)


def check_event_types() -> Iterator[Result]:
    from models.tables import SessionType

    try:
        offered = list(SessionType.select().where(SessionType.active == True).order_by(SessionType.slug))  # noqa: E712
    except Exception as exc:
        yield Result("calendly event types", WARN, f"not checked: the session types could not be read ({_first_line(exc)})",
                     "see the database rows above")
        return
    if not offered:
        yield Result("calendly event types", WARN, "no session type is offered", "`bookingflow session-types import FILE`")
    for session_type in offered:
        name = f"event type of {session_type.slug}"
        try:
            event_type = calendly_client.get_event_type(session_type.calendly_event_type)
        except calendly_client.CalendlyNotFound:
            yield Result(name, FAIL, f"{session_type.calendly_event_type} does not exist in Calendly",
                         f"fix its calendly_event_type and import again, or `bookingflow session-types disable {session_type.slug}`")
            continue
        except calendly_client.CalendlyError as exc:
            yield _calendly_failure(name, exc, "event_types:read")
            continue
        if event_type.get("active"):
            yield Result(name, OK, f"{event_type.get('name')!r} is active")
        else:
            yield Result(name, FAIL, f"{event_type.get('name')!r} is switched off in Calendly: nobody can book it",
                         f"switch it on in Calendly, or `bookingflow session-types disable {session_type.slug}`")


# --- all of it -----------------------------------------------------------------------------------


def run_checks(current: Settings, stripe_mode: str | None = None) -> list[Result]:
    """Every check, in order; the database proxy must be bound to current.database_url."""
    results = [check_settings(current)]
    results += check_database()
    results.append(check_broker(current))
    groups: list[tuple[str, str, Callable[[], Iterator[Result]]]] = [
        ("stripe", current.stripe_secret_key, lambda: _chain(check_stripe_key(current, stripe_mode),
                                                             check_stripe_endpoint(current))),
        ("calendly", current.calendly_api_token, lambda: check_calendly(current)),
    ]
    for provider, credential, checks in groups:
        if not credential or not current.webhook_base:
            results.append(Result(provider, FAIL, "not checked: its credentials or SERVICE_URL (PUBLIC_URL) are not set",
                                  "see the settings row"))
            continue
        results += checks()
    return results


def _chain(*parts: Iterator[Result]) -> Iterator[Result]:
    for part in parts:
        yield from part


def render(results: list[Result]) -> str:
    width = max(len(r.check) for r in results) + 2
    lines = [f"{'check':<{width}}{'status':<8}found", f"{'-' * (width - 2):<{width}}{'------':<8}-----"]
    for result in results:
        lines.append(f"{result.check:<{width}}{result.status:<8}{result.detail}")
        if result.status != OK and result.todo:
            lines.append(f"{'':<{width + 8}}to do: {result.todo}")
    failures, warnings = (sum(r.status == status for r in results) for status in (FAIL, WARN))
    lines += ["", f"{failures} failed, {warnings} warnings" if failures else f"all checks passed ({warnings} warnings)"]
    return "\n".join(lines)


def failed(results: list[Result]) -> bool:
    return any(r.status == FAIL for r in results)
