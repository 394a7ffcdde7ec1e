"""Issue 14 item 6: `/metrics` behind CALSYNC_METRICS_TOKEN when it is set, and `/readyz`
answering from a one-second cache, so anonymous probes cannot drive database queries."""

from __future__ import annotations

import dataclasses

import pytest

from core.settings import Settings
from webhook import create_app, health, metrics_view


@pytest.fixture(autouse=True)
def fresh_readiness():
    health.forget_readiness()
    yield
    health.forget_readiness()


def test_metrics_need_the_metrics_token_when_it_is_set(
    settings: Settings, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    scraped: list[int] = []
    real = metrics_view.scrape_registry
    monkeypatch.setattr(metrics_view, "scrape_registry", lambda s: scraped.append(1) or real(s))
    client = create_app(dataclasses.replace(settings, metrics_token="m-secret")).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "m-secret"}):
        answer = client.get("/metrics", headers=headers)
        assert answer.status_code == 401
        assert answer.get_json()["error"]["code"] == "unauthorized"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    admin = {"Authorization": f"Bearer {settings.admin_token}"}
    assert client.get("/metrics", headers=admin).status_code == 401  # its own token only
    assert scraped == []  # refused before any query
    answer = client.get("/metrics", headers={"Authorization": "Bearer m-secret"})
    assert answer.status_code == 200 and "calsync_metrics_database_up" in answer.text
    # Unset: open, as before (protect it at the network level).
    assert create_app(settings).test_client().get("/metrics").status_code == 200


def test_metrics_token_is_read_from_the_environment() -> None:
    assert Settings.from_env({"CALSYNC_METRICS_TOKEN": "m"}).metrics_token == "m"
    assert Settings.from_env({}).metrics_token is None


def test_readyz_checks_at_most_once_a_second(
    settings: Settings, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[str] = []
    monkeypatch.setattr(health, "check_database", lambda url: checks.append("db"))
    monkeypatch.setattr(health, "check_broker", lambda url: checks.append("broker"))
    now = [1000.0]
    monkeypatch.setattr(health, "_monotonic", lambda: now[0])
    client = create_app(settings).test_client()
    for _ in range(20):
        assert client.get("/readyz").status_code == 200
    assert checks == ["db", "broker"]
    now[0] += 0.99
    assert client.get("/readyz").status_code == 200
    assert checks == ["db", "broker"]
    now[0] += 0.02
    assert client.get("/readyz").status_code == 200
    assert checks == ["db", "broker"] * 2
