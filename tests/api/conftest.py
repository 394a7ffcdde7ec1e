"""Fixtures for the /v1 API: the app on the suite's database, a recorder standing in for the
broker, and two hosts (A and B), each with a synced calendar, stored events and a manual
block, committed where the app sees them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from core.settings import Settings
from models import BusyBlock, CalendarEvent, ManualBlock, SyncState
from models.registry import create_host
from tests.conftest import TEST_ADMIN_TOKEN
from tests.factories import make_account, make_calendar, make_channel
from tests.support.http_server import serving
from tests.webhook.conftest import Snapshot, take_snapshot
from worker import enqueue as task_queue

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class TaskRecorder:
    """Stands in for the broker: records what the API enqueues; `fail` makes it refuse."""

    calls: list[tuple] = field(default_factory=list)
    fail: bool = False

    def _record(self, *call: object) -> None:
        if self.fail:
            raise task_queue.EnqueueError("broker unavailable: test")
        self.calls.append(call)


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> TaskRecorder:
    recorder = TaskRecorder()
    monkeypatch.setattr(
        task_queue,
        "enqueue_sync",
        lambda cal, *, reason, full=False, force=False: recorder._record("sync", cal, full),
    )
    monkeypatch.setattr(task_queue, "enqueue_watch", lambda cal: recorder._record("watch", cal))
    monkeypatch.setattr(
        task_queue,
        "enqueue_stop_channels",
        lambda account, channels, **_sealed: recorder._record("stop", account, channels),
    )
    return recorder


@dataclass
class SeededHost:
    id: int
    token: str
    calendar_id: int
    block_id: int
    busy_event_id: str
    declined_event_id: str
    headers: dict[str, str]


# A fixed future hour every seeded host is busy in (a synced event) or has a declined one.
def seeded_hour() -> datetime:
    return (datetime.now(UTC) + timedelta(days=2)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )


def seed_host(session: Session, name: str, *, synced: bool = True) -> SeededHost:
    """A host with one calendar (watched, synced just now), a busy event at the seeded hour,
    a declined event an hour later, and a manual block two hours later."""
    host, token = create_host(session, name, "Europe/Berlin")
    account = make_account(session, host)
    calendar = make_calendar(session, host, account, google_calendar_id=f"{name}@example.com")
    now = datetime.now(UTC)
    make_channel(session, calendar, expiration=now + timedelta(days=5))
    if synced:
        state = session.get(SyncState, calendar.id)
        assert state is not None
        state.last_success_at = now
        state.sync_token = "token-1"
    start = seeded_hour()
    events = [
        ("busy-1", start, start + timedelta(hours=1), None, "busy"),
        (
            "declined-1",
            start + timedelta(hours=1),
            start + timedelta(hours=2),
            "declined",
            "declined",
        ),
    ]
    for event_id, event_start, event_end, response, decision in events:
        session.add(
            CalendarEvent(
                calendar_id=calendar.id,
                google_event_id=event_id,
                start=event_start,
                end=event_end,
                all_day=False,
                status="confirmed",
                transparency="opaque",
                event_type="default",
                response_status=response,
                summary=f"{event_id} meeting",
                decision=decision,
            )
        )
        if decision == "busy":
            session.add(
                BusyBlock(
                    calendar_id=calendar.id, event_key=event_id, start=event_start, end=event_end
                )
            )
    block = ManualBlock(
        host_id=host.id,
        start=start + timedelta(hours=2),
        end=start + timedelta(hours=2, minutes=30),
        note="dentist",
    )
    session.add(block)
    session.flush()
    return SeededHost(host.id, token, calendar.id, block.id, "busy-1", "declined-1", bearer(token))


@dataclass
class TwoHosts:
    a: SeededHost
    b: SeededHost


@pytest.fixture
def hosts(session: Session) -> TwoHosts:
    pair = TwoHosts(seed_host(session, "alice"), seed_host(session, "bob"))
    session.commit()
    return pair


@pytest.fixture
def snapshot(settings: Settings) -> Callable[[], Snapshot]:
    return lambda: take_snapshot(settings.database_url)


@pytest.fixture
def server(app) -> Iterator[str]:
    """The app on a real werkzeug server (for client libraries that speak HTTP themselves)."""
    with serving(app) as url:
        yield url
