"""Timed changes at the emulator and when calsync committed each of them.

A change is an insert of a new busy event, a move (patch of start and end) of an existing
one, or a delete. Its time is the event's `updated` as the emulator stamped it (millisecond
precision; Google's own "when did this change"); its commit time is the `applied_at` calsync
wrote with it (busy_blocks for inserts and moves; the cancelled tombstone in calendar_events
for deletes, written in the same transaction that removes the block). Each event is changed
at most once per phase, so every change has exactly one row that proves it was applied.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from bench.calendar_fleet import event_body, parallel, parse_time, random_slot, slot_base
from models import BusyBlock, CalendarEvent
from models.db import session_scope

KIND_WEIGHTS = {"insert": 0.4, "move": 0.4, "delete": 0.2}
DRIVER_THREADS = 6
CHUNK = 500


@dataclass
class Change:
    kind: str
    google_calendar_id: str
    event_id: str = ""
    start: datetime | None = None
    end: datetime | None = None
    sent_at: float = 0.0  # driver wall clock right before the control call
    updated: datetime | None = None  # the emulator's stamp of the change
    applied_at: datetime | None = None

    @property
    def lag_ms(self) -> float | None:
        if self.updated is None or self.applied_at is None:
            return None
        return (self.applied_at - self.updated).total_seconds() * 1000


@dataclass
class PoolEvent:
    google_calendar_id: str
    event_id: str


class ChangeLoad:
    """Makes changes at a steady rate over random calendars; keeps the pool of live events
    (so moves and deletes have targets) in step between phases."""

    def __init__(self, control: Any, calendars: list[str], seeded: dict[str, list[dict]], seed=7):
        self.control = control
        self.calendars = calendars
        self.rng = random.Random(seed)
        self.base = slot_base()
        self.pool = [
            PoolEvent(cal, event["id"]) for cal, events in seeded.items() for event in events
        ]

    def _plan(self) -> Change:
        kind = self.rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
        if kind != "insert" and self.pool:
            index = self.rng.randrange(len(self.pool))
            self.pool[index], self.pool[-1] = self.pool[-1], self.pool[index]
            target = self.pool.pop()
            change = Change(kind, target.google_calendar_id, target.event_id)
        else:
            change = Change("insert", self.rng.choice(self.calendars))
        if change.kind != "delete":
            change.start, change.end = random_slot(self.rng, self.base)
        return change

    def _make(self, change: Change) -> Change:
        change.sent_at = time.time()
        if change.kind == "insert":
            assert change.start and change.end
            event = self.control.insert_event(
                change.google_calendar_id, event_body(change.start, change.end)
            )
            change.event_id = event["id"]
            change.updated = parse_time(event["updated"])
        elif change.kind == "move":
            assert change.start and change.end
            event = self.control.patch_event(
                change.google_calendar_id,
                change.event_id,
                {k: v for k, v in event_body(change.start, change.end).items() if k != "summary"},
            )
            change.updated = parse_time(event["updated"])
        else:
            self.control.delete_event(change.google_calendar_id, change.event_id)
        return change

    def run(self, rate: float, seconds: float) -> tuple[list[Change], float]:
        """Changes at `rate` per second for `seconds`; returns them and the achieved rate."""
        total = max(1, round(rate * seconds))
        futures: list[Future[Change]] = []
        with ThreadPoolExecutor(DRIVER_THREADS) as pool:
            started = time.monotonic()
            for i in range(total):
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(self._make, self._plan()))
            changes = [f.result() for f in futures]
            elapsed = time.monotonic() - started
        deletes = [c for c in changes if c.kind == "delete"]

        def tombstone_updated(change: Change) -> None:
            tombstone = self.control.get_event(change.google_calendar_id, change.event_id)
            change.updated = parse_time(tombstone["updated"])

        parallel(tombstone_updated, deletes)
        for change in changes:
            if change.kind != "delete":
                self.pool.append(PoolEvent(change.google_calendar_id, change.event_id))
        return changes, total / elapsed if elapsed > 0 else float("nan")


def record_applied(changes: list[Change]) -> int:
    """Fill in `applied_at` of changes calsync has committed; returns how many are missing."""
    wanted = [c for c in changes if c.applied_at is None and c.kind != "delete"]
    deletes = [c for c in changes if c.applied_at is None and c.kind == "delete"]
    with session_scope() as session:
        for i in range(0, len(wanted), CHUNK):
            chunk = {c.event_id: c for c in wanted[i : i + CHUNK]}
            rows = session.execute(
                select(
                    BusyBlock.event_key, BusyBlock.start, BusyBlock.end, BusyBlock.applied_at
                ).where(BusyBlock.event_key.in_(list(chunk)))
            )
            for key, start, end, applied_at in rows:
                change = chunk[key]
                if (start, end) == (change.start, change.end):
                    change.applied_at = applied_at
        for i in range(0, len(deletes), CHUNK):
            chunk = {c.event_id: c for c in deletes[i : i + CHUNK]}
            rows = session.execute(
                select(CalendarEvent.google_event_id, CalendarEvent.applied_at).where(
                    CalendarEvent.google_event_id.in_(list(chunk)),
                    CalendarEvent.status == "cancelled",
                )
            )
            for key, applied_at in rows:
                chunk[key].applied_at = applied_at
    return sum(c.applied_at is None for c in changes)


def wait_applied(changes: list[Change], timeout: float, stop: threading.Event | None = None) -> int:
    """Wait until every change is committed (or the timeout); returns how many are missing."""
    deadline = time.monotonic() + timeout
    while True:
        missing = record_applied(changes)
        if not missing or time.monotonic() > deadline or (stop and stop.is_set()):
            return missing
        time.sleep(0.5)
