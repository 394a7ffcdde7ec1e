"""The whole deployment's health at one instant, read from the database.

Shared by the /metrics gauges (computed at scrape time, so they are global and correct
whichever process serves the scrape) and the built-in alert notifier.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session, aliased

from models import fleet_counts
from models.accounts import AccountState, GoogleAccount
from models.audits import persistent_differences
from models.calendars import ATTENTION, Calendar, Channel, SyncState
from rules.health import CalendarState, evaluate_state_row

EXPIRING_WITHIN = timedelta(hours=24)


@dataclass(frozen=True)
class CalendarHealthRow:
    calendar_id: int
    account_id: int
    host_id: int
    state: CalendarState
    pending_lag_seconds: float  # a recorded notification not yet applied; 0 = none
    staleness_seconds: float  # since the last successful sync (or since attached)
    error_code: str | None


@dataclass(frozen=True)
class DifferingCalendar:
    """A calendar whose newest audit verdict is a mismatch that survived the full resync."""

    calendar_id: int
    host_id: int
    audited_at: datetime
    differences: list[dict[str, str]]  # [{"start", "end"}] UTC: ranges only, never titles
    differing_seconds: float


@dataclass(frozen=True)
class OpsSnapshot:
    taken_at: datetime
    # Not ok, stale or with a change pending (all with take_snapshot(every_calendar=True)).
    calendars: list[CalendarHealthRow] = field(default_factory=list)
    ok_unlisted: int = 0  # ok calendars not in `calendars`
    oldest_sync_seconds: float = 0.0  # staleness of the longest-unsynced calendar of all
    channels_live: int = 0
    channels_expiring: int = 0  # live, not yet expired, expiring within 24 h
    # Newest notification received on any channel; None = never (see last_heard_at).
    last_notification_at: datetime | None = None
    # Oldest live channel's creation: "silent since" when nothing was ever received.
    oldest_live_channel_at: datetime | None = None
    # Over watched calendars: the soonest expiry of a calendar's newest live channel.
    soonest_channel_expiry: datetime | None = None
    differing_from_google: list[DifferingCalendar] = field(default_factory=list)

    def count_by_state(self) -> dict[str, int]:
        counts = Counter(str(row.state) for row in self.calendars)
        counts[str(CalendarState.OK)] += self.ok_unlisted
        return {str(state): counts.get(str(state), 0) for state in CalendarState}

    @property
    def max_staleness_seconds(self) -> float:
        listed = max((row.staleness_seconds for row in self.calendars), default=0.0)
        return max(listed, self.oldest_sync_seconds)

    @property
    def max_pending_lag_seconds(self) -> float:
        return max((row.pending_lag_seconds for row in self.calendars), default=0.0)

    @property
    def soonest_channel_expiry_seconds(self) -> float | None:
        if self.soonest_channel_expiry is None:
            return None
        return (self.soonest_channel_expiry - self.taken_at).total_seconds()

    @property
    def silent_seconds(self) -> float | None:
        """How long no notification has arrived, while channels are live; None = n/a."""
        if not self.channels_live:
            return None
        heard = self.last_notification_at or self.oldest_live_channel_at
        return None if heard is None else max(0.0, (self.taken_at - heard).total_seconds())


# What evaluate_state_row and the rows below read of a SyncState.
STATE_COLUMNS = (
    SyncState.dirty_since,
    SyncState.syncing_since,
    SyncState.blocked_reason,
    SyncState.consecutive_failures,
    SyncState.lease_owner,
    SyncState.lease_until,
    SyncState.last_success_at,
    SyncState.last_error_code,
)


def take_snapshot(
    session: Session,
    now: datetime,
    *,
    stale_after_seconds: int,
    safety_net_seconds: int,
    every_calendar: bool = False,
) -> OpsSnapshot:
    """The deployment's health. `calendars` lists every calendar that is not ok, has not
    synced for 1.5 safety-net intervals or has a change pending (the alerts name them); the
    other ok ones are only counted (models/fleet_counts.py), unless `every_calendar`. Each
    read goes by an index, so a scrape or an alert round costs about the same at 100,000
    calendars as at 1,000 while the fleet is healthy."""
    newest_channel = (
        select(Channel.calendar_id, func.max(Channel.expiration).label("expiration"))
        .where(Channel.stopped_at.is_(None))
        .group_by(Channel.calendar_id)
    )
    # Plain columns, not ORM entities: building 100,000 entities costs seconds.
    query = select(
        Calendar.id,
        Calendar.account_id,
        Calendar.host_id,
        Calendar.created_at,
        *STATE_COLUMNS,
        GoogleAccount.state.label("account_state"),
    ).join(SyncState, SyncState.calendar_id == Calendar.id)
    query = query.join(GoogleAccount, GoogleAccount.id == Calendar.account_id)
    if every_calendar:
        channels = newest_channel.subquery()
        rows = session.execute(
            query.add_columns(channels.c.expiration).outerjoin(
                channels, channels.c.calendar_id == Calendar.id
            )
        ).all()
    else:
        ids = _attention_ids(session, now, safety_net_seconds)
        rows = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            channels = newest_channel.where(Channel.calendar_id.in_(chunk)).subquery()
            rows += session.execute(
                query.add_columns(channels.c.expiration)
                .outerjoin(channels, channels.c.calendar_id == Calendar.id)
                .where(Calendar.id.in_(chunk))
            ).all()
    calendars = []
    future_expiries = []
    for state in rows:
        account_state, expiration = state.account_state, state.expiration
        health = evaluate_state_row(
            state,
            account_needs_reauth=account_state == AccountState.NEEDS_REAUTH,
            channel_expiration=expiration,
            now=now,
            stale_after_seconds=stale_after_seconds,
            safety_net_seconds=safety_net_seconds,
        )
        if expiration is not None and expiration > now:
            future_expiries.append(expiration)
        synced_or_attached = state.last_success_at or state.created_at
        staleness = max(0.0, (now - synced_or_attached).total_seconds())
        lag = max(0.0, health.lag_seconds or 0.0)
        if (
            not every_calendar
            and health.state is CalendarState.OK
            and not lag
            and not _stale(staleness, safety_net_seconds)
        ):
            continue  # read as a candidate, but ok with nothing pending: counted below
        calendars.append(
            CalendarHealthRow(
                calendar_id=state.id,
                account_id=state.account_id,
                host_id=state.host_id,
                state=health.state,
                pending_lag_seconds=lag,
                staleness_seconds=staleness,
                error_code=state.last_error_code,
            )
        )
    live = Channel.stopped_at.is_(None)
    expiring_soon = (Channel.expiration > now, Channel.expiration <= now + EXPIRING_WITHIN)
    expiring_count: int | None
    oldest_live: datetime | None
    if every_calendar:  # every row read: the reference the indexed answer is tested against
        ok_unlisted = 0
        oldest_sync_seconds = 0.0
        soonest = min(future_expiries, default=None)
        channels_live, expiring_count, oldest_live = session.execute(
            select(
                func.count(), func.count().filter(*expiring_soon), func.min(Channel.created_at)
            ).where(live)
        ).one()
    else:
        counts = fleet_counts.current(session)
        ok_unlisted = counts.calendars - len(calendars)
        synced = _aware(session.scalar(select(func.min(SyncState.last_success_at))))
        oldest_sync_seconds = 0.0 if synced is None else max(0.0, (now - synced).total_seconds())
        soonest = _soonest_newest_expiry(session, now)
        channels_live = counts.live_channels
        # The few expiring within a day: a range of the live channels' expiry index.
        expiring_count = session.scalar(select(func.count()).where(live, *expiring_soon))
        oldest_live = session.scalar(
            select(Channel.created_at).where(live).order_by(Channel.created_at).limit(1)
        )
    last_notification = session.scalar(select(func.max(Channel.last_notification_at)))
    differing = [
        DifferingCalendar(
            audit.calendar_id, host_id, audit.at, list(audit.differences), audit.differing_seconds
        )
        for audit, host_id in persistent_differences(session)
    ]
    return OpsSnapshot(
        taken_at=now,
        calendars=calendars,
        ok_unlisted=ok_unlisted,
        oldest_sync_seconds=oldest_sync_seconds,
        channels_live=channels_live or 0,
        channels_expiring=expiring_count or 0,
        last_notification_at=_aware(last_notification),
        oldest_live_channel_at=_aware(oldest_live),
        soonest_channel_expiry=soonest,
        differing_from_google=differing,
    )


def _aware(value: datetime | None) -> datetime | None:
    # Aggregates bypass the column type on SQLite: they come back naive (UTC) or as text.

    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _stale(staleness_seconds: float, safety_net_seconds: int) -> bool:
    # The alert's and the health rule's "not synced for 1.5 safety-net intervals".
    return staleness_seconds > safety_net_seconds * 1.5


def _attention_ids(session: Session, now: datetime, safety_net_seconds: int) -> list[int]:
    """Calendars that may be other than ok, each set by an index: flagged sync states,
    not synced for 1.5 safety-net intervals, channels that may have stopped working
    (watch_check_at, models/stored_moments.py), accounts needing re-authorization."""
    stale_before = now - timedelta(seconds=safety_net_seconds * 1.5)
    found: set[int] = set(session.scalars(select(SyncState.calendar_id).where(text(ATTENTION))))
    found.update(
        session.scalars(
            select(SyncState.calendar_id).where(SyncState.last_success_at < stale_before)
        )
    )
    found.update(
        session.scalars(
            select(SyncState.calendar_id).where(
                or_(SyncState.watch_check_at.is_(None), SyncState.watch_check_at <= now)
            )
        )
    )
    found.update(
        session.scalars(
            select(Calendar.id)
            .join(GoogleAccount, GoogleAccount.id == Calendar.account_id)
            # Written as the partial index's predicate, so the index serves it.
            .where(text("google_accounts.state <> 'ok'"))
        )
    )
    return sorted(found)


def _soonest_newest_expiry(session: Session, now: datetime) -> datetime | None:
    """The soonest future expiry among calendars' newest live channels: live channels by
    expiry (index), the first with no later live channel on its calendar."""
    later = aliased(Channel)
    newer_exists = (
        select(later.id)
        .where(
            later.calendar_id == Channel.calendar_id,
            later.stopped_at.is_(None),
            later.expiration > Channel.expiration,
        )
        .exists()
    )
    return _aware(
        session.scalar(
            select(Channel.expiration)
            .where(Channel.stopped_at.is_(None), Channel.expiration > now, ~newer_exists)
            .order_by(Channel.expiration)
            .limit(1)
        )
    )
