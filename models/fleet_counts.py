"""Counts of the whole fleet kept as the rows change, so the ops snapshot reads them without
counting 100,000 rows at every scrape and alert round (bench/fleet_scale.py).

Database triggers (migration 0010_fleet_counts) append a delta row whenever calendars are
inserted or deleted, or channels start or stop being live (inserted, deleted, `stopped_at`
set or cleared): every writer is counted, the ORM's, bulk loads' (COPY), cascading deletes
and (PostgreSQL) TRUNCATE alike. Appending never waits on a lock (one counter row updated
by every writer would serialize channel writers and could deadlock with their other row
locks); a count is the sum of its rows, and `fold` (hourly, with the history pruning)
replaces them by one row per name so the sum stays short.

A SQLite batch migration that rebuilds `calendars` or `channels` drops their triggers: such
a migration must create them again (tests/models/test_fleet_counts.py checks they exist).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import BigInteger, Integer, String, delete, func, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base

CALENDARS = "calendars"
LIVE_CHANNELS = "live_channels"  # channels with stopped_at IS NULL
# The triggers that keep them (migration 0010_fleet_counts), by table.
TRIGGERS = {
    "calendars": ("fleet_counts_calendars_insert", "fleet_counts_calendars_delete"),
    "channels": (
        "fleet_counts_channels_insert",
        "fleet_counts_channels_delete",
        "fleet_counts_channels_update",
    ),
}


class FleetCount(Base):
    """A change of one count; the count is the sum of its rows."""

    __tablename__ = "fleet_counts"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    name: Mapped[str] = mapped_column(String(32))
    delta: Mapped[int] = mapped_column(BigInteger)


@dataclass(frozen=True)
class FleetTotals:
    calendars: int
    live_channels: int


def current(session: Session) -> FleetTotals:
    """The counts now (one short read: a handful of rows after a fold)."""
    sums = dict(
        session.execute(
            select(FleetCount.name, func.sum(FleetCount.delta)).group_by(FleetCount.name)
        ).all()
    )
    return FleetTotals(int(sums.get(CALENDARS) or 0), int(sums.get(LIVE_CHANNELS) or 0))


def fold(session: Session) -> int:
    """Replace the delta rows by one row per count; returns how many rows were folded.
    Rows another transaction appends meanwhile are not visible to the DELETE, so they stay
    and still count; concurrent folds each fold the rows they deleted."""
    taken = session.execute(delete(FleetCount).returning(FleetCount.name, FleetCount.delta)).all()
    totals: Counter[str] = Counter()
    for name, delta in taken:
        totals[name] += delta
    if totals:
        session.execute(
            insert(FleetCount), [{"name": name, "delta": delta} for name, delta in totals.items()]
        )
    return len(taken)
