"""/healthz answers without I/O; /readyz answers 200 only when the database and the broker
both answer, and otherwise 503 naming what is down (without leaking URLs)."""

from __future__ import annotations

import dataclasses
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from core.settings import Settings
from webhook import create_app, health

UNREACHABLE_DATABASE = "postgresql+psycopg://calsync:hunter2@127.0.0.1:1/calsync?connect_timeout=2"
UNREACHABLE_REDIS = "redis://:hunter2@127.0.0.1:1/0"


def client_for(settings: Settings, **changes: str) -> FlaskClient:
    return create_app(dataclasses.replace(settings, **changes)).test_client()


def test_healthz_is_ok(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_healthz_does_no_io(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_io(*_args, **_kw):
        raise AssertionError("healthz must not touch the database or broker")

    monkeypatch.setattr(health, "check_database", no_io)
    monkeypatch.setattr(health, "check_broker", no_io)
    monkeypatch.setattr(health, "get_engine", no_io)
    client = client_for(settings, database_url=UNREACHABLE_DATABASE, broker_url=UNREACHABLE_REDIS)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_ok_when_database_and_broker_answer(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def _assert_not_ready(response, down: str, up: str) -> None:
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"]["code"] == "not_ready"
    assert down in body["error"]["message"] and up not in body["error"]["message"]
    assert body["checks"][down].startswith("unreachable")
    assert body["checks"][up] == "ok"
    assert "hunter2" not in response.get_data(as_text=True)


def test_readyz_is_503_naming_the_database_when_it_is_down(settings: Settings, db) -> None:
    response = client_for(settings, database_url=UNREACHABLE_DATABASE).get("/readyz")
    _assert_not_ready(response, down="database", up="broker")


def test_readyz_is_503_naming_the_redis_broker_when_it_is_down(settings: Settings, db) -> None:
    started = time.monotonic()
    response = client_for(settings, broker_url=UNREACHABLE_REDIS).get("/readyz")
    _assert_not_ready(response, down="broker", up="database")
    assert time.monotonic() - started < 5


def test_readyz_is_503_when_the_embedded_broker_directory_is_missing(
    settings: Settings, db, tmp_path: Path
) -> None:
    broker_url = f"sqla+sqlite:///{tmp_path / 'missing' / 'broker.db'}"
    client = client_for(settings, broker_url=broker_url)  # the app makes it, private, at start
    shutil.rmtree(tmp_path / "missing")  # ... and it is gone later
    response = client.get("/readyz")
    _assert_not_ready(response, down="broker", up="database")


def test_embedded_broker_check_opens_an_existing_file(tmp_path: Path) -> None:
    broker_file = tmp_path / "broker.db"
    assert health.check_broker(f"sqla+sqlite:///{broker_file}") is None  # not created yet
    sqlite3.connect(broker_file).close()
    assert health.check_broker(f"sqla+sqlite:///{broker_file}") is None
    broker_file.unlink()
    broker_file.mkdir()  # something that is not a database file
    assert health.check_broker(f"sqla+sqlite:///{broker_file}") is not None


def test_memory_broker_is_always_ready() -> None:
    assert health.check_broker("memory://") is None


@pytest.fixture(autouse=True)
def _fresh_readiness():
    # /readyz answers from a one-second cache; each test here sees its own checks.
    health.forget_readiness()
    yield
    health.forget_readiness()
