"""Moments stored per calendar so periodic reads find the rows whose moment came by index
(sync_states.next_check_at, next_audit_at, watch_check_at; see models/calendars.py).

The rule in rules/ stays the judge: a periodic read fetches the rows whose stored moment is
unknown (None) or has come, asks the rule, and stores the next moment of those not due. A
stored moment is never later than the rule's, because every writer that can make it earlier
(a channel stopped or refused, ...) resets it to its own time (`recheck`), and the round
stores a moment only if nobody reset it since it read the row (compare and set).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, and_, bindparam, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from models.calendars import SyncState

MomentColumn = InstrumentedAttribute[datetime | None]
# A reset stores its time less this margin: a round on a machine whose clock is behind (or a
# caller asking about a moment just before) still finds the row.
RECHECK_MARGIN = timedelta(days=1)
ALL = (SyncState.next_check_at, SyncState.next_audit_at, SyncState.watch_check_at)


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
