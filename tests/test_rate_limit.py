"""The per-address rate limit on the client API, through HTTP: `/v1/...` only, 429 with `Retry-After`
and the API's error body, per client address (X-Forwarded-For only through trusted proxies), failing
open when its store is down, and holding across intakes that share Redis.

Each test builds the app it needs (the suite's own runs with the limit off). On the suite's Redis the
counters outlive a test, so every test asks from addresses of its own.
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import logging
import secrets

import pytest
import requests
import schemathesis

from support.services import redis_problem, require_service
from intake.openapi import DOCUMENT
from models.tables import Booking

CLIENT = "/v1/session-types"

# 198.18.0.0/15 and 2001:db8::/32 are reserved for tests; a random start per run keeps a run's
# counters in Redis apart from an earlier run's.
_IPV4 = itertools.count(int(ipaddress.IPv4Address("198.18.0.0")) + secrets.randbelow(2 ** 16))
_IPV6 = itertools.count(int(ipaddress.IPv6Address("2001:db8::")) + (secrets.randbelow(2 ** 31) << 64), 1 << 64)


def an_address() -> str:
    return str(ipaddress.IPv4Address(next(_IPV4)))


def an_ipv6_network() -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network((next(_IPV6), 64))


def get(client, path: str = CLIENT, address: str | None = None, **headers):
    return client.get(path, headers=headers, environ_base={"REMOTE_ADDR": address or "127.0.0.1"})


def test_over_the_limit_the_client_api_answers_429_with_retry_after(app_with, session_type):
    client, address = app_with(client_rate_limit="3/hour"), an_address()

    assert [get(client, address=address).status_code for _ in range(3)] == [200, 200, 200]
    refused = get(client, address=address)

    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600


def test_a_refused_request_changes_nothing(app_with, session_type):
    client, address = app_with(client_rate_limit="1/hour"), an_address()
    new_booking = {"session_type": "coaching-hour", "email": "ada@example.com", "name": "Ada Lovelace"}

    def create():
        return client.post("/v1/bookings", json=new_booking, environ_base={"REMOTE_ADDR": address})

    assert create().status_code == 201
    assert create().status_code == 429
    assert Booking.select().count() == 1


def test_the_429_is_as_the_document_says(app_with, session_type):
    schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT))
    client, address = app_with(client_rate_limit="1/hour"), an_address()
    get(client, address=address)

    refused = get(client, address=address)

    assert refused.status_code == 429
    schema[CLIENT]["GET"].Case().validate_response(refused)


def test_each_address_has_a_limit_of_its_own(app_with, session_type):
    client, first, second = app_with(client_rate_limit="1/hour"), an_address(), an_address()

    assert get(client, address=first).status_code == 200
    assert get(client, address=first).status_code == 429
    assert get(client, address=second).status_code == 200


def test_every_limit_of_several_holds(app_with, session_type):
    client, address = app_with(client_rate_limit="10/hour;3/day"), an_address()

    answers = [get(client, address=address).status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
def test_the_operations_endpoints_are_never_limited(app_with, path):
    token = secrets.token_urlsafe(24)
    client, address = app_with(client_rate_limit="1/hour", metrics_token=token), an_address()
    get(client, address=address)

    answers = [get(client, path, address, Authorization=f"Bearer {token}").status_code for _ in range(3)]
    assert answers == [200, 200, 200]


@pytest.mark.parametrize("path", ["/webhooks/stripe", "/webhooks/calendly"])
def test_the_webhooks_are_never_limited(app_with, path):
    client, address = app_with(client_rate_limit="1/hour"), an_address()
    get(client, address=address)

    answers = [client.post(path, data=b"{}", environ_base={"REMOTE_ADDR": address}).status_code for _ in range(3)]

    assert answers == [400, 400, 400]  # unsigned: refused for that, not for the rate


def test_x_forwarded_for_is_ignored_without_trusted_proxies(app_with, session_type):
    client, address = app_with(client_rate_limit="1/hour"), an_address()

    assert get(client, address=address, **{"X-Forwarded-For": an_address()}).status_code == 200
    assert get(client, address=address, **{"X-Forwarded-For": an_address()}).status_code == 429


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(app_with, session_type):
    client, proxy = app_with(client_rate_limit="1/hour", trusted_proxy_count=1), an_address()
    first, second = an_address(), an_address()

    assert get(client, address=proxy, **{"X-Forwarded-For": first}).status_code == 200
    assert get(client, address=proxy, **{"X-Forwarded-For": first}).status_code == 429
    assert get(client, address=proxy, **{"X-Forwarded-For": second}).status_code == 200


def test_addresses_a_client_prepends_before_the_trusted_proxies_are_ignored(app_with, session_type):
    client, proxy, real = app_with(client_rate_limit="1/hour", trusted_proxy_count=1), an_address(), an_address()

    assert get(client, address=proxy, **{"X-Forwarded-For": f"{an_address()}, {real}"}).status_code == 200
    assert get(client, address=proxy, **{"X-Forwarded-For": f"{an_address()}, {real}"}).status_code == 429


def test_ipv6_clients_are_counted_by_their_64(app_with, session_type):
    client, network, other = app_with(client_rate_limit="1/hour"), an_ipv6_network(), an_ipv6_network()

    assert get(client, address=str(network[1])).status_code == 200
    assert get(client, address=str(network[0xbeef])).status_code == 429
    assert get(client, address=str(other[1])).status_code == 200


def test_an_unreachable_store_serves_the_client_api_and_warns_once(app_with, session_type, caplog):
    from support.realstack import free_port

    client = app_with(client_rate_limit="1/hour", rate_limit_storage_url=f"redis://127.0.0.1:{free_port()}/0")
    address = an_address()

    with caplog.at_level(logging.WARNING, logger="intake.ratelimit"):
        answers = [get(client, address=address).status_code for _ in range(20)]

    assert answers == [200] * 20
    warnings = [record for record in caplog.records if record.name == "intake.ratelimit"]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()


def test_the_limit_holds_across_intakes_sharing_redis(app_with, session_type):
    from support.realstack import REDIS_URL

    require_service("Redis", redis_problem(REDIS_URL))
    one, other = (app_with(client_rate_limit="3/hour", rate_limit_storage_url=REDIS_URL) for _ in range(2))
    address = an_address()

    answers = [get(intake, address=address).status_code for intake in (one, other, one, other)]

    assert answers == [200, 200, 200, 429]


# --- on real processes ------------------------------------------------------------------------------

@pytest.mark.e2e
def test_two_intakes_on_real_processes_share_one_limit(tmp_path):
    from support.realstack import RealStack, running_service

    with running_service(tmp_path, extra_env={"CLIENT_RATE_LIMIT": "6/hour"}) as stack:
        # A second instance of `web` with the same environment, as behind a load balancer; a port of
        # its own rather than honcho's port + 1, which another socket on the machine may hold.
        other = RealStack(stack.env, tmp_path / "other.log", processes=("web",))
        try:
            other.wait_ready("/readyz")
            intakes = [stack.base, other.base]
            served = [requests.get(intakes[n % 2] + CLIENT, timeout=10).status_code for n in range(6)]
            refused = [requests.get(base + CLIENT, timeout=10) for base in intakes]
        except (AssertionError, requests.RequestException) as failure:
            raise AssertionError(f"{failure}\n--- stack log ---\n{stack.log()}\n--- other ---\n{other.log()}") from None
        finally:
            other.stop()

    assert served == [200] * 6
    assert [answer.status_code for answer in refused] == [429, 429]
    assert all(int(answer.headers["Retry-After"]) >= 1 for answer in refused)
    assert all(answer.json()["error"]["code"] == "rate_limited" for answer in refused)
