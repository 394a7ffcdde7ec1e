"""Many calendars wired through calsync's registry, for the latency benchmarks: one host,
account and calendar each (as real users would have), attached, fully synced and (when the
emulator lets them) watched; plus the timed changes the benchmarks make at the emulator.

Used by bench.end_to_end_lag and bench.calls_per_burst. Import only inside a bench_stack
(it needs the stack's settings).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from core.settings import get_settings
from intake.redis_intake import intake_holds_notifications
from models import Calendar, Channel, SyncState
from models.busy_queries import calendar_busy
from models.db import session_scope
from models.registry import attach_calendar, create_host
from models.sync_flags import unsettled_calendars
from worker.enqueue import enqueue_sync, enqueue_watch

CONTROL_THREADS = 8
EVENT_DAYS = 30  # changes land within the next month: well inside the sync horizon


@dataclass(frozen=True)
class FleetCalendar:
    calendar_id: int
    google_calendar_id: str


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_slot(rng: random.Random, base: datetime) -> tuple[datetime, datetime]:
    """A busy slot on a quarter hour within EVENT_DAYS of `base`, 15 to 120 minutes long."""
    start = base + timedelta(minutes=15 * rng.randrange(4, EVENT_DAYS * 96))
    return start, start + timedelta(minutes=15 * rng.randrange(1, 9))


def event_body(start: datetime, end: datetime, summary: str = "bench") -> dict[str, Any]:
    return {
        "summary": summary,
        "start": {"dateTime": rfc3339(start)},
        "end": {"dateTime": rfc3339(end)},
    }


def slot_base() -> datetime:
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def parallel(function: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    with ThreadPoolExecutor(CONTROL_THREADS) as pool:
        return list(pool.map(function, items))


def attach_fleet(
    control: Any,
    count: int,
    prefix: str,
    *,
    watchable: bool = True,
    events_per_calendar: int = 0,
) -> tuple[list[FleetCalendar], dict[str, list[dict]]]:
    """`count` calendars created at the emulator (with `events_per_calendar` busy events
    each, made before attaching so the first full sync brings them in), attached, and each
    given its full sync and watch start through the queue, as the API does. Returns the
    calendars and the seeded events per Google calendar id."""
    base = slot_base()
    emails = [f"{prefix}{i:05d}@example.com" for i in range(count)]

    def create(email: str) -> tuple[str, dict, list[dict]]:
        credentials = control.create_account(email)
        control.create_calendar(email, time_zone="UTC", owner=email, watchable=watchable)
        seeded = [
            control.insert_event(
                email, event_body(*random_slot(random.Random(f"{email}{n}"), base))
            )
            for n in range(events_per_calendar)
        ]
        return email, credentials, seeded

    created = parallel(create, emails)
    calendars: list[FleetCalendar] = []
    with session_scope() as session:
        for email, credentials, _seeded in created:
            host, _token = create_host(session, f"bench {email}", "UTC")
            calendar, _ = attach_calendar(session, host.id, email, credentials)
            calendars.append(FleetCalendar(calendar.id, email))
    for calendar in calendars:
        enqueue_sync(calendar.calendar_id, reason="attach", full=True)
        enqueue_watch(calendar.calendar_id)
    return calendars, {email: seeded for email, _credentials, seeded in created}


def fleet_ready(calendar_ids: list[int], *, watched: bool) -> bool:
    """All synced once, and each either watched (push) or refused by Google (polling)."""
    with session_scope() as session:
        synced = session.scalar(
            select(func.count())
            .select_from(SyncState)
            .where(SyncState.calendar_id.in_(calendar_ids), SyncState.last_success_at.is_not(None))
        )
        if watched:
            settled = session.scalar(
                select(func.count(func.distinct(Channel.calendar_id))).where(
                    Channel.calendar_id.in_(calendar_ids), Channel.resource_id.is_not(None)
                )
            )
        else:
            settled = session.scalar(
                select(func.count())
                .select_from(Calendar)
                .where(Calendar.id.in_(calendar_ids), Calendar.watch_problem.is_not(None))
            )
    return synced == len(calendar_ids) and settled == len(calendar_ids)


def wait_until(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def fleet_idle(background: int = 0) -> bool:
    """No notification waiting in the push intake, no calendar dirty, being synced or
    leased (`background`: up to this many may be, a large fleet's own periodic syncs)."""
    if intake_holds_notifications(get_settings()):
        return False
    with session_scope() as session:
        return unsettled_calendars(session, datetime.now(UTC)) <= background


def wait_settled(timeout: float, quiet_seconds: float = 10.0, background: int = 0) -> None:
    """Wait until the fleet has stayed idle for `quiet_seconds` on end: a freshly attached
    fleet is idle between waves of its start-up work (the channels' first "sync" messages,
    the syncs they cause), and a load phase that starts inside that tail measures it, not
    the load."""
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        if fleet_idle(background):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_seconds:
                return
        else:
            quiet_since = None
        time.sleep(0.5)
    raise TimeoutError(f"the fleet did not stay idle for {quiet_seconds:g} s")


def mismatched_calendars(control: Any, calendars: list[FleetCalendar]) -> list[str]:
    """Calendars whose busy intervals (our table) differ from the emulator's reference."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    end = start + timedelta(days=EVENT_DAYS + 2)

    def reference(calendar: FleetCalendar) -> list[tuple[datetime, datetime]]:
        return [tuple(p) for p in control.reference_busy(calendar.google_calendar_id, start, end)]

    google = parallel(reference, calendars)
    wrong = []
    with session_scope() as session:
        for calendar, theirs in zip(calendars, google, strict=True):
            ours = [
                (i.start, i.end) for i in calendar_busy(session, calendar.calendar_id, start, end)
            ]
            if ours != theirs:
                wrong.append(calendar.google_calendar_id)
    return wrong
