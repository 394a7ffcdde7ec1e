"""The dirty flag and the lease on a calendar's SyncState: the only coordination between the
webhook (marks dirty: intake.records), the sweeper (finds forgotten dirt) and sync
workers (claim and clear).

Every function is a single conditional UPDATE, so it is atomic on PostgreSQL and SQLite alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CursorResult,
    Table,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from models import stored_moments
from models.accounts import AccountState, GoogleAccount
from models.calendars import Calendar, Channel, SyncState

# Core statements on the hot path (claim, lease) skip the ORM's bulk-update bookkeeping.
SYNC_STATES = cast(Table, SyncState.__table__)


def may_call_google() -> tuple[ColumnElement[bool], ...]:
    """Filter: calendars Google may be called for (account not revoked, calendar not blocked).
    The query must join GoogleAccount and SyncState."""
    return (GoogleAccount.state == AccountState.OK, SyncState.blocked_reason.is_(None))


def lease_free(now: datetime | BindParameter[datetime]) -> ColumnElement[bool]:
    """Filter: no live lease on the calendar (none taken, or it ran out)."""
    return or_(SyncState.lease_until.is_(None), SyncState.lease_until < now)


def unsettled_calendars(session: Session, now: datetime) -> int:
    """How many calendars have work pending or in progress: dirty, mid-sync (also a dead
    worker's mark) or under a live lease. Zero means every known change is applied."""
    return session.scalar(  # type: ignore[return-value]  # count() is never NULL
        select(func.count())
        .select_from(SyncState)
        .where(
            or_(
                SyncState.dirty_since.is_not(None),
                SyncState.syncing_since.is_not(None),
                SyncState.lease_until > now,
            )
        )
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
    # One statement (it runs for every sync): the lease, and the mark moved to
    # syncing_since, where it stays until the commit (or a failure puts it back), so a crash
    # cannot lose it. SET expressions read the row as it was before the update.
    taken = session.execute(
        _CLAIM_DIRTY if require_dirty else _CLAIM_ANY,
        {
            "id": calendar_id,
            "now": now,
            "owner": owner,
            "until": now + timedelta(seconds=lease_seconds),
        },
    ).one_or_none()
    if taken is None:
        return None
    return Claim(calendar_id, owner, taken.syncing_since, taken.sync_token)


def _earliest_mark() -> ColumnElement[Any]:
    """The earlier of the dirty mark and a taken one, either possibly NULL (portable: no
    LEAST, which SQLite lacks and which differs on NULL)."""
    dirty, syncing = SYNC_STATES.c.dirty_since, SYNC_STATES.c.syncing_since
    return case(
        (dirty.is_(None), syncing),
        (syncing.is_(None), dirty),
        (dirty < syncing, dirty),
        else_=syncing,
    )


def _claim_statement(*, require_dirty: bool) -> Any:
    table = SYNC_STATES
    moment = table.c.lease_until.type
    now: BindParameter[datetime] = bindparam("now", type_=moment)
    conditions = [
        table.c.calendar_id == bindparam("id"),
        lease_free(now),
    ]
    if require_dirty:
        # A mark a dead worker had taken (syncing_since) is work too.
        conditions.append(or_(table.c.dirty_since.is_not(None), table.c.syncing_since.is_not(None)))
    return (
        update(table)
        .where(and_(*conditions))
        .values(
            lease_owner=bindparam("owner"),
            lease_until=bindparam("until", type_=moment),
            dirty_since=None,
            syncing_since=_earliest_mark(),
            last_attempt_at=now,
        )
        .returning(table.c.syncing_since, table.c.sync_token)
    )


# The statements every sync runs, built once: building one per call (and its cache key)
# was a sixth of a sync worker's CPU. Core, on the table: no ORM execution layer either.
_CLAIM_DIRTY = _claim_statement(require_dirty=True)
_CLAIM_ANY = _claim_statement(require_dirty=False)
_EXTEND_LEASE = (
    update(SYNC_STATES)
    .where(
        SYNC_STATES.c.calendar_id == bindparam("id"),
        SYNC_STATES.c.lease_owner == bindparam("owner"),
    )
    .values(lease_until=bindparam("until", type_=SYNC_STATES.c.lease_until.type))
)


def earliest(*moments: datetime | None) -> datetime | None:
    present = [m for m in moments if m is not None]
    return min(present) if present else None


def extend_lease(
    session: Session, calendar_id: int, owner: str, now: datetime, lease_seconds: int
) -> bool:
    """Renew a lease this owner holds. False if it was lost (expired and taken over)."""
    result = session.execute(
        _EXTEND_LEASE,
        {
            "id": calendar_id,
            "owner": owner,
            "until": now + timedelta(seconds=lease_seconds),
        },
    )
    return cast(CursorResult[Any], result).rowcount == 1


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
    only: int | None = None,
    at: stored_moments.PagePosition = stored_moments.START,
    limit: int = stored_moments.PAGE_ROWS,
) -> tuple[list[tuple[Any, ...]], stored_moments.PagePosition | None]:
    """One page (from `at`, at most `limit` sync states) of the calendars not being synced
    whose stored `next_check_at` is unknown or has come (by index: models/stored_moments.py),
    with what the schedule rules need: (calendar_id, last_success_at, full_sync_at, newest
    channel expiration, channel last heard, watch_problem, next_check_at as read); and
    where the next page starts (None: none). Which of them are really due is decided by
    rules.sync_schedule; the caller stores the next moment of those that are not."""
    # Two steps, each by index: the sync states whose moment came, then their calendars
    # and accounts by key (one join over thousands of due rows made PostgreSQL scan
    # every calendar).
    query = select(
        SyncState.calendar_id,
        SyncState.last_success_at,
        SyncState.full_sync_at,
        SyncState.next_check_at,
    ).where(SyncState.blocked_reason.is_(None), lease_free(now))
    if only is not None:
        query = query.where(SyncState.calendar_id == only)
    due_states, following = stored_moments.page(
        session, query, SyncState.next_check_at, now, at, limit
    )
    problems = callable_calendars(session, sorted(row.calendar_id for row in due_states))
    states = [row for row in due_states if row.calendar_id in problems]
    channels = live_channel_timing(session, sorted(row.calendar_id for row in states))
    candidates = [
        (
            row.calendar_id,
            row.last_success_at,
            row.full_sync_at,
            *channels.get(row.calendar_id, (None, None)),
            problems[row.calendar_id],
            row.next_check_at,
        )
        for row in states
    ]
    return candidates, following


def callable_calendars(session: Session, calendar_ids: list[int]) -> dict[int, str | None]:
    """Of these calendars, those whose Google account may be called, with their watch
    problem (None = none), by key."""
    found: dict[int, str | None] = {}
    for start in range(0, len(calendar_ids), 500):
        rows = session.execute(
            select(Calendar.id, Calendar.watch_problem).where(
                Calendar.id.in_(calendar_ids[start : start + 500]),
                # By the partial index of the few accounts not ok (a join read them all).
                Calendar.account_id.not_in(
                    select(GoogleAccount.id).where(text("google_accounts.state <> 'ok'"))
                ),
            )
        ).all()
        found.update({calendar_id: problem for calendar_id, problem in rows})
    return found


def live_channel_timing(
    session: Session, calendar_ids: list[int]
) -> dict[int, tuple[datetime | None, datetime | None]]:
    """Per calendar (of these): newest live channel expiration and when it was last heard
    from (latest notification, else the channel's creation), by the channels' calendar index."""
    found: dict[int, tuple[datetime | None, datetime | None]] = {}
    for start in range(0, len(calendar_ids), 500):
        chunk = calendar_ids[start : start + 500]
        rows = session.execute(
            select(
                Channel.calendar_id,
                func.max(Channel.expiration),
                func.max(func.coalesce(Channel.last_notification_at, Channel.created_at)),
            )
            .where(
                Channel.calendar_id.in_(chunk),
                Channel.stopped_at.is_(None),
                Channel.expiration.is_not(None),
            )
            .group_by(Channel.calendar_id)
        ).all()
        for calendar_id, expiration, heard in rows:
            found[calendar_id] = (_utc(expiration), _utc(heard))
    return found


def _utc(value: Any) -> datetime | None:
    # Aggregates bypass the column type on SQLite: naive (UTC) or text.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return cast(datetime, value if value.tzinfo else value.replace(tzinfo=UTC))
