"""Read queries behind the status page: a host's calendars and its busy time by source."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.busy_queries import calendar_blocks
from models.calendars import Calendar
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
