"""A calendar's health from its stored state. Pure: no I/O, so every case is testable."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

FAILING_AFTER = 3  # consecutive failed runs
LAGGING_AFTER_SECONDS = 60  # a notification not applied after this long


class CalendarState(enum.StrEnum):
    OK = "ok"
    SYNCING = "syncing"
    LAGGING = "lagging"
    FAILING = "failing"
    NEEDS_REAUTH = "needs_reauth"
    NOT_WATCHED = "not_watched"


@dataclass(frozen=True)
class HealthInputs:
    now: datetime
    account_needs_reauth: bool
    blocked_reason: str | None
    consecutive_failures: int
    dirty_since: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    last_success_at: datetime | None
    channel_expiration: datetime | None  # newest live channel; None = no channel
    stale_after_seconds: int
    safety_net_seconds: int


@dataclass(frozen=True)
class Health:
    state: CalendarState
    lag_seconds: float | None  # how long a known change has waited; None = never synced
    stale: bool


def evaluate_state_row(
    state: Any,
    *,
    account_needs_reauth: bool,
    channel_expiration: datetime | None,
    now: datetime,
    stale_after_seconds: int,
    safety_net_seconds: int,
) -> Health:
    """`evaluate` for a SyncState row: the one place that maps its columns to the inputs."""
    pending = [m for m in (state.dirty_since, state.syncing_since) if m is not None]
    return evaluate(
        HealthInputs(
            now=now,
            account_needs_reauth=account_needs_reauth,
            blocked_reason=state.blocked_reason,
            consecutive_failures=state.consecutive_failures,
            dirty_since=min(pending) if pending else None,
            lease_owner=state.lease_owner,
            lease_until=state.lease_until,
            last_success_at=state.last_success_at,
            channel_expiration=channel_expiration,
            stale_after_seconds=stale_after_seconds,
            safety_net_seconds=safety_net_seconds,
        )
    )


def evaluate(h: HealthInputs) -> Health:
    lag = None
    if h.last_success_at is not None:
        lag = (h.now - h.dirty_since).total_seconds() if h.dirty_since else 0.0
    stale = (
        h.last_success_at is None
        or (lag or 0) > h.stale_after_seconds
        or h.now - h.last_success_at > timedelta(seconds=h.safety_net_seconds * 1.5)
    )
    if h.account_needs_reauth:
        state = CalendarState.NEEDS_REAUTH
    elif h.blocked_reason or h.consecutive_failures >= FAILING_AFTER:
        state = CalendarState.FAILING
    elif lag is not None and lag > LAGGING_AFTER_SECONDS:
        state = CalendarState.LAGGING
    elif h.last_success_at is None or (
        h.lease_owner not in (None, "backoff") and h.lease_until and h.lease_until > h.now
    ):
        state = CalendarState.SYNCING
    elif h.channel_expiration is None or h.channel_expiration <= h.now:
        state = CalendarState.NOT_WATCHED
    else:
        state = CalendarState.OK
    return Health(state, lag, stale or state is not CalendarState.OK)
