"""Writes decided events into `calendar_events` and their busy subset into `busy_blocks`.

Diff-based: rows that did not change are not touched, so applying the same sync twice
changes nothing. Runs inside the caller's transaction (the one that also stores the new sync
token), so blocks and token commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from models import BusyBlock, CalendarEvent
from worker.busy_rules import EventFacts, Reason

CHUNK = 500
# The columns compared to decide whether a stored event changed.
EVENT_FIELDS = (
    "recurring_event_id",
    "start",
    "end",
    "all_day",
    "status",
    "transparency",
    "event_type",
    "response_status",
    "summary",
    "google_updated",
    "decision",
)


@dataclass(frozen=True, slots=True)
class DecidedEvent:
    facts: EventFacts
    decision: Reason


@dataclass
class ApplyStats:
    events_written: int = 0
    events_deleted: int = 0
    blocks_upserted: int = 0
    blocks_deleted: int = 0
    # Google's `updated` of every event whose stored state changed (for propagation lag).
    changed_updated: list[datetime] = field(default_factory=list)


@dataclass(frozen=True)
class Horizon:
    start: datetime
    end: datetime

    def contains(self, facts: EventFacts) -> bool:
        return (
            facts.start is not None
            and facts.end is not None
            and facts.end > self.start
            and facts.start < self.end
        )


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def _event_row(facts: EventFacts, decision: Reason) -> dict[str, Any]:
    return {
        "google_event_id": facts.google_event_id,
        "recurring_event_id": facts.recurring_event_id,
        "start": facts.start,
        "end": facts.end,
        "all_day": facts.all_day,
        "status": facts.status,
        "transparency": facts.transparency,
        "event_type": facts.event_type,
        "response_status": facts.response_status,
        "summary": facts.summary,
        "google_updated": facts.updated,
        "decision": str(decision),
    }


def _load_events(
    session: Session, calendar_id: int, keys: list[str] | None
) -> dict[str, dict[str, Any]]:
    columns = [CalendarEvent.id, CalendarEvent.google_event_id] + [
        getattr(CalendarEvent, name) for name in EVENT_FIELDS
    ]
    base = select(*columns).where(CalendarEvent.calendar_id == calendar_id)
    queries = (
        [base]
        if keys is None
        else [base.where(CalendarEvent.google_event_id.in_(chunk)) for chunk in _chunks(keys)]
    )
    found: dict[str, dict[str, Any]] = {}
    for query in queries:
        for row in session.execute(query).mappings():
            found[row["google_event_id"]] = dict(row)
    return found


def _load_blocks(
    session: Session, calendar_id: int, keys: list[str] | None
) -> dict[str, tuple[int, datetime, datetime]]:
    base = select(BusyBlock.id, BusyBlock.event_key, BusyBlock.start, BusyBlock.end).where(
        BusyBlock.calendar_id == calendar_id
    )
    queries = (
        [base]
        if keys is None
        else [base.where(BusyBlock.event_key.in_(chunk)) for chunk in _chunks(keys)]
    )
    found: dict[str, tuple[int, datetime, datetime]] = {}
    for query in queries:
        for block_id, key, start, end in session.execute(query):
            found[key] = (block_id, start, end)
    return found


def apply_events(
    session: Session,
    calendar_id: int,
    decided: Iterable[DecidedEvent],
    *,
    horizon: Horizon,
    now: datetime,
    replace_all: bool,
) -> ApplyStats:
    """Bring stored events and blocks in line with `decided`.

    `replace_all` (a full sync) also removes everything not in `decided`, in the same
    transaction: readers see the old set or the new one, never a gap or a ghost.
    """
    incoming: dict[str, DecidedEvent] = {}
    for item in decided:
        incoming[item.facts.google_event_id] = item  # a later page wins
    keys = None if replace_all else list(incoming)
    events = _load_events(session, calendar_id, keys)
    blocks = _load_blocks(session, calendar_id, keys)

    stats = ApplyStats()
    event_inserts: list[dict] = []
    event_updates: list[dict] = []
    event_deletes: list[int] = []
    block_inserts: list[dict] = []
    block_updates: list[dict] = []
    block_deletes: list[int] = []

    def drop_block(key: str) -> None:
        if key in blocks:
            block_deletes.append(blocks[key][0])

    for key, item in incoming.items():
        facts, decision = item.facts, item.decision
        stored = events.get(key)
        if decision is Reason.CANCELLED:
            # Keep a tombstone with the old times so `explain` can say it was cancelled.
            if stored is not None and stored["status"] != "cancelled":
                event_updates.append(
                    {
                        "id": stored["id"],
                        "status": "cancelled",
                        "decision": str(Reason.CANCELLED),
                        "google_updated": facts.updated or stored["google_updated"],
                        "applied_at": now,
                    }
                )
                stats.changed_updated.extend([facts.updated] if facts.updated else [])
            drop_block(key)
            continue
        if not horizon.contains(facts):
            if stored is not None:
                event_deletes.append(stored["id"])
            drop_block(key)
            continue
        row = _event_row(facts, decision)
        if stored is None:
            event_inserts.append({**row, "calendar_id": calendar_id, "applied_at": now})
        elif any(stored[name] != row[name] for name in EVENT_FIELDS):
            event_updates.append({**row, "id": stored["id"], "applied_at": now})
        else:
            row = None  # unchanged
        if row is not None and facts.updated is not None:
            stats.changed_updated.append(facts.updated)
        if decision is Reason.BUSY:
            assert facts.start is not None and facts.end is not None
            block = blocks.get(key)
            if block is None:
                block_inserts.append(
                    {
                        "calendar_id": calendar_id,
                        "event_key": key,
                        "start": facts.start,
                        "end": facts.end,
                        "applied_at": now,
                    }
                )
            elif (block[1], block[2]) != (facts.start, facts.end):
                block_updates.append(
                    {"id": block[0], "start": facts.start, "end": facts.end, "applied_at": now}
                )
        else:
            drop_block(key)

    if replace_all:
        event_deletes.extend(row["id"] for key, row in events.items() if key not in incoming)
        block_deletes.extend(b[0] for key, b in blocks.items() if key not in incoming)

    for chunk in _chunks(block_deletes):
        session.execute(delete(BusyBlock).where(BusyBlock.id.in_(chunk)))
    for chunk in _chunks(event_deletes):
        session.execute(delete(CalendarEvent).where(CalendarEvent.id.in_(chunk)))
    if event_updates:
        session.execute(update(CalendarEvent), event_updates)
    if block_updates:
        session.execute(update(BusyBlock), block_updates)
    if event_inserts:
        session.execute(insert(CalendarEvent), event_inserts)
    if block_inserts:
        session.execute(insert(BusyBlock), block_inserts)

    stats.events_written = len(event_inserts) + len(event_updates)
    stats.events_deleted = len(event_deletes)
    stats.blocks_upserted = len(block_inserts) + len(block_updates)
    stats.blocks_deleted = len(block_deletes)
    return stats
