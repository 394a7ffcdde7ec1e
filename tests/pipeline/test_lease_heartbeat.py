"""Issue 14, item 9: a short lease kept alive by a heartbeat while the sync runs.

A sync slower than its lease keeps the calendar (no second worker can take it and commit);
a worker that stops beating (killed) frees it within one lease; a worker that lost its lease
commits nothing."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta

from core.settings import Settings, configure
from models import SyncState
from models.db import session_scope
from models.sync_flags import claim, forgotten_dirty
from worker import sync_engine
from worker.lease_heartbeat import LeaseHeartbeat
from worker.sync_engine import sync_calendar

from .conftest import Attached

LEASE = 1  # second; the emulator answers each request after 2.5 leases


def _short_lease(settings: Settings) -> Settings:
    short = dataclasses.replace(settings, lease_seconds=LEASE)
    configure(short)
    return short


def test_a_sync_slower_than_its_lease_keeps_the_calendar(
    emulator, attached: Attached, google_settings: Settings
) -> None:
    settings = _short_lease(google_settings)
    assert sync_calendar(attached.calendar_id, full=True, settings=settings).status == "done"
    emulator.control.set_faults(latency_ms=LEASE * 2500)
    result: dict[str, str] = {}
    syncing = threading.Thread(
        target=lambda: result.update(
            status=sync_calendar(attached.calendar_id, force=True, settings=settings).status
        )
    )
    syncing.start()
    try:
        time.sleep(LEASE * 1.8)  # the first lease ran out long ago; only beats keep it
        with session_scope() as session:
            second = claim(
                session,
                attached.calendar_id,
                "other-worker",
                datetime.now(UTC),
                LEASE,
                require_dirty=False,
            )
        assert second is None, "a second worker took a calendar whose sync is still running"
    finally:
        syncing.join(30)
    assert result["status"] == "done"


def test_a_dead_holder_frees_the_calendar_within_one_lease(
    emulator, attached: Attached, google_settings: Settings
) -> None:
    settings = _short_lease(google_settings)
    with session_scope() as session:
        session.get(SyncState, attached.calendar_id).dirty_since = datetime.now(UTC)
    with session_scope() as session:
        taken = claim(
            session,
            attached.calendar_id,
            "killed-worker",
            datetime.now(UTC),
            LEASE,
            require_dirty=False,
        )
        assert taken is not None
    # The killed worker beats no more: after one lease the sweeper finds its calendar.
    time.sleep(LEASE + 0.2)
    with session_scope() as session:
        assert attached.calendar_id in forgotten_dirty(session, datetime.now(UTC), 3600)
    assert sync_calendar(attached.calendar_id, settings=settings).status == "done"


def test_a_worker_that_lost_its_lease_commits_nothing(
    emulator, attached: Attached, google_settings: Settings, monkeypatch
) -> None:
    settings = _short_lease(google_settings)
    assert sync_calendar(attached.calendar_id, full=True, settings=settings).status == "done"
    with session_scope() as session:
        token_before = session.get(SyncState, attached.calendar_id).sync_token

    # The heartbeat stalls (a frozen process), the lease runs out, another worker takes it.
    monkeypatch.setattr(LeaseHeartbeat, "_run", lambda self: None)
    real_fetch = sync_engine._fetch

    def fetch_then_lose(*args, **kwargs):
        pages = list(real_fetch(*args, **kwargs))
        time.sleep(LEASE + 0.2)
        with session_scope() as session:
            assert claim(
                session,
                attached.calendar_id,
                "other-worker",
                datetime.now(UTC),
                60,
                require_dirty=False,
            )
        return iter(pages)

    monkeypatch.setattr(sync_engine, "_fetch", fetch_then_lose)
    result = sync_calendar(attached.calendar_id, force=True, settings=settings)
    assert result.detail == "lease lost"
    with session_scope() as session:
        state = session.get(SyncState, attached.calendar_id)
        assert state.lease_owner == "other-worker"
        assert state.sync_token == token_before


def test_the_heartbeat_renews_about_four_times_per_lease(
    emulator, attached: Attached, google_settings: Settings
) -> None:
    with session_scope() as session:
        assert claim(session, attached.calendar_id, "me", datetime.now(UTC), 2, require_dirty=False)
    with LeaseHeartbeat(attached.calendar_id, "me", 2, lambda: datetime.now(UTC)) as beat:
        time.sleep(2.2)
    assert 3 <= beat.beats <= 5
    assert not beat.lost
    with session_scope() as session:
        until = session.get(SyncState, attached.calendar_id).lease_until
    assert until > datetime.now(UTC) + timedelta(seconds=0.5)
