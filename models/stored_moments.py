"""Moments stored per calendar so periodic reads find the rows whose moment came by index
(sync_states.next_check_at, next_audit_at, watch_check_at; see models/calendars.py).

The rule in rules/ stays the judge: a periodic read fetches the rows whose stored moment is
unknown (None) or has come, asks the rule, and stores the next moment of those not due. A
stored moment is never later than the rule's, because every writer that can make it earlier
(a channel stopped or refused, ...) resets it to its own time (`recheck`), and the round
stores a moment only if nobody reset it since it read the row (compare and set).

A round reads its rows a page at a time (`page`): unknown moments first, then known ones up
to the round's instant, each in the order of the moment's index `(moment, calendar_id)`, so
every statement reads at most a page of index entries however many calendars are due.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVarTuple, cast

from sqlalchemy import ColumnElement, Row, Select, Table, and_, bindparam, or_, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from models.calendars import SyncState

MomentColumn = InstrumentedAttribute[datetime | None]
# A reset stores its time less this margin: a round on a machine whose clock is behind (or a
# caller asking about a moment just before) still finds the row.
RECHECK_MARGIN = timedelta(days=1)
ALL = (SyncState.next_check_at, SyncState.next_audit_at, SyncState.watch_check_at)
PAGE_ROWS = 500


@dataclass(frozen=True)
class PagePosition:
    """Where a paged read stands: among the unknown moments (`known` False) or the known
    ones, after the last row read (`calendar_id` None: from the start of that part)."""

    known: bool = False
    moment: datetime | None = None  # the last row's moment (known part)
    calendar_id: int | None = None


START = PagePosition()
Columns = TypeVarTuple("Columns")


def page(
    session: Session,
    query: Select[*Columns],
    column: MomentColumn,
    until: datetime,
    at: PagePosition = START,
    limit: int = PAGE_ROWS,
) -> tuple[list[Row[*Columns]], PagePosition | None]:
    """One page of `query`'s rows whose `column` is unknown or comes by `until`, from `at`;
    and where the next page starts (None: this was the last). `query` selects from
    SyncState, with its calendar_id and `column` among the columns. Keyset paging (no
    OFFSET): each page starts in the index where the last one ended."""
    rows = list(
        session.execute(
            query.where(*_after(column, until, at))
            .order_by(column, SyncState.calendar_id)
            .limit(limit)
        ).all()
    )
    if len(rows) < limit:
        return rows, None if at.known else PagePosition(known=True)
    last = rows[-1]
    moment = getattr(last, column.key) if at.known else None
    return rows, PagePosition(at.known, moment, last.calendar_id)


def _after(column: MomentColumn, until: datetime, at: PagePosition) -> list[ColumnElement[bool]]:
    # Two parts, each a range of the (moment, calendar_id) index: an OR of "unknown" and
    # "came" would make PostgreSQL gather both and sort them before the LIMIT.
    if not at.known:
        unknown: list[ColumnElement[bool]] = [column.is_(None)]
        if at.calendar_id is not None:
            unknown.append(SyncState.calendar_id > at.calendar_id)
        return unknown
    came: list[ColumnElement[bool]] = [column <= until]
    if at.calendar_id is not None and at.moment is not None:
        # (moment, id) > (last moment, last id), with the moment's bound as an index range.
        came += [
            column >= at.moment,
            or_(column > at.moment, SyncState.calendar_id > at.calendar_id),
        ]
    return came


def recheck(
    session: Session,
    calendar_ids: Iterable[int],
    at: datetime,
    columns: Sequence[MomentColumn] = ALL,
) -> None:
    """The calendars' inputs changed at `at`: judge them at the next round."""
    ids = sorted(set(calendar_ids))
    if ids:
        session.execute(
            update(SyncState)
            .where(SyncState.calendar_id.in_(ids))
            .values({column.key: at - RECHECK_MARGIN for column in columns})
        )


def store(
    session: Session,
    column: MomentColumn,
    moments: Iterable[tuple[int, datetime | None, datetime]],
) -> None:
    """(calendar id, moment as read, next moment): store each next moment unless the row
    was reset since it was read."""
    rows = list(moments)
    table = cast(Table, SyncState.__table__)
    for unknown in (True, False):
        params = [
            {"cid": calendar_id, "seen": seen, "moment": moment}
            for calendar_id, seen, moment in rows
            if (seen is None) is unknown
        ]
        if not params:
            continue
        stored = table.c[column.key]
        unchanged = stored.is_(None) if unknown else stored == bindparam("seen")
        # Core executemany: one round trip per batch, not per row.
        session.connection().execute(
            update(table)
            .where(and_(table.c.calendar_id == bindparam("cid"), unchanged))
            .values({column.key: bindparam("moment")}),
            params,
        )
