"""End-to-end stack: the emulator (in this process, pushing real HTTP notifications), the web
app under gunicorn, and real Celery workers, on the suite's database and broker."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from calsync.processes import ProcessStack, child_env, free_port, settings_vars
from core.settings import Settings, configure, get_settings
from emulator import EmulatorServer
from intake.redis_intake import intake_holds_notifications
from models import Channel, SyncState
from models.busy_queries import calendar_busy
from models.db import session_scope
from models.registry import attach_calendar, create_host
from tests.backends import Backend
from tests.conftest import isolated_settings, point_celery_at
from worker.enqueue import enqueue_sync, enqueue_watch

pytestmark = pytest.mark.e2e

LEASE_SECONDS = 5


@dataclass(kw_only=True)
class Stack(ProcessStack):
    """calsync's processes (see ProcessStack) with the in-process emulator they call."""

    settings: Settings
    emulator: EmulatorServer


@contextmanager
def running_stack(
    backend: Backend,
    base_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    logs_name: str,
    worker_concurrency: int | None = None,
    **overrides: Any,
) -> Iterator[Stack]:
    """web + worker + beat on the suite's backend (its own broker and data dir), calling the
    in-process emulator; `overrides` are settings of the test module."""
    emulator = EmulatorServer(seed=3).start()
    web_port = free_port()
    settings = dataclasses.replace(
        isolated_settings(base_settings, backend, tmp_path_factory),
        public_url=f"http://127.0.0.1:{web_port}",
        google_api_endpoint=emulator.api_endpoint,
        google_token_uri=emulator.token_uri,
        **overrides,
    )
    configure(settings)
    point_celery_at(settings)
    stack = Stack(
        env=child_env(settings_vars(settings)),
        logs=tmp_path_factory.mktemp(logs_name),
        web_port=web_port,
        settings=settings,
        emulator=emulator,
    )
    try:
        stack.start_web()
        if worker_concurrency is None:
            stack.start_worker()
        else:
            stack.start_worker(concurrency=worker_concurrency)
        stack.start_outbound()
        stack.start_beat()
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()
        emulator.stop()
        configure(None)


@pytest.fixture(scope="module")
def stack(
    backend: Backend, base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(
        backend,
        base_settings,
        tmp_path_factory,
        "e2e-logs",
        lease_seconds=LEASE_SECONDS,
        sweep_after_seconds=3,
        push_intake="auto",  # the production default: the Redis intake on PG + Redis
    ) as running:
        yield running


@pytest.fixture
def live(stack: Stack, db: None) -> Iterator[Stack]:
    """The running stack with an empty database and a reset emulator for this test."""
    configure(stack.settings)
    point_celery_at(stack.settings)
    stack.emulator.control.reset(seed=3)
    yield stack
    # Settle while the emulator still knows the test's calendars: a late (delayed or
    # duplicated) notification after the reset would fetch a calendar Google no longer has.
    wait_idle(timeout=30)
    stack.emulator.control.reset(seed=3)


@dataclass
class LiveCalendar:
    host_id: int
    calendar_id: int
    google_calendar_id: str


def attach_watched(stack: Stack, email: str, time_zone: str = "Europe/Berlin") -> LiveCalendar:
    control = stack.emulator.control
    credentials = control.create_account(email)
    control.create_calendar(email, time_zone=time_zone, owner=email)
    with session_scope() as session:
        host, _ = create_host(session, f"host {email}", time_zone)
        calendar, _ = attach_calendar(session, host.id, email, credentials)
        cal = LiveCalendar(host.id, calendar.id, email)
    enqueue_sync(cal.calendar_id, reason="attach", full=True)
    enqueue_watch(cal.calendar_id)
    return cal


def wait_for(condition: Callable[[], bool], timeout: float, what: str, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{stack.logs_tail()}")
        time.sleep(0.1)


def watching_and_synced(calendar_ids: list[int]) -> bool:
    with session_scope() as session:
        synced = session.scalar(
            select(func.count())
            .select_from(SyncState)
            .where(SyncState.calendar_id.in_(calendar_ids), SyncState.last_success_at.is_not(None))
        )
        watched = session.scalar(
            select(func.count(func.distinct(Channel.calendar_id))).where(
                Channel.calendar_id.in_(calendar_ids), Channel.resource_id.is_not(None)
            )
        )
    return synced == len(calendar_ids) and watched == len(calendar_ids)


def wait_idle(timeout: float = 30) -> None:
    """No notification waiting in the push intake, no calendar dirty or leased."""
    deadline = time.monotonic() + timeout
    now = datetime.now(UTC)
    while time.monotonic() < deadline:
        if intake_holds_notifications(get_settings()):
            time.sleep(0.05)
            continue
        now = datetime.now(UTC)
        with session_scope() as session:
            busy = session.scalar(
                select(func.count())
                .select_from(SyncState)
                .where(
                    (SyncState.dirty_since.is_not(None))
                    | ((SyncState.lease_until.is_not(None)) & (SyncState.lease_until > now))
                )
            )
        if not busy:
            return
        time.sleep(0.1)


def window() -> tuple[datetime, datetime]:
    start = datetime.now(UTC).replace(microsecond=0)
    return start, start + timedelta(days=60)


def busy_matches(stack: Stack, cal: LiveCalendar) -> bool:
    start, end = window()
    with session_scope() as session:
        ours = [(i.start, i.end) for i in calendar_busy(session, cal.calendar_id, start, end)]
    google = [
        tuple(pair)
        for pair in stack.emulator.control.reference_busy(cal.google_calendar_id, start, end)
    ]
    return ours == google


def assert_converges(stack: Stack, calendars: list[LiveCalendar], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    pending = list(calendars)
    while pending:
        pending = [cal for cal in pending if not busy_matches(stack, cal)]
        if not pending:
            return
        if time.monotonic() > deadline:
            start, end = window()
            details = []
            for cal in pending:
                with session_scope() as session:
                    ours = calendar_busy(session, cal.calendar_id, start, end)
                google = stack.emulator.control.reference_busy(cal.google_calendar_id, start, end)
                details.append(f"{cal.google_calendar_id}:\n ours={ours}\n google={google}")
            pytest.fail(
                "busy blocks did not converge:\n" + "\n".join(details) + "\n" + stack.logs_tail()
            )
        time.sleep(0.2)
