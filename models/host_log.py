"""Read queries behind the host's sync log, and the pruning of old sync runs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.calendars import Calendar, Channel
from models.sync_runs import SyncRun

MAX_LOG_ROWS = 5000  # a week of a busy host; the page says when it cut the list


def host_runs(
    session: Session,
    host_id: int,
    since: datetime,
    *,
    failures_only: bool = False,
    calendar_id: int | None = None,
) -> list[tuple[SyncRun, int]]:
    """The host's sync runs since `since` (of one of its calendars, if given), newest first,
    each with its calendar id."""
    query = (
        select(SyncRun, SyncRun.calendar_id)
        .join(Calendar, Calendar.id == SyncRun.calendar_id)
        .where(Calendar.host_id == host_id, SyncRun.started_at >= since)
    )
    if calendar_id is not None:
        query = query.where(SyncRun.calendar_id == calendar_id)
    if failures_only:
        query = query.where(SyncRun.outcome.not_in(("ok", "running")))
    rows = session.execute(
        query.order_by(SyncRun.started_at.desc(), SyncRun.id.desc()).limit(MAX_LOG_ROWS)
    )
    return [(run, calendar_id) for run, calendar_id in rows]


def host_channel_openings(
    session: Session, host_id: int, since: datetime, *, calendar_id: int | None = None
) -> list[datetime]:
    """When the host's watch channels (of one calendar, if given) were opened since `since`:
    first watches and renewals."""
    query = (
        select(Channel.created_at)
        .join(Calendar, Calendar.id == Channel.calendar_id)
        .where(Calendar.host_id == host_id, Channel.created_at >= since)
    )
    if calendar_id is not None:
        query = query.where(Channel.calendar_id == calendar_id)
    return list(session.scalars(query.order_by(Channel.created_at)))


def prune_sync_runs(session: Session, before: datetime) -> int:
    """Delete sync runs started before `before` (CALSYNC_SYNC_RUN_RETENTION_DAYS)."""
    result = session.execute(delete(SyncRun).where(SyncRun.started_at < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
