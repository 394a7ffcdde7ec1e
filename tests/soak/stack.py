"""The soak's stack of real processes, its sizes (short for CI, long by command), the database
probes it waits on, and the report it prints and writes as JSON."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from calsync.processes import ProcessStack, ServiceProcess
from core.settings import Settings, get_settings
from emulator.control import EmulatorControl
from intake.redis_intake import intake_holds_notifications
from models import Channel, SyncState
from models.busy_queries import calendar_busy
from models.db import session_scope
from models.registry import attach_calendar, create_host
from models.sync_flags import unsettled_calendars
from tests.soak.services import PrivatePostgres, PrivateRedis
from worker.enqueue import enqueue_sync, enqueue_watch

COMPARE_DAYS = 60  # changes land within ~45 days; compare a little beyond


@dataclass(frozen=True)
class SoakPlan:
    """How big the soak is. `short` runs in the normal suite; `long` is the issue's numbers."""

    name: str
    calendars: int
    kills: int
    main_kill_every: int  # every n-th kill takes down a whole worker (main process too)
    forged: int
    kill_gap_seconds: float  # mean pause between kills
    change_rate: float  # calendar edits per second while the soak runs
    invalidate_every_seconds: float  # invalidate_sync_tokens on one calendar this often
    restart_load_seconds: float  # load before, between and after the restarts
    safety_net_seconds: int
    workers: int = 2
    concurrency: int = 2
    seed: int = 7

    @classmethod
    def from_env(cls) -> SoakPlan:
        if os.environ.get("CALSYNC_SOAK", "short") == "long":
            return cls(
                name="long",
                calendars=100,
                kills=200,
                main_kill_every=10,
                forged=10_000,
                kill_gap_seconds=1.2,
                change_rate=12,
                invalidate_every_seconds=3,
                restart_load_seconds=8,
                safety_net_seconds=20,
            )
        return cls(
            name="short",
            calendars=20,
            kills=18,
            main_kill_every=6,
            forged=1000,
            kill_gap_seconds=0.8,
            change_rate=8,
            invalidate_every_seconds=3,
            restart_load_seconds=3,
            safety_net_seconds=5,
        )


@dataclass
class LiveCalendar:
    calendar_id: int
    google_calendar_id: str


@dataclass(kw_only=True)
class SoakStack(ProcessStack):
    """Emulator (child process), gunicorn, Celery workers and beat on one configuration (see
    ProcessStack); in services mode also the private PostgreSQL and Redis the restart test
    may break."""

    settings: Settings
    emulator_url: str
    backend_kind: str
    postgres: PrivatePostgres | None = None
    redis: PrivateRedis | None = None
    unexpected_worker_deaths: int = 0
    setup_seconds: float = 0.0
    calendars: list[LiveCalendar] = field(default_factory=list)
    canary: LiveCalendar | None = None

    @property
    def control(self) -> EmulatorControl:
        if not hasattr(self, "_control"):
            self._control = EmulatorControl(self.emulator_url, timeout=60)
        return self._control

    def start(self, plan: SoakPlan) -> None:
        self.start_emulator(int(self.emulator_url.rsplit(":", 1)[1]), seed=plan.seed)
        self.start_web()
        for _ in range(plan.workers):
            self.start_worker(plan.concurrency)
        self.start_beat()
        self.wait_ready()

    def ready_workers(self) -> list[ServiceProcess]:
        """Workers whose pool is up. A pool process killed while its worker starts makes
        Celery give up ("Could not start worker processes"): that is a crash at boot, not a
        kill during a sync, so the soak leaves starting workers alone."""
        return [worker for worker in self.workers if worker.ready()]

    def revive_dead_workers(self) -> int:
        """Restart worker main processes that died without being killed by the soak."""
        dead = [worker for worker in self.workers if not worker.alive]
        for worker in dead:
            self.restart(worker)
        self.unexpected_worker_deaths += len(dead)
        return len(dead)

    def stop(self, process: ServiceProcess | None = None) -> None:
        super().stop(process)
        if process is None and hasattr(self, "_control"):
            self._control.close()

    # ----- calendars --------------------------------------------------------------------
    def attach(self, email: str, time_zone: str = "Europe/Berlin") -> LiveCalendar:
        credentials = self.control.create_account(email)
        self.control.create_calendar(email, time_zone=time_zone, owner=email)
        with session_scope() as session:
            host, _ = create_host(session, f"host {email}", time_zone)
            calendar, _ = attach_calendar(session, host.id, email, credentials)
            cal = LiveCalendar(calendar.id, email)
        enqueue_sync(cal.calendar_id, reason="attach", full=True)
        enqueue_watch(cal.calendar_id)
        return cal


# ----- waiting ------------------------------------------------------------------------


class SoakTimeout(AssertionError):
    pass


def wait_for(condition: Callable[[], bool], timeout: float, what: str, stack: SoakStack) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SoakTimeout(f"timed out after {timeout}s waiting for {what}\n{stack.logs_tail()}")
        time.sleep(0.2)


def synced_and_watched(calendar_ids: list[int]) -> bool:
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


def busy_calendars() -> int:
    """Calendars dirty, mid-sync (a dead worker's mark) or under a live lease; -1 while
    notifications still wait in the push intake."""
    if intake_holds_notifications(get_settings()):
        return -1
    with session_scope() as session:
        return unsettled_calendars(session, datetime.now(UTC))


def syncs_in_flight() -> int:
    """Leases held by a running sync (not a failed run's backoff)."""
    now = datetime.now(UTC)
    with session_scope() as session:
        return session.scalar(
            select(func.count())
            .select_from(SyncState)
            .where(SyncState.lease_until > now, SyncState.lease_owner != "backoff")
        )


def compare_window() -> tuple[datetime, datetime]:
    start = datetime.now(UTC).replace(microsecond=0)
    return start, start + timedelta(days=COMPARE_DAYS)


def mismatched(stack: SoakStack, calendars: list[LiveCalendar]) -> list[str]:
    """Calendars whose busy intervals differ from the emulator's freeBusy, with the diff."""
    start, end = compare_window()
    wrong = []
    for cal in calendars:
        with session_scope() as session:
            ours = [(i.start, i.end) for i in calendar_busy(session, cal.calendar_id, start, end)]
        google = [
            tuple(pair) for pair in stack.control.reference_busy(cal.google_calendar_id, start, end)
        ]
        if ours != google:
            only_ours = sorted(set(ours) - set(google))[:5]
            only_google = sorted(set(google) - set(ours))[:5]
            wrong.append(
                f"{cal.google_calendar_id}: only ours {only_ours}, only Google {only_google}"
            )
    return wrong


def quiesce_and_converge(stack: SoakStack, calendars: list[LiveCalendar], timeout: float) -> float:
    """Wait until push is idle, nothing is dirty or leased, and every calendar equals Google's
    freeBusy exactly; returns the seconds that took. Dropped notifications are recovered
    by the safety net, so `timeout` must cover a safety-net period."""
    started = time.monotonic()
    deadline = started + timeout
    stack.control.wait_push_idle(timeout=timeout)
    pending = list(calendars)
    while True:
        if not busy_calendars():
            pending = [cal for cal in pending if mismatched(stack, [cal])]
            if not pending:
                return time.monotonic() - started
        if time.monotonic() > deadline:
            details = mismatched(stack, pending)
            raise SoakTimeout(
                f"no convergence within {timeout}s: {busy_calendars()} calendars busy; "
                + "\n".join(details)
                + "\n"
                + stack.logs_tail()
            )
        time.sleep(0.5)


# ----- report -------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


@dataclass
class SoakReport:
    """Counts and times of the soak: printed (visible with -s) and written as JSON."""

    plan: SoakPlan
    path: Path
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def record(self, section: str, values: dict[str, Any]) -> None:
        self.sections.setdefault(section, {}).update(values)
        self.write()

    def print_section(self, section: str) -> None:
        print(f"\n# fault soak ({self.plan.name}): {section}", flush=True)
        for key, value in self.sections.get(section, {}).items():
            shown = f"{value:.3g}" if isinstance(value, float) else value
            print(f"  {key}: {shown}", flush=True)
        print(f"  (JSON: {self.path})", flush=True)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        summary = {"plan": self.plan.__dict__, **self.sections}
        self.path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
