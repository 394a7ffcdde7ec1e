"""Sync status of a calendar as plain data, for the CLI, the API and the status page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from core.settings import get_settings
from models.accounts import AccountState, GoogleAccount
from models.audits import differs_from_google, last_audit
from models.calendars import Calendar, Channel, SyncState
from models.sync_flags import earliest
from models.sync_runs import SyncRun
from rules.health import Health, evaluate_state_row


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def calendar_health(session: Session, calendar_id: int, now: datetime) -> Health | None:
    found = _load(session, calendar_id)
    return None if found is None else _health(found, now)


def _load(session: Session, calendar_id: int) -> Any:
    row = session.execute(
        select(Calendar, SyncState, GoogleAccount.state)
        .join(SyncState, SyncState.calendar_id == Calendar.id)
        .join(GoogleAccount, GoogleAccount.id == Calendar.account_id)
        .where(Calendar.id == calendar_id)
    ).one_or_none()
    if row is None:
        return None
    expiration = session.scalar(
        select(func.max(Channel.expiration)).where(
            Channel.calendar_id == calendar_id, Channel.stopped_at.is_(None)
        )
    )
    return row[0], row[1], row[2], expiration


def _calendars_with_health_inputs() -> Select:
    """Each calendar with its sync state, account state and newest live channel's expiry."""
    newest_live_channel = (
        select(func.max(Channel.expiration))
        .where(Channel.calendar_id == Calendar.id, Channel.stopped_at.is_(None))
        .correlate(Calendar)
        .scalar_subquery()
    )
    return (
        select(Calendar, SyncState, GoogleAccount.state, newest_live_channel)
        .outerjoin(SyncState, SyncState.calendar_id == Calendar.id)
        .join(GoogleAccount, GoogleAccount.id == Calendar.account_id)
        .order_by(Calendar.id)
    )


# Built once: busy reads run these on every request.
_HEALTH_OF_CALENDARS = _calendars_with_health_inputs().where(
    Calendar.id.in_(bindparam("calendar_ids", expanding=True))
)
_HEALTH_OF_HOST_CALENDARS = _calendars_with_health_inputs().where(
    Calendar.host_id == bindparam("host_id")
)

CalendarHealth = tuple[Calendar, SyncState | None, Health | None]


def calendars_health(
    session: Session, calendar_ids: list[int], now: datetime
) -> list[CalendarHealth]:
    """`calendar_health` of many calendars in one query, by calendar id; a calendar without
    sync state has no health (None), as calendar_health answers for it."""
    if not calendar_ids:
        return []
    rows = session.execute(_HEALTH_OF_CALENDARS, {"calendar_ids": calendar_ids})
    return _with_health(rows, now)


def host_calendars_health(session: Session, host_id: int, now: datetime) -> list[CalendarHealth]:
    """`calendars_health` of every calendar of the host."""
    return _with_health(session.execute(_HEALTH_OF_HOST_CALENDARS, {"host_id": host_id}), now)


def _with_health(rows: Any, now: datetime) -> list[CalendarHealth]:
    found: list[CalendarHealth] = []
    for calendar, state, account_state, expiration in rows:
        health = None
        if state is not None:
            health = _health((calendar, state, account_state, expiration), now)
        found.append((calendar, state, health))
    return found


def _health(found: Any, now: datetime) -> Health:
    _calendar, state, account_state, expiration = found
    settings = get_settings()
    return evaluate_state_row(
        state,
        account_needs_reauth=account_state == AccountState.NEEDS_REAUTH,
        channel_expiration=expiration,
        now=now,
        stale_after_seconds=settings.stale_after_seconds,
        safety_net_seconds=settings.safety_net_seconds,
    )


def polling_reason(
    watch_problem: str | None,
    expiration: datetime | None,
    now: datetime,
    watch_retry_at: datetime | None = None,
) -> str | None:
    """Why the calendar is polled instead of pushed, in plain words; None while push works."""
    every = f"polled every {get_settings().poll_seconds} s"
    if watch_problem:
        if watch_retry_at is not None:
            return (
                f"{watch_problem} ({every}). Google refused the watch; next try at "
                f"{watch_retry_at.isoformat()}."
            )
        return f"{watch_problem} ({every})"
    if expiration is None:
        return f"No push channel is open; {every}."
    if expiration <= now:
        return f"The push channel expired at {expiration.isoformat()}; {every}."
    return None


def reconnect_url(host_id: int, account_id: int) -> str:
    """Where the host grants calendar access again (the OAuth connect flow); the host adds
    its API token (`&token=`) or is asked for it."""
    base = get_settings().public_url.rstrip("/")
    return f"{base}/connect/google?host={host_id}&account={account_id}"


def calendar_status(
    session: Session, calendar_id: int, now: datetime, runs: int = 10
) -> dict[str, Any] | None:
    found = _load(session, calendar_id)
    if found is None:
        return None
    calendar, state, account_state, expiration = found
    health = _health(found, now)
    audit = last_audit(session, calendar_id)
    recent = session.scalars(
        select(SyncRun)
        .where(SyncRun.calendar_id == calendar_id)
        .order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
        .limit(runs)
    )
    return {
        "calendarId": calendar.id,
        "googleCalendarId": calendar.google_calendar_id,
        "timeZone": calendar.time_zone,
        "state": str(health.state),
        "stale": health.stale,
        "lagSeconds": health.lag_seconds,
        "dirtySince": _iso(earliest(state.dirty_since, state.syncing_since)),
        "lastNotificationAt": _iso(state.last_notification_at),
        "lastSuccessAt": _iso(state.last_success_at),
        "lastAttemptAt": _iso(state.last_attempt_at),
        "fullSyncAt": _iso(state.full_sync_at),
        "channelExpiresAt": _iso(expiration),
        "watchProblem": calendar.watch_problem,
        "polling": polling_reason(calendar.watch_problem, expiration, now, calendar.watch_retry_at),
        "watchRetryAt": _iso(calendar.watch_retry_at) if calendar.watch_problem else None,
        "reconnectUrl": (
            reconnect_url(calendar.host_id, calendar.account_id)
            if account_state == AccountState.NEEDS_REAUTH
            else None
        ),
        "consecutiveFailures": state.consecutive_failures,
        "lastError": (
            {"code": state.last_error_code, "message": state.last_error_message}
            if state.last_error_code
            else None
        ),
        "differsFromGoogle": differs_from_google(audit),
        "lastAudit": (
            {
                "at": _iso(audit.at),
                "matched": audit.matched,
                "outcome": audit.outcome,
                "windowStart": _iso(audit.window_start),
                "windowEnd": _iso(audit.window_end),
                "differences": audit.differences,
                "differingSeconds": audit.differing_seconds,
                "policyTouchedEvents": audit.policy_touched,
            }
            if audit is not None
            else None
        ),
        "recentRuns": [
            {
                "kind": run.kind,
                "trigger": run.trigger,
                "outcome": run.outcome,
                "startedAt": _iso(run.started_at),
                "durationMs": run.duration_ms,
                "pages": run.pages,
                "eventsSeen": run.events_seen,
                "blocksUpserted": run.blocks_upserted,
                "blocksDeleted": run.blocks_deleted,
                "notificationLagMs": run.notification_lag_ms,
                "error": run.error_code,
            }
            for run in recent
        ],
    }
