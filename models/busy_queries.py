"""Read path: merged busy intervals for a host or a calendar over a window."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.calendars import Calendar
from models.events import BusyBlock
from models.hosts import ManualBlock
from models.intervals import Interval, clip, merge


def calendar_blocks(
    session: Session, calendar_ids: list[int], time_min: datetime, time_max: datetime
) -> list[Interval]:
    """Busy blocks overlapping the window, one Interval per block, source `cal:<id>/<event>`."""
    if not calendar_ids:
        return []
    rows = session.execute(
        select(BusyBlock.calendar_id, BusyBlock.event_key, BusyBlock.start, BusyBlock.end).where(
            BusyBlock.calendar_id.in_(calendar_ids),
            BusyBlock.start < time_max,
            BusyBlock.end > time_min,
        )
    )
    return [
        Interval(start, end, (f"calendar:{calendar_id}/{key}",))
        for calendar_id, key, start, end in rows
    ]


def manual_blocks(
    session: Session, host_id: int, time_min: datetime, time_max: datetime
) -> list[Interval]:
    rows = session.execute(
        select(ManualBlock.id, ManualBlock.start, ManualBlock.end).where(
            ManualBlock.host_id == host_id,
            ManualBlock.start < time_max,
            ManualBlock.end > time_min,
        )
    )
    return [Interval(start, end, (f"manual:{block_id}",)) for block_id, start, end in rows]


def host_calendar_ids(session: Session, host_id: int) -> list[int]:
    return list(session.scalars(select(Calendar.id).where(Calendar.host_id == host_id)))


def host_busy(
    session: Session, host_id: int, time_min: datetime, time_max: datetime
) -> list[Interval]:
    """The host's merged busy time: all calendars plus manual blocks, clipped to the window."""
    intervals = calendar_blocks(session, host_calendar_ids(session, host_id), time_min, time_max)
    intervals += manual_blocks(session, host_id, time_min, time_max)
    return clip(merge(intervals), time_min, time_max)


def calendar_busy(
    session: Session, calendar_id: int, time_min: datetime, time_max: datetime
) -> list[Interval]:
    return clip(
        merge(calendar_blocks(session, [calendar_id], time_min, time_max)), time_min, time_max
    )
