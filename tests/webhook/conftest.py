"""Fixtures for the web app: an app on the suite's database, a watched calendar committed
where the app can see it, a stand-in for the broker, a database snapshot to prove that
rejected requests change nothing, and the push intake's parts (PostgreSQL + Redis only)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import redis
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.settings import Settings
from intake.drainer import IntakeDrainer
from intake.forwarder import SpoolForwarder
from intake.runtime import close_runtimes, intake_runtime
from models import Base, SyncState
from models.db import get_engine, session_scope
from tests.backends import Backend
from tests.factories import make_account, make_calendar, make_channel, make_host
from worker import enqueue as task_queue

Snapshot = dict[str, list[tuple]]


@dataclass
class Watched:
    calendar_id: int
    channel_id: str
    token: str
    resource_id: str | None


def watch_calendar(session: Session, *, resource_id: str | None = "resource-1", **channel_kw):
    host = make_host(session)
    account = make_account(session, host)
    calendar = make_calendar(session, host, account)
    channel = make_channel(session, calendar, resource_id=resource_id, **channel_kw)
    session.commit()
    return Watched(calendar.id, channel.id, channel.plain_token, channel.resource_id)


@pytest.fixture
def watched(session: Session) -> Watched:
    return watch_calendar(session)


def push_headers(
    watched: Watched, state: str = "exists", number: int | str = 2, **overrides: str | None
) -> dict[str, str]:
    """Headers as Google sends them; an override of None leaves that header out."""
    headers: dict[str, str | None] = {
        "X-Goog-Channel-ID": watched.channel_id,
        "X-Goog-Channel-Token": watched.token,
        "X-Goog-Resource-ID": watched.resource_id or "resource-1",
        "X-Goog-Resource-State": state,
        "X-Goog-Message-Number": str(number),
        "X-Goog-Resource-URI": "https://www.googleapis.com/calendar/v3/calendars/x/events",
    }
    headers.update({name.replace("_", "-"): value for name, value in overrides.items()})
    return {name: value for name, value in headers.items() if value is not None}


@dataclass
class FakeQueue:
    """Stands in for the broker: records enqueue_sync calls; `fail` makes it refuse."""

    calls: list[tuple[int, str]] = field(default_factory=list)
    fail: bool = False
    on_enqueue: Callable[[int], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enqueue_sync(self, calendar_id: int, *, reason: str, **_kw: object) -> None:
        if self.on_enqueue is not None:
            self.on_enqueue(calendar_id)
        if self.fail:
            raise task_queue.EnqueueError("broker unavailable: test")
        with self.lock:
            self.calls.append((calendar_id, reason))


@pytest.fixture
def fake_queue(monkeypatch: pytest.MonkeyPatch) -> FakeQueue:
    queue = FakeQueue()
    monkeypatch.setattr(task_queue, "enqueue_sync", queue.enqueue_sync)
    return queue


def take_snapshot(database_url: str) -> Snapshot:
    """Every row of every table, through a fresh connection (what other processes see)."""
    with get_engine(database_url).connect() as conn:
        return {
            table.name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
            for table in Base.metadata.sorted_tables
        }


@pytest.fixture
def snapshot(settings: Settings) -> Callable[[], Snapshot]:
    return lambda: take_snapshot(settings.database_url)


@pytest.fixture
def fresh_session(settings: Settings) -> Iterator[Callable[[], Session]]:
    """Sessions that read committed state, closed at the end of the test."""
    from models.db import session_factory

    opened: list[Session] = []

    def open_session() -> Session:
        s = session_factory(settings.database_url)()
        opened.append(s)
        return s

    yield open_session
    for s in opened:
        s.close()


# --- the push intake (PostgreSQL + Redis) ---------------------------------------------

INTAKE_REDIS_DB = 14  # the intake tests' own database (the e2e stacks use 1-13)


@pytest.fixture
def intake_settings(backend: Backend, settings: Settings) -> Settings:
    if backend.redis_url is None or not settings.database_url.startswith("postgresql"):
        pytest.skip("needs PostgreSQL and Redis: runs in CI or with CALSYNC_TEST_BACKEND=services")
    broker_url = backend.redis_url.rsplit("/", 1)[0] + f"/{INTAKE_REDIS_DB}"
    return dataclasses.replace(settings, broker_url=broker_url, push_intake="redis")


@pytest.fixture
def broker(intake_settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(intake_settings.broker_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def forwarder(intake_settings: Settings, broker: redis.Redis) -> Iterator[SpoolForwarder]:
    """This process's spool forwarder (its thread also runs, as in a web process)."""
    yield intake_runtime(intake_settings).forwarder
    close_runtimes()


class Enqueued(list):
    """The drainer's enqueue, recorded: one list of calendar ids per call."""

    def __call__(self, calendar_ids: list[int]) -> None:
        self.append(list(calendar_ids))


@pytest.fixture
def make_drainer(
    intake_settings: Settings, broker: redis.Redis, forwarder: SpoolForwarder
) -> Iterator[Callable[..., tuple[IntakeDrainer, Enqueued]]]:
    made: list[IntakeDrainer] = []

    def make(database_url: str | None = None) -> tuple[IntakeDrainer, Enqueued]:
        enqueued = Enqueued()
        drainer = IntakeDrainer(
            intake_settings.broker_url,
            database_url or intake_settings.database_url,
            enqueue=enqueued,
            channel_write_seconds=0,
        )
        drain_once = drainer.drain_once

        def forward_then_drain() -> bool:
            forwarder.forward_once()  # what the forwarder's thread does within milliseconds
            return drain_once()

        drainer.drain_once = forward_then_drain  # type: ignore[method-assign]
        made.append(drainer)
        return drainer, enqueued

    yield make
    for drainer in made:
        drainer.stop()


@pytest.fixture
def drainer(make_drainer) -> tuple[IntakeDrainer, Enqueued]:
    drainer, enqueued = make_drainer()
    # The first round finds no epoch (a fresh Redis) and marks every watched calendar dirty;
    # start each test from clean marks.
    assert drainer.drain_once() and drainer.recoveries == 1
    with session_scope() as session:
        session.execute(update(SyncState).values(dirty_since=None))
    enqueued.clear()
    return drainer, enqueued
