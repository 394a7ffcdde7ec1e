"""The one writer of `busy_blocks`: decided events into `calendar_events`, their busy
subset into `busy_blocks`.

Two ways in: `apply_events` (a sync: Google's events, decided) and `redecide_host_events`
(a host's busy policy changed: the stored events re-decided, Google not asked). Both write
the blocks the same way, diff-based and batched: rows that did not change are not touched,
so applying the same sync twice changes nothing. Both run inside the caller's transaction
(the one that also stores the new sync token, or the new policy), so blocks and what they
were decided from commit together or not at all. The same goes for the outbound
`busy.changed` event of the write (models/outbox_writer.py): both collect the blocks they
remove and add, and the event names the ranges whose busy/free answer changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from models import BusyBlock, Calendar, CalendarEvent
from models.bulk_insert import insert_rows
from models.outbox_writer import announced_host_of, record_busy_change
from rules.busy_rules import BusyPolicy, EventFacts, Reason, decide

CHUNK = 500  # keys per IN (...) list
WRITE_BATCH = 5000  # rows written per statement, so a big sync never holds them all at once
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
EVENT_COLUMNS = ("calendar_id", "google_event_id", *EVENT_FIELDS, "applied_at")
BLOCK_COLUMNS = ("calendar_id", "event_key", "start", "end", "applied_at")
EVENTS = cast(Table, CalendarEvent.__table__)
BLOCKS = cast(Table, BusyBlock.__table__)
# Positions in a stored event tuple: (id, *EVENT_FIELDS).
_ID = 0
_STATUS = 1 + EVENT_FIELDS.index("status")
_UPDATED = 1 + EVENT_FIELDS.index("google_updated")
_DECISION = 1 + EVENT_FIELDS.index("decision")
_SHARED = tuple(
    1 + EVENT_FIELDS.index(name)
    for name in (
        "recurring_event_id",
        "status",
        "transparency",
        "event_type",
        "response_status",
        "decision",
    )
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


@dataclass
class RedecideStats:
    events_changed: int = 0
    blocks_added: int = 0
    blocks_removed: int = 0


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


def _chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _event_fields(facts: EventFacts, decision: Reason) -> tuple[Any, ...]:
    """The EVENT_FIELDS values of a decided event, in order."""
    return (
        facts.recurring_event_id,
        facts.start,
        facts.end,
        facts.all_day,
        facts.status,
        facts.transparency,
        facts.event_type,
        facts.response_status,
        facts.summary,
        facts.updated,
        str(decision),
    )


def _stored_facts(key: str, stored: tuple[Any, ...]) -> EventFacts:
    """The busy rules' input rebuilt from a stored (id, *EVENT_FIELDS) tuple."""
    (
        recurring_event_id,
        start,
        end,
        all_day,
        status,
        transparency,
        event_type,
        response_status,
        summary,
        google_updated,
        _decision,
    ) = stored[1:]
    return EventFacts(
        google_event_id=key,
        status=status,
        start=start,
        end=end,
        all_day=all_day,
        transparency=transparency,
        event_type=event_type,
        response_status=response_status,
        summary=summary,
        updated=google_updated,
        recurring_event_id=recurring_event_id,
    )


# The keyed reads of an incremental sync (every sync), built once: an expanding IN list
# takes each chunk's keys. A full sync reads everything (below) and is rare.
_EVENT_COLUMNS = [EVENTS.c.google_event_id, EVENTS.c.id] + [EVENTS.c[n] for n in EVENT_FIELDS]
_EVENTS_BY_KEY = select(*_EVENT_COLUMNS).where(
    EVENTS.c.calendar_id == bindparam("calendar_id"),
    EVENTS.c.google_event_id.in_(bindparam("keys", expanding=True)),
)
_BLOCK_COLUMNS = (BLOCKS.c.id, BLOCKS.c.event_key, BLOCKS.c.start, BLOCKS.c.end)
_BLOCKS_BY_KEY = select(*_BLOCK_COLUMNS).where(
    BLOCKS.c.calendar_id == bindparam("calendar_id"),
    BLOCKS.c.event_key.in_(bindparam("keys", expanding=True)),
)


def _load_events(
    session: Session, calendar_id: int, keys: list[str] | None
) -> dict[str, tuple[Any, ...]]:
    """Stored events by key, as compact (id, *EVENT_FIELDS) tuples."""
    if keys is None:
        # A full resync loads every stored event: stream the rows (a server-side cursor on
        # PostgreSQL) and share the values that repeat across rows, so memory stays small.
        query = select(*_EVENT_COLUMNS).where(EVENTS.c.calendar_id == calendar_id)
        results = [session.execute(query.execution_options(yield_per=WRITE_BATCH))]
    else:
        results = [
            session.execute(_EVENTS_BY_KEY, {"calendar_id": calendar_id, "keys": chunk})
            for chunk in _chunks(keys)
        ]
    found: dict[str, tuple[Any, ...]] = {}
    shared: dict[str, str] = {}
    for result in results:
        for key, *stored in result:
            for index in _SHARED:
                if stored[index] is not None:
                    stored[index] = shared.setdefault(stored[index], stored[index])
            found[key] = tuple(stored)
    return found


def _load_blocks(
    session: Session, calendar_id: int, keys: list[str] | None
) -> dict[str, tuple[int, datetime, datetime]]:
    if keys is None:
        query = select(*_BLOCK_COLUMNS).where(BLOCKS.c.calendar_id == calendar_id)
        results = [session.execute(query)]
    else:
        results = [
            session.execute(_BLOCKS_BY_KEY, {"calendar_id": calendar_id, "keys": chunk})
            for chunk in _chunks(keys)
        ]
    found: dict[str, tuple[int, datetime, datetime]] = {}
    for result in results:
        for block_id, key, start, end in result:
            found[key] = (block_id, start, end)
    return found


def _update_rows(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """UPDATE by id, one executemany per set of changed columns (a Core statement: the
    ORM's bulk update by primary key costs more than the statement itself here)."""
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        shapes.setdefault(tuple(sorted(row)), []).append(row)
    for shape, same in shapes.items():
        names = [name for name in shape if name != "id"]
        session.execute(
            _update_statement(table, tuple(names)),
            [{"row_id": row["id"], **{f"new_{n}": row[n] for n in names}} for row in same],
        )


_UPDATES: dict[tuple[str, tuple[str, ...]], Any] = {}


def _update_statement(table: Table, names: tuple[str, ...]) -> Any:
    """UPDATE … SET `names` WHERE id = :row_id, built once per table and set of columns
    (a few shapes recur: a moved event, a cancelled one, a moved block)."""
    key = (table.name, names)
    statement = _UPDATES.get(key)
    if statement is None:
        statement = _UPDATES[key] = (
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values({name: bindparam(f"new_{name}") for name in names})
        )
    return statement


class _Batched:
    """Collects rows and hands them to `write` WRITE_BATCH at a time."""

    def __init__(self, write: Callable[[list], object]) -> None:
        self.write = write
        self.rows: list = []
        self.count = 0

    def add(self, row: Any) -> None:
        self.rows.append(row)
        if len(self.rows) >= WRITE_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.write(self.rows)
            self.count += len(self.rows)
            self.rows = []


class _BlockChanges:
    """The `busy_blocks` writes that bring one calendar's stored blocks in line with the
    decisions it is told, collected and written in batches."""

    def __init__(
        self,
        session: Session,
        calendar_id: int,
        stored: dict[str, tuple[int, datetime, datetime]],
        now: datetime,
    ) -> None:
        self.session = session
        self.calendar_id = calendar_id
        self.stored = stored
        self.now = now
        self.inserts = _Batched(lambda rows: insert_rows(session, BLOCKS, BLOCK_COLUMNS, rows))
        self.updates = _Batched(lambda rows: _update_rows(session, BLOCKS, rows))
        self.deletes: list[int] = []
        # The spans of the blocks removed and added (a moved block is both), for the
        # outbound event's changed ranges.
        self.removed: list[tuple[datetime, datetime]] = []
        self.added: list[tuple[datetime, datetime]] = []

    def busy(self, key: str, start: datetime, end: datetime) -> None:
        block = self.stored.get(key)
        if block is None:
            self.inserts.add((self.calendar_id, key, start, end, self.now))
            self.added.append((start, end))
        elif (block[1], block[2]) != (start, end):
            self.updates.add({"id": block[0], "start": start, "end": end, "applied_at": self.now})
            self.removed.append((block[1], block[2]))
            self.added.append((start, end))

    def drop(self, key: str) -> None:
        block = self.stored.get(key)
        if block is not None:
            self.deletes.append(block[0])
            self.removed.append((block[1], block[2]))

    def drop_all_but(self, keys: dict[str, Any]) -> None:
        """A full sync's swap: every stored block whose key is not in `keys` goes."""
        for key, block in self.stored.items():
            if key not in keys:
                self.deletes.append(block[0])
                self.removed.append((block[1], block[2]))

    def record_change(self, cause: str, announced_host: int | None = None) -> None:
        """The outbound event of these writes (none if the host's busy time is the same);
        `announced_host`: the host, already found to have receivers and locked."""
        if not self.removed and not self.added:
            return
        host_id = announced_host or self.session.scalar(
            select(Calendar.host_id).where(Calendar.id == self.calendar_id)
        )
        if host_id is None:
            return
        record_busy_change(
            self.session,
            announced=announced_host is not None,
            host_id=host_id,
            calendar_id=self.calendar_id,
            cause=cause,
            removed=self.removed,
            added=self.added,
            now=self.now,
        )

    def write_deletes(self) -> None:
        for chunk in _chunks(self.deletes):
            self.session.execute(delete(BLOCKS).where(BLOCKS.c.id.in_(chunk)))


def apply_events(
    session: Session,
    calendar_id: int,
    decided: Iterable[DecidedEvent],
    *,
    horizon: Horizon,
    now: datetime,
    replace_all: bool,
    cause: str = "sync",
) -> ApplyStats:
    """Bring stored events and blocks in line with `decided`.

    `replace_all` (a full sync) also removes everything not in `decided`, in the same
    transaction: readers see the old set or the new one, never a gap or a ghost. Rows are
    written in batches while the listing is walked, never collected whole.
    """
    # The host's row first, if an endpoint receives its events: its writers (this sync,
    # another calendar's, a policy change, a manual block) then compute their outbound
    # changes one after the other, and always take the host before the blocks, so they
    # cannot deadlock on each other. Without receivers nothing is announced.
    announced_host = announced_host_of(session, calendar_id)
    incoming: dict[str, DecidedEvent] = {}
    for item in decided:
        incoming[item.facts.google_event_id] = item  # a later page wins
    keys = None if replace_all else list(incoming)
    events = _load_events(session, calendar_id, keys)
    blocks = _BlockChanges(session, calendar_id, _load_blocks(session, calendar_id, keys), now)

    stats = ApplyStats()
    # Keys being inserted are absent from the stored rows and the rest only touch stored
    # rows, so the statements cannot collide whatever order the batches run in.
    event_inserts = _Batched(lambda rows: insert_rows(session, EVENTS, EVENT_COLUMNS, rows))
    event_updates = _Batched(lambda rows: _update_rows(session, EVENTS, rows))
    event_deletes: list[int] = []

    for key, item in incoming.items():
        facts, decision = item.facts, item.decision
        stored = events.get(key)
        if decision is Reason.CANCELLED:
            # Keep a tombstone with the old times so `explain` can say it was cancelled.
            if stored is not None and stored[_STATUS] != "cancelled":
                event_updates.add(
                    {
                        "id": stored[_ID],
                        "status": "cancelled",
                        "decision": str(Reason.CANCELLED),
                        "google_updated": facts.updated or stored[_UPDATED],
                        "applied_at": now,
                    }
                )
                stats.changed_updated.extend([facts.updated] if facts.updated else [])
            blocks.drop(key)
            continue
        if not horizon.contains(facts):
            if stored is not None:
                event_deletes.append(stored[_ID])
            blocks.drop(key)
            continue
        values = _event_fields(facts, decision)
        changed = True
        if stored is None:
            event_inserts.add((calendar_id, key, *values, now))
        elif stored[1:] != values:
            changes = dict(zip(EVENT_FIELDS, values, strict=True))
            event_updates.add({"id": stored[_ID], "applied_at": now, **changes})
        else:
            changed = False
        if changed and facts.updated is not None:
            stats.changed_updated.append(facts.updated)
        if decision is Reason.BUSY:
            assert facts.start is not None and facts.end is not None
            blocks.busy(key, facts.start, facts.end)
        else:
            blocks.drop(key)

    if replace_all:
        event_deletes.extend(row[_ID] for key, row in events.items() if key not in incoming)
        blocks.drop_all_but(incoming)

    blocks.write_deletes()
    for chunk in _chunks(event_deletes):
        session.execute(delete(EVENTS).where(EVENTS.c.id.in_(chunk)))
    for batch in (event_updates, blocks.updates, event_inserts, blocks.inserts):
        batch.flush()
    if announced_host is not None:
        blocks.record_change(cause, announced_host)

    stats.events_written = event_inserts.count + event_updates.count
    stats.events_deleted = len(event_deletes)
    stats.blocks_upserted = blocks.inserts.count + blocks.updates.count
    stats.blocks_deleted = len(blocks.deletes)
    return stats


def redecide_host_events(
    session: Session, host_id: int, policy: BusyPolicy, now: datetime, cause: str = "policy_changed"
) -> RedecideStats:
    """Re-decide every stored event of the host's calendars under `policy`, from the stored
    facts (Google is not asked), and rewrite `decision` and the busy blocks to match.

    Only what changed is written: an event's `decision` (and `applied_at`), and its block
    (busy ⇔ a block). Times and the other facts are left as the last sync stored them.
    """
    stats = RedecideStats()
    calendar_ids = list(session.scalars(select(Calendar.id).where(Calendar.host_id == host_id)))
    for calendar_id in calendar_ids:
        events = _load_events(session, calendar_id, None)
        blocks = _BlockChanges(session, calendar_id, _load_blocks(session, calendar_id, None), now)
        decision_updates = _Batched(lambda rows: _update_rows(session, EVENTS, rows))
        for key, stored in events.items():
            facts = _stored_facts(key, stored)
            decision = decide(facts, policy)
            if decision != stored[_DECISION]:
                decision_updates.add(
                    {"id": stored[_ID], "decision": str(decision), "applied_at": now}
                )
            if decision is Reason.BUSY:
                assert facts.start is not None and facts.end is not None
                blocks.busy(key, facts.start, facts.end)
            else:
                blocks.drop(key)
        blocks.write_deletes()
        for batch in (decision_updates, blocks.updates, blocks.inserts):
            batch.flush()
        blocks.record_change(cause)
        stats.events_changed += decision_updates.count
        stats.blocks_added += blocks.inserts.count
        stats.blocks_removed += len(blocks.deletes)
    session.flush()
    return stats
