"""Issue 4 on real processes: the shared per-account rate limit across two Celery workers, and
the sweeper recovering every dirty calendar after the broker lost its messages.

Each test starts its own small stack (settings differ from the shared e2e stack).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import update

from calsync.processes import child_env, settings_vars
from core.settings import Settings, configure
from emulator import EmulatorServer
from models import SyncState
from models.db import session_scope
from models.registry import attach_calendar, create_host
from tests.backends import Backend
from tests.conftest import point_celery_at
from worker import google_client, rate_limit, sync_engine
from worker.enqueue import enqueue_sync

from .conftest import LiveCalendar, Stack, assert_converges, wait_for

pytestmark = pytest.mark.e2e

# The limiter's "minute" compressed (CALSYNC_RATE_WINDOW_SECONDS): the test waits out a
# window of this many seconds instead of a real minute.
RATE_WINDOW = 15
ACCOUNT_RATE = 80  # per window: below the 100 changes, so the limit must hold them back
CALENDARS = 100


@contextmanager
def small_stack(
    base_settings: Settings, logs: Path, *, broker_url: str | None = None, **overrides: int
) -> Iterator[Stack]:
    emulator = EmulatorServer(seed=5).start()
    settings = dataclasses.replace(
        base_settings,
        data_dir=logs / "data",
        broker_url=broker_url or f"sqla+sqlite:///{logs}/data/broker.db",
        public_url="http://127.0.0.1:9",  # no pushes in these tests
        google_api_endpoint=emulator.api_endpoint,
        google_token_uri=emulator.token_uri,
        **overrides,
    )
    configure(settings)
    point_celery_at(settings)
    google_client.forget_services()
    stack = Stack(
        env=child_env(settings_vars(settings)), logs=logs, settings=settings, emulator=emulator
    )
    try:
        yield stack
    finally:
        stack.stop()
        emulator.stop()
        google_client.forget_services()
        configure(base_settings)


def attach_many(stack: Stack, email: str, count: int) -> list[LiveCalendar]:
    """`count` calendars of one Google account, each fully synced once (from this process)."""
    control = stack.emulator.control
    credentials = control.create_account(email)
    with session_scope() as session:
        host, _ = create_host(session, f"host {email}", "UTC")
        host_id = host.id
    attached = []
    for n in range(count):
        google_id = f"cal{n:03d}-{email}"
        control.create_calendar(google_id, time_zone="UTC", owner=email)
        with session_scope() as session:
            calendar, _ = attach_calendar(session, host_id, google_id, credentials)
            attached.append(LiveCalendar(host_id, calendar.id, google_id))
    return attached


def change_each(stack: Stack, calendars: list[LiveCalendar]) -> None:
    day = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    for n, cal in enumerate(calendars):
        start = day + timedelta(days=1 + n % 20, minutes=15 * (n % 4))
        stack.emulator.control.insert_event(
            cal.google_calendar_id,
            {
                "summary": "booked",
                "start": {"dateTime": start.isoformat()},
                "end": {"dateTime": (start + timedelta(minutes=30)).isoformat()},
            },
        )


def max_per_sliding_window(times: list[datetime], seconds: float) -> int:
    times = sorted(times)
    best, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= timedelta(seconds=seconds):
            first += 1
        best = max(best, last - first + 1)
    return best


def test_two_workers_keep_one_account_under_its_rate(
    backend: Backend,
    base_settings: Settings,
    db: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On Redis (CI) the workers share the Redis limiter; embedded, the SQLite-file one.
    broker_url = _own_redis_db(backend.redis_url, 12) if backend.redis_url else None
    if broker_url:
        import redis

        redis.Redis.from_url(broker_url).flushdb()
    with small_stack(
        base_settings,
        tmp_path,
        broker_url=broker_url,
        account_rate_per_minute=ACCOUNT_RATE,
        rate_window_seconds=RATE_WINDOW,
        lease_seconds=120,
    ) as stack:
        calendars = attach_many(stack, "busy@example.com", CALENDARS)
        # The initial syncs run here, outside the budget under test.
        with monkeypatch.context() as patched:
            patched.setattr(rate_limit, "acquire", lambda *a, **k: 0.0)
            for cal in calendars:
                assert sync_engine.sync_calendar(cal.calendar_id, full=True).status == "done"
        _forget_permits(stack.settings)
        change_each(stack, calendars)
        mark = len(stack.emulator.control.requests())
        stack.start_worker(concurrency=2)
        stack.start_worker(concurrency=2)
        started = time.monotonic()
        for cal in calendars:
            enqueue_sync(cal.calendar_id, reason="push", force=True)
        assert_converges(stack, calendars, timeout=240)
        elapsed = time.monotonic() - started
        api_calls = [
            datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
            for r in stack.emulator.control.requests(mark)
            if r["methodId"] != "oauth2.token"
        ]
    assert len(api_calls) >= CALENDARS
    peak = max_per_sliding_window(api_calls, RATE_WINDOW)
    assert peak <= ACCOUNT_RATE, f"{peak} requests in one sliding window of {RATE_WINDOW} s"
    # The limit was really reached (requests waited, none failed), so the check means something.
    assert peak >= ACCOUNT_RATE * 0.9
    assert elapsed >= RATE_WINDOW * 0.9


def _forget_permits(settings: Settings) -> None:
    """Start the measured phase with an empty window."""
    limiter = rate_limit.limiter_for(settings)
    if isinstance(limiter, rate_limit.RedisLimiter):
        for key in limiter._client.scan_iter("calsync:ratelimit:*"):
            limiter._client.delete(key)
    else:
        Path(settings.data_dir / "rate_limit.db").unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(str(settings.data_dir / "rate_limit.db") + suffix).unlink(missing_ok=True)
    rate_limit._limiters.clear()


def _own_redis_db(url: str, db_number: int = 13) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db_number}", parts.query, ""))


def test_sweeper_recovers_every_dirty_calendar_after_the_broker_is_emptied(
    backend: Backend, base_settings: Settings, db: None, tmp_path: Path
) -> None:
    # Services backend (CI); or opt in on the embedded database with CALSYNC_TEST_REDIS_URL.
    redis_url = backend.redis_url or os.environ.get("CALSYNC_TEST_REDIS_URL")
    if redis_url is None:
        pytest.skip("needs Redis as the broker: runs in CI or with CALSYNC_TEST_BACKEND=services")
    import redis

    broker_url = _own_redis_db(redis_url)  # never flush a database others use
    broker = redis.Redis.from_url(broker_url)
    broker.flushdb()
    with small_stack(
        base_settings,
        tmp_path,
        broker_url=broker_url,
        sweep_after_seconds=2,
        safety_net_seconds=3600,
        poll_seconds=3600,  # neither safety net nor polling may mask the sweeper
        lease_seconds=10,
    ) as stack:
        calendars = attach_many(stack, "lost@example.com", 20)
        for cal in calendars:
            assert sync_engine.sync_calendar(cal.calendar_id, full=True).status == "done"
        stack.start_beat()
        change_each(stack, calendars)
        # Notifications arrived (dirty marks) and their tasks were queued ...
        with session_scope() as session:
            session.execute(update(SyncState).values(dirty_since=datetime.now(UTC)))
        for cal in calendars:
            enqueue_sync(cal.calendar_id, reason="push")
        wait_for(lambda: broker.dbsize() > 0, 10, "the queued tasks", stack)
        # ... then Redis restarted empty, before any worker took them.
        broker.flushdb()
        stack.start_worker(concurrency=2)
        assert_converges(stack, calendars, timeout=60)
    broker.flushdb()
