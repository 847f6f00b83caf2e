"""Who may read web's /metrics, through HTTP: only a scraper holding METRICS_TOKEN; without a token
configured the route is not there at all. (The worker's exporter, on loopback and a port of its own,
is checked on the Procfile's processes in tests/scenarios/test_end_to_end.py.)"""

from __future__ import annotations

import secrets

import pytest

pytestmark = pytest.mark.abuse

TOKEN = secrets.token_urlsafe(32)


def test_without_a_token_configured_metrics_are_not_served_at_all(client):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
    assert response.get_json() == client.get("/no-such-route").get_json()  # nothing tells it apart


def test_the_scraper_with_the_token_reads_the_metrics(app_with, session_type):
    client = app_with(metrics_token=TOKEN)
    client.get("/v1/session-types")

    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert 'bookingflow_http_requests_total{method="GET",route="/v1/session-types",status="200"}' in response.text


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x",
    f"Bearer {TOKEN.upper()}", "Bearer " + "A" * len(TOKEN), f"Bearer\t{TOKEN}x",
], ids=["absent", "empty", "scheme-only", "scheme-blank", "basic", "truncated", "extended", "case-changed",
        "same-length", "tab"])
def test_anyone_else_gets_a_401_in_the_error_shape_and_no_metric(app_with, authorization):
    client = app_with(metrics_token=TOKEN)
    headers = {} if authorization is None else {"Authorization": authorization}

    response = client.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert set(response.get_json()) == {"error"}
    assert set(response.get_json()["error"]) == {"code", "message"}
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "bookingflow_" not in response.text and TOKEN not in response.text


def test_the_bearer_scheme_is_case_insensitive_as_http_says(app_with):
    client = app_with(metrics_token=TOKEN)

    assert client.get("/metrics", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200
