"""Fixtures for sync-engine tests: the emulator in a thread, settings pointing at it, and a
host with one attached calendar."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from core.settings import Settings, configure
from emulator import EmulatorServer
from models.db import session_scope
from models.registry import attach_calendar, create_host
from worker import google_client


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    server = EmulatorServer(seed=1).start()
    yield server
    server.stop()


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> Iterator[EmulatorServer]:
    emulator_server.control.reset(seed=1)
    yield emulator_server
    emulator_server.control.reset(seed=1)


@pytest.fixture
def google_settings(settings: Settings, emulator: EmulatorServer, db: None) -> Iterator[Settings]:
    configured = dataclasses.replace(
        settings,
        google_api_endpoint=emulator.api_endpoint,
        google_token_uri=emulator.token_uri,
        lease_seconds=30,
    )
    configure(configured)
    google_client.forget_services()
    yield configured
    google_client.forget_services()
    configure(settings)


@dataclass
class Attached:
    host_id: int
    calendar_id: int
    google_calendar_id: str
    credentials: dict


def attach(emulator: EmulatorServer, email: str, time_zone: str = "Europe/Berlin") -> Attached:
    control = emulator.control
    credentials = control.create_account(email)
    control.create_calendar(email, time_zone=time_zone, owner=email)
    with session_scope() as session:
        host, _token = create_host(session, f"host {email}", time_zone)
        calendar, _ = attach_calendar(session, host.id, email, credentials)
        return Attached(host.id, calendar.id, email, credentials)


@pytest.fixture
def attached(google_settings: Settings, emulator: EmulatorServer) -> Attached:
    return attach(emulator, "host@example.com")


def window(days: int = 60) -> tuple[datetime, datetime]:
    start = datetime.now(UTC).replace(microsecond=0)
    return start, start + timedelta(days=days)
