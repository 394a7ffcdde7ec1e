"""Read queries behind the status page: a host's calendars and its busy time by source."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.busy_queries import calendar_blocks
from models.calendars import Calendar
from models.events import CalendarEvent
from models.hosts import ManualBlock
from rules.intervals import Interval, clip, merge


@dataclass(frozen=True)
class CalendarName:
    calendar_id: int
    google_calendar_id: str
    summary: str | None
    watch_problem: str | None


@dataclass(frozen=True)
class NotedBlock:
    """A manual block as the host wrote it: times and note."""

    block_id: int
    start: datetime
    end: datetime
    note: str


def host_calendars(session: Session, host_id: int) -> list[CalendarName]:
    """The host's calendars in a stable order (oldest first)."""
    rows = session.execute(
        select(Calendar.id, Calendar.google_calendar_id, Calendar.summary, Calendar.watch_problem)
        .where(Calendar.host_id == host_id)
        .order_by(Calendar.id)
    )
    return [CalendarName(*row) for row in rows]


def busy_by_calendar(
    session: Session, calendar_ids: list[int], time_min: datetime, time_max: datetime
) -> dict[int, list[Interval]]:
    """Each calendar's own merged busy time in the window (one query for all of them)."""
    grouped: dict[int, list[Interval]] = {calendar_id: [] for calendar_id in calendar_ids}
    for interval in calendar_blocks(session, calendar_ids, time_min, time_max):
        # Sources look like "calendar:<id>/<event key>" (models.busy_queries).
        calendar_id = int(interval.sources[0].split(":", 1)[1].split("/", 1)[0])
        grouped[calendar_id].append(interval)
    return {
        calendar_id: clip(merge(intervals), time_min, time_max)
        for calendar_id, intervals in grouped.items()
    }


def manual_blocks_with_notes(
    session: Session, host_id: int, time_min: datetime, time_max: datetime
) -> list[NotedBlock]:
    rows = session.execute(
        select(ManualBlock.id, ManualBlock.start, ManualBlock.end, ManualBlock.note)
        .where(
            ManualBlock.host_id == host_id,
            ManualBlock.start < time_max,
            ManualBlock.end > time_min,
        )
        .order_by(ManualBlock.start, ManualBlock.id)
    )
    return [NotedBlock(block_id, start, end, note or "") for block_id, start, end, note in rows]


@dataclass(frozen=True)
class NonBlockingEvent:
    """An event that does not block bookings, with the reason code (rules.busy_rules)."""

    calendar_id: int
    start: datetime
    end: datetime
    summary: str | None
    reason: str


def nonblocking_events(
    session: Session, calendar_ids: list[int], time_min: datetime, time_max: datetime
) -> list[NonBlockingEvent]:
    """Events in the window that do not block (Free, declined, ...), cancelled ones left out."""
    if not calendar_ids:
        return []
    rows = session.execute(
        select(
            CalendarEvent.calendar_id,
            CalendarEvent.start,
            CalendarEvent.end,
            CalendarEvent.summary,
            CalendarEvent.decision,
        )
        .where(
            CalendarEvent.calendar_id.in_(calendar_ids),
            CalendarEvent.decision.not_in(("busy", "cancelled")),
            CalendarEvent.start < time_max,
            CalendarEvent.end > time_min,
        )
        .order_by(CalendarEvent.start, CalendarEvent.id)
        .limit(2000)
    )
    return [
        NonBlockingEvent(calendar_id, start, end, summary, reason)
        for calendar_id, start, end, summary, reason in rows
        if start is not None and end is not None
    ]
