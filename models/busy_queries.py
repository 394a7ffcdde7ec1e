"""Read path: merged busy intervals for a host or a calendar over a window."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, bindparam, literal, select, tuple_, union_all
from sqlalchemy.orm import Session

from models.calendars import Calendar
from models.events import BusyBlock
from models.hosts import ManualBlock
from rules.busy_feed import (
    MANUAL_CATEGORY,
    BusySource,
    SourceRef,
    calendar_source_name,
    manual_source_name,
)
from rules.intervals import Interval, clip, merge


def _calendar_blocks_query(calendar_ids: Any) -> Select:
    """Blocks of `calendar_ids` (an expanding parameter or a subquery of ids) overlapping the
    window [:time_min, :time_max)."""
    return select(
        literal("calendar"),
        BusyBlock.calendar_id,
        BusyBlock.event_key,
        BusyBlock.start,
        BusyBlock.end,
    ).where(
        BusyBlock.calendar_id.in_(calendar_ids),
        BusyBlock.start < bindparam("time_max"),
        BusyBlock.end > bindparam("time_min"),
    )


def _manual_blocks_query() -> Select:
    return select(
        literal("manual"),
        ManualBlock.id,
        literal(None, String),
        ManualBlock.start,
        ManualBlock.end,
    ).where(
        ManualBlock.host_id == bindparam("host_id"),
        ManualBlock.start < bindparam("time_max"),
        ManualBlock.end > bindparam("time_min"),
    )


# Built once: the read path answers many requests a second and building a statement costs
# about as much as running it.
_CALENDAR_BLOCKS = _calendar_blocks_query(bindparam("calendar_ids", expanding=True))
_MANUAL_BLOCKS = _manual_blocks_query()
# A host's busy time in one statement: its calendars' blocks, then its manual blocks.
_HOST_BLOCKS = union_all(
    _calendar_blocks_query(
        select(Calendar.id).where(Calendar.host_id == bindparam("host_id")).scalar_subquery()
    ),
    _MANUAL_BLOCKS,
)


# Just (start, end) of every block of the host overlapping the window (outbound changes).
_HOST_BLOCKS_TABLE = _HOST_BLOCKS.subquery()
HOST_BLOCK_SPANS = select(_HOST_BLOCKS_TABLE.c.start, _HOST_BLOCKS_TABLE.c.end)


def _intervals(rows: Iterable[Any]) -> list[Interval]:
    """Rows of the block queries above as Intervals with their sources
    (`calendar:<id>/<event>`, `manual:<id>`)."""
    return [
        Interval(
            start,
            end,
            (f"calendar:{owner_id}/{key}" if kind == "calendar" else f"manual:{owner_id}",),
        )
        for kind, owner_id, key, start, end in rows
    ]


def calendar_blocks(
    session: Session, calendar_ids: list[int], time_min: datetime, time_max: datetime
) -> list[Interval]:
    """Busy blocks overlapping the window, one Interval per block, source `cal:<id>/<event>`."""
    if not calendar_ids:
        return []
    window = {"calendar_ids": calendar_ids, "time_min": time_min, "time_max": time_max}
    return _intervals(session.execute(_CALENDAR_BLOCKS, window))


def manual_blocks(
    session: Session, host_id: int, time_min: datetime, time_max: datetime
) -> list[Interval]:
    window = {"host_id": host_id, "time_min": time_min, "time_max": time_max}
    return _intervals(session.execute(_MANUAL_BLOCKS, window))


def host_calendar_ids(session: Session, host_id: int) -> list[int]:
    return list(session.scalars(select(Calendar.id).where(Calendar.host_id == host_id)))


def host_busy(
    session: Session, host_id: int, time_min: datetime, time_max: datetime
) -> list[Interval]:
    """The host's merged busy time: all calendars plus manual blocks, clipped to the window."""
    window = {"host_id": host_id, "time_min": time_min, "time_max": time_max}
    # Calendar blocks before manual ones, as two separate queries would give them: the
    # order of sources within a merged interval follows the input order.
    rows = sorted(session.execute(_HOST_BLOCKS, window), key=lambda row: row[0] != "calendar")
    return clip(merge(_intervals(rows)), time_min, time_max)


def calendars_busy(
    session: Session, calendar_ids: list[int], time_min: datetime, time_max: datetime
) -> dict[int, list[Interval]]:
    """`calendar_busy` of each listed calendar, by id, from one query."""
    by_calendar: dict[int, list[Any]] = {calendar_id: [] for calendar_id in calendar_ids}
    if calendar_ids:
        window = {"calendar_ids": calendar_ids, "time_min": time_min, "time_max": time_max}
        for row in session.execute(_CALENDAR_BLOCKS, window):
            by_calendar[row.calendar_id].append(row)
    return {
        calendar_id: clip(merge(_intervals(rows)), time_min, time_max)
        for calendar_id, rows in by_calendar.items()
    }


def calendar_busy(
    session: Session, calendar_id: int, time_min: datetime, time_max: datetime
) -> list[Interval]:
    return calendars_busy(session, [calendar_id], time_min, time_max)[calendar_id]


# The busy sources of one host (feeds and CalDAV): each block with its calendar's Google id
# and the instant it was last written; the same columns for both kinds (see `_source`).
_CALENDAR_SOURCES = select(
    literal("calendar"),
    BusyBlock.calendar_id,
    BusyBlock.event_key,
    Calendar.google_calendar_id,
    BusyBlock.start,
    BusyBlock.end,
    BusyBlock.applied_at,
).join(Calendar, Calendar.id == BusyBlock.calendar_id)
_MANUAL_SOURCES = select(
    literal("manual"),
    ManualBlock.id,
    literal(None, String),
    literal(MANUAL_CATEGORY, String),
    ManualBlock.start,
    ManualBlock.end,
    ManualBlock.created_at,
)
_HOST_SOURCES = union_all(
    _CALENDAR_SOURCES.where(
        Calendar.host_id == bindparam("host_id"),
        BusyBlock.start < bindparam("time_max"),
        BusyBlock.end > bindparam("time_min"),
    ),
    _MANUAL_SOURCES.where(
        ManualBlock.host_id == bindparam("host_id"),
        ManualBlock.start < bindparam("time_max"),
        ManualBlock.end > bindparam("time_min"),
    ),
)


def _source(row: Any, stale_calendars: frozenset[int]) -> BusySource:
    kind, owner_id, key, category, start, end, changed_at = row
    if kind == "calendar":
        return BusySource(
            calendar_source_name(owner_id, key),
            start,
            end,
            category,
            changed_at,
            owner_id in stale_calendars,
        )
    return BusySource(manual_source_name(owner_id), start, end, category, changed_at)


def host_busy_sources(
    session: Session,
    host_id: int,
    time_min: datetime,
    time_max: datetime,
    *,
    stale_calendars: frozenset[int] = frozenset(),
) -> list[BusySource]:
    """Every busy source of the host (calendar blocks, manual blocks) overlapping the
    window, unclipped; those of `stale_calendars` are marked stale."""
    window = {"host_id": host_id, "time_min": time_min, "time_max": time_max}
    return [_source(row, stale_calendars) for row in session.execute(_HOST_SOURCES, window)]


def host_sources_named(
    session: Session,
    host_id: int,
    refs: list[SourceRef],
    *,
    stale_calendars: frozenset[int] = frozenset(),
) -> list[BusySource]:
    """The host's busy sources among `refs` (CalDAV multiget); others are left out."""
    found: list[BusySource] = []
    manual_ids = [r.manual_block_id for r in refs if r.manual_block_id is not None]
    keyed = [(r.calendar_id, r.event_key) for r in refs if r.calendar_id is not None]
    if manual_ids:
        rows = session.execute(
            _MANUAL_SOURCES.where(ManualBlock.host_id == host_id, ManualBlock.id.in_(manual_ids))
        )
        found.extend(_source(row, stale_calendars) for row in rows)
    if keyed:
        rows = session.execute(
            _CALENDAR_SOURCES.where(
                Calendar.host_id == host_id,
                tuple_(BusyBlock.calendar_id, BusyBlock.event_key).in_(keyed),
            )
        )
        found.extend(_source(row, stale_calendars) for row in rows)
    return found
