"""The dirty flag and the lease on a calendar's SyncState: the only coordination between the
webhook (marks dirty), the sweeper (finds forgotten dirt) and sync workers (claim and clear).

Every function is a single conditional UPDATE, so it is atomic on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    Update,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from models.accounts import AccountState, GoogleAccount
from models.base import UTCDateTime
from models.calendars import Calendar, Channel, SyncState


def may_call_google() -> tuple[ColumnElement[bool], ...]:
    """Filter: calendars Google may be called for (account not revoked, calendar not blocked).
    The query must join GoogleAccount and SyncState."""
    return (GoogleAccount.state == AccountState.OK, SyncState.blocked_reason.is_(None))


def lease_free(now: datetime) -> ColumnElement[bool]:
    """Filter: no live lease on the calendar (none taken, or it ran out)."""
    return or_(SyncState.lease_until.is_(None), SyncState.lease_until < now)


def mark_dirty(session: Session, calendar_id: int, received_at: datetime) -> bool:
    """Record a notification. True only on the clean→dirty transition (enqueue then)."""
    result = session.execute(
        update(SyncState)
        .where(SyncState.calendar_id == calendar_id, SyncState.dirty_since.is_(None))
        .values(dirty_since=received_at)
    )
    return result.rowcount == 1


# Built once: record_change_notification is on the webhook's hot path.
_NOW = bindparam("now", type_=UTCDateTime())
_LATER_NOTIFICATION = case(
    (
        or_(SyncState.last_notification_at.is_(None), SyncState.last_notification_at < _NOW),
        _NOW,
    ),
    else_=SyncState.last_notification_at,
)
_MARK_DIRTY_AND_NOTIFIED = (
    update(SyncState)
    .where(SyncState.calendar_id == bindparam("for_calendar_id"), SyncState.dirty_since.is_(None))
    .values(dirty_since=_NOW, last_notification_at=_LATER_NOTIFICATION)
)
_NOTIFIED = (
    update(SyncState)
    .where(SyncState.calendar_id == bindparam("for_calendar_id"))
    .values(last_notification_at=_LATER_NOTIFICATION)
)
# PostgreSQL in one statement: lock the row, keep its previous mark, set both columns, and
# return whether the mark was clean before. A concurrent notification waits on the lock and
# then sees the committed mark, so exactly one of them reports the transition.
_PREVIOUS = (
    select(SyncState.calendar_id, SyncState.dirty_since)
    .where(SyncState.calendar_id == bindparam("for_calendar_id"))
    .with_for_update()
    .subquery("previous")
)
_MARK_DIRTY_RETURNING_TRANSITION = (
    update(SyncState)
    .where(SyncState.calendar_id == _PREVIOUS.c.calendar_id)
    .values(
        dirty_since=func.coalesce(SyncState.dirty_since, _NOW),
        last_notification_at=_LATER_NOTIFICATION,
    )
    .returning(_PREVIOUS.c.dirty_since.is_(None))
)


# PostgreSQL statements combining _MARK_DIRTY_RETURNING_TRANSITION with a caller's update.
_COMBINED: dict[int, tuple[Update, Update]] = {}


def _combined_with(along_with: Update) -> Update:
    found = _COMBINED.get(id(along_with))
    if found is None or found[0] is not along_with:
        combined = _MARK_DIRTY_RETURNING_TRANSITION.add_cte(along_with.cte("along_with"))
        found = _COMBINED[id(along_with)] = (along_with, combined)
    return found[1]


def record_change_notification(
    connection: Connection,
    calendar_id: int,
    received_at: datetime,
    *,
    along_with: Update | None = None,
    along_with_params: Mapping[str, Any] | None = None,
) -> bool:
    """A change notification: `mark_dirty` plus the calendar's last-notification time (never
    moved back). True only on the clean→dirty transition (enqueue then). Each statement is
    atomic on its own, so this also holds on an autocommit connection.

    `along_with` is another UPDATE (with its parameters; `now` is given) that belongs with
    the notification (the channel's bookkeeping). On PostgreSQL everything is one statement,
    one round trip; elsewhere (SQLite returns no other table's columns) `along_with` runs
    first, then one statement if the calendar was clean or two if it already was dirty."""
    params = {"for_calendar_id": calendar_id, "now": received_at, **(along_with_params or {})}
    if connection.dialect.name == "postgresql":
        statement = _MARK_DIRTY_RETURNING_TRANSITION
        if along_with is not None:
            statement = _combined_with(along_with)
        return bool(connection.execute(statement, params).scalar())
    if along_with is not None:
        connection.execute(along_with, params)
    if connection.execute(_MARK_DIRTY_AND_NOTIFIED, params).rowcount == 1:
        return True
    connection.execute(_NOTIFIED, params)
    return False


def unmark_dirty(session: Session | Connection, calendar_id: int, received_at: datetime) -> None:
    """Undo `mark_dirty` when the task could not be enqueued, so Google's retry of the
    notification (we answered 503) makes the transition again."""
    session.execute(
        update(SyncState)
        .where(SyncState.calendar_id == calendar_id, SyncState.dirty_since == received_at)
        .values(dirty_since=None)
    )


def restore_dirty(session: Session, calendar_id: int, dirty_since: datetime) -> None:
    """Put back a dirty mark a failed run had taken, keeping the earliest time."""
    session.execute(
        update(SyncState).where(SyncState.calendar_id == calendar_id).values(syncing_since=None)
    )
    session.execute(
        update(SyncState)
        .where(
            SyncState.calendar_id == calendar_id,
            or_(SyncState.dirty_since.is_(None), SyncState.dirty_since > dirty_since),
        )
        .values(dirty_since=dirty_since)
    )


@dataclass(frozen=True)
class Claim:
    calendar_id: int
    owner: str
    dirty_since: datetime | None
    sync_token: str | None


def claim(
    session: Session,
    calendar_id: int,
    owner: str,
    now: datetime,
    lease_seconds: int,
    *,
    require_dirty: bool,
) -> Claim | None:
    """Take the calendar's lease and its dirty mark. None if another worker holds a live
    lease, or (when `require_dirty`) there is nothing to do."""
    conditions = [SyncState.calendar_id == calendar_id, lease_free(now)]
    if require_dirty:
        # A mark a dead worker had taken (syncing_since) is work too.
        conditions.append(
            or_(SyncState.dirty_since.is_not(None), SyncState.syncing_since.is_not(None))
        )
    taken = session.execute(
        update(SyncState)
        .where(and_(*conditions))
        .values(lease_owner=owner, lease_until=now + timedelta(seconds=lease_seconds))
    )
    if taken.rowcount != 1:
        return None
    # The row is now locked by this transaction: move the mark to syncing_since, where it
    # stays until the commit (or a failure puts it back), so a crash cannot lose it.
    state = session.execute(
        select(SyncState.dirty_since, SyncState.syncing_since, SyncState.sync_token).where(
            SyncState.calendar_id == calendar_id
        )
    ).one()
    pending = earliest(state.dirty_since, state.syncing_since)
    session.execute(
        update(SyncState)
        .where(SyncState.calendar_id == calendar_id)
        .values(dirty_since=None, syncing_since=pending, last_attempt_at=now)
    )
    return Claim(calendar_id, owner, pending, state.sync_token)


def earliest(*moments: datetime | None) -> datetime | None:
    present = [m for m in moments if m is not None]
    return min(present) if present else None


def extend_lease(
    session: Session, calendar_id: int, owner: str, now: datetime, lease_seconds: int
) -> bool:
    """Renew a lease this owner holds. False if it was lost (expired and taken over)."""
    result = session.execute(
        update(SyncState)
        .where(SyncState.calendar_id == calendar_id, SyncState.lease_owner == owner)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
    )
    return result.rowcount == 1


def take_dirty(
    session: Session, calendar_id: int, owner: str, now: datetime, lease_seconds: int
) -> datetime | None:
    """For the lease holder starting another pass: take the dirty mark (its time, cleared)."""
    if not extend_lease(session, calendar_id, owner, now, lease_seconds):
        return None
    dirty_since = session.scalar(
        select(SyncState.dirty_since).where(SyncState.calendar_id == calendar_id)
    )
    session.execute(
        update(SyncState)
        .where(SyncState.calendar_id == calendar_id)
        .values(dirty_since=None, syncing_since=dirty_since, last_attempt_at=now)
    )
    return dirty_since


def release_lease(session: Session, calendar_id: int, owner: str) -> None:
    session.execute(
        update(SyncState)
        .where(SyncState.calendar_id == calendar_id, SyncState.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    )


def lease_remaining(session: Session, calendar_id: int, now: datetime) -> float:
    until = session.scalar(
        select(SyncState.lease_until).where(SyncState.calendar_id == calendar_id)
    )
    return max(0.0, (until - now).total_seconds()) if until else 0.0


def forgotten_dirty(session: Session, now: datetime, older_than_seconds: int) -> list[int]:
    """Calendars dirty for longer than the threshold, or whose syncing worker died, with no
    live lease: their task was lost."""
    cutoff = now - timedelta(seconds=older_than_seconds)
    return list(
        session.scalars(
            select(SyncState.calendar_id)
            .join(Calendar, Calendar.id == SyncState.calendar_id)
            .join(GoogleAccount, GoogleAccount.id == Calendar.account_id)
            .where(
                *may_call_google(),
                or_(SyncState.dirty_since < cutoff, SyncState.syncing_since.is_not(None)),
                lease_free(now),
            )
        )
    )


def schedule_candidates(
    session: Session,
    now: datetime,
    synced_before: datetime,
    fully_synced_before: datetime,
    only: int | None = None,
) -> list[Row]:
    """Calendars not being synced whose last sync or last full sync is old enough that a
    periodic sync may be due, with what the schedule rules need: (calendar_id,
    last_success_at, full_sync_at, newest channel expiration, channel last heard,
    watch_problem). Which of them are really due is decided by worker.sync_schedule."""
    channel = (
        select(
            Channel.calendar_id.label("calendar_id"),
            func.max(Channel.expiration).label("expiration"),
            func.max(func.coalesce(Channel.last_notification_at, Channel.created_at)).label(
                "last_heard"
            ),
        )
        .where(Channel.stopped_at.is_(None), Channel.expiration.is_not(None))
        .group_by(Channel.calendar_id)
        .subquery()
    )
    query = (
        select(
            SyncState.calendar_id,
            SyncState.last_success_at,
            SyncState.full_sync_at,
            channel.c.expiration,
            channel.c.last_heard,
            Calendar.watch_problem,
        )
        .join(Calendar, Calendar.id == SyncState.calendar_id)
        .join(GoogleAccount, GoogleAccount.id == Calendar.account_id)
        .outerjoin(channel, channel.c.calendar_id == SyncState.calendar_id)
        .where(
            *may_call_google(),
            lease_free(now),
            or_(
                SyncState.last_success_at.is_(None),
                SyncState.last_success_at < synced_before,
                SyncState.full_sync_at.is_(None),
                SyncState.full_sync_at < fully_synced_before,
            ),
        )
        .order_by(SyncState.calendar_id)
    )
    if only is not None:
        query = query.where(SyncState.calendar_id == only)
    return list(session.execute(query).all())
