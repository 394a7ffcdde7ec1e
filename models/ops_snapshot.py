"""The whole deployment's health at one instant, read from the database.

Shared by the /metrics gauges (computed at scrape time, so they are global and correct
whichever process serves the scrape) and the built-in alert notifier.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.accounts import AccountState, GoogleAccount
from models.audits import persistent_differences
from models.calendars import Calendar, Channel, SyncState
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
    calendars: list[CalendarHealthRow] = field(default_factory=list)
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
        return {str(state): counts.get(str(state), 0) for state in CalendarState}

    @property
    def max_staleness_seconds(self) -> float:
        return max((row.staleness_seconds for row in self.calendars), default=0.0)

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
    session: Session, now: datetime, *, stale_after_seconds: int, safety_net_seconds: int
) -> OpsSnapshot:
    newest_channel = (
        select(Channel.calendar_id, func.max(Channel.expiration).label("expiration"))
        .where(Channel.stopped_at.is_(None))
        .group_by(Channel.calendar_id)
        .subquery()
    )
    # Plain columns, not ORM entities: every calendar is read on each scrape and alert round,
    # and building 100,000 entities costs seconds (bench/fleet_scale.py).
    rows = session.execute(
        select(
            Calendar.id,
            Calendar.account_id,
            Calendar.host_id,
            Calendar.created_at,
            *STATE_COLUMNS,
            GoogleAccount.state.label("account_state"),
            newest_channel.c.expiration,
        )
        .join(SyncState, SyncState.calendar_id == Calendar.id)
        .join(GoogleAccount, GoogleAccount.id == Calendar.account_id)
        .outerjoin(newest_channel, newest_channel.c.calendar_id == Calendar.id)
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
        calendars.append(
            CalendarHealthRow(
                calendar_id=state.id,
                account_id=state.account_id,
                host_id=state.host_id,
                state=health.state,
                pending_lag_seconds=max(0.0, health.lag_seconds or 0.0),
                staleness_seconds=max(0.0, (now - synced_or_attached).total_seconds()),
                error_code=state.last_error_code,
            )
        )
    live = Channel.stopped_at.is_(None)
    channels_live, expiring, oldest = session.execute(
        select(
            func.count(),
            func.count().filter(
                Channel.expiration > now, Channel.expiration <= now + EXPIRING_WITHIN
            ),
            func.min(Channel.created_at),
        ).where(live)
    ).one()
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
        channels_live=channels_live or 0,
        channels_expiring=expiring or 0,
        last_notification_at=_aware(last_notification),
        oldest_live_channel_at=_aware(oldest),
        soonest_channel_expiry=min(future_expiries, default=None),
        differing_from_google=differing,
    )


def _aware(value: datetime | None) -> datetime | None:
    # Aggregates bypass the column type on SQLite: they come back naive (UTC) or as text.

    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
