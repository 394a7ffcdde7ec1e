"""Issue 14, item 9, on real processes: a worker's pool process SIGKILLed in the middle of a
sync. Its lease (CALSYNC_LEASE_SECONDS, default 6 s, kept alive by a heartbeat while it
lived) runs out; the redelivered task or the sweeper syncs the calendar again. Measured: from
the kill to the busy table equal to the emulator's answer, over several kills.

The figure goes to bench/RESULTS.md ("Recovery after a killed worker"); the bound asserted
here is generous on purpose (shared, noisy machines)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from core.settings import Settings
from models import SyncState
from models.db import session_scope
from tests.backends import Backend

from .conftest import (
    Stack,
    attach_watched,
    busy_matches,
    running_stack,
    wait_for,
    watching_and_synced,
)

pytestmark = pytest.mark.e2e

KILLS = 3  # each waits out a default lease (6 s); recoveries barely vary (6.0 to 6.1 s)
GOOGLE_LATENCY_MS = 4000  # every Google answer takes this long: the kill lands mid-fetch
RECOVERY_BOUND_SECONDS = 10  # the goal; measured p50 6.0 s, max 6.1 s


@pytest.fixture(scope="module")
def stack(
    backend: Backend, base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(
        backend,
        base_settings,
        tmp_path_factory,
        "e2e-kill-logs",
        worker_concurrency=1,  # one pool process: the one killed holds the sync
        lease_seconds=Settings().lease_seconds,  # the default is what is measured
        sweep_after_seconds=Settings().sweep_after_seconds,
    ) as running:
        yield running


def mid_sync(calendar_id: int) -> bool:
    with session_scope() as session:
        state = session.execute(
            select(SyncState.syncing_since, SyncState.lease_owner, SyncState.lease_until).where(
                SyncState.calendar_id == calendar_id
            )
        ).one()
    return (
        state.syncing_since is not None
        and state.lease_owner not in (None, "backoff")
        and state.lease_until is not None
        and state.lease_until > datetime.now(UTC)
    )


def test_a_killed_worker_is_recovered_from_within_seconds(live: Stack) -> None:
    cal = attach_watched(live, "killed@example.com")
    wait_for(lambda: watching_and_synced([cal.calendar_id]), 30, "the first sync", live)
    worker = live.workers[0]
    control = live.emulator.control
    recoveries: list[float] = []
    day = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0)
    for n in range(KILLS):
        control.set_faults(latency_ms=GOOGLE_LATENCY_MS)
        start = day + timedelta(days=2 + n)
        control.insert_event(
            cal.google_calendar_id,
            {
                "summary": f"booked {n}",
                "start": {"dateTime": start.isoformat()},
                "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
            },
        )
        wait_for(lambda: mid_sync(cal.calendar_id), 30, "a sync in progress", live)
        time.sleep(0.5)  # well inside the 4 s fetch
        pool = worker.children()
        assert pool, "the worker has no pool process"
        killed_at = time.monotonic()
        for pid in pool:
            worker.kill_child(pid)
        control.set_faults(latency_ms=0)
        assert not busy_matches(live, cal), "the change was applied before the kill"
        wait_for(lambda: busy_matches(live, cal), 60, "the busy table after the kill", live)
        recoveries.append(time.monotonic() - killed_at)
        wait_for(
            lambda killed=set(pool): bool(set(worker.children()) - killed),
            30,
            "a replacement pool process",
            live,
        )
    p50, worst = statistics.median(recoveries), max(recoveries)
    print(
        f"\nkill -> busy table right, {KILLS} kills, lease {live.settings.lease_seconds} s: "
        f"p50 {p50:.1f} s, max {worst:.1f} s ({', '.join(f'{r:.1f}' for r in recoveries)})"
    )
    assert worst <= RECOVERY_BOUND_SECONDS * 1.5, recoveries  # generous: noisy shared machines
