"""Fixtures for the web app: an app on the suite's database, a watched calendar committed
where the app can see it, a stand-in for the broker, and a database snapshot to prove that
rejected requests change nothing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from calsync.settings import Settings
from models import Base
from models.db import get_engine
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
    return Watched(calendar.id, channel.id, channel.token, channel.resource_id)


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
