"""How fresh each calendar's busy blocks are, in the shape every /v1 read answer carries,
and the last error of a calendar as a sentence that says what to do about it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.calendars import Calendar, SyncState
from models.sync_status import calendars_health, host_calendars_health
from rules.health import Health
from webhook.api_time import format_rfc3339

# What a host or operator should do after each stored error code.
_RETRYING = "calsync retries by itself; nothing to do unless this lasts more than an hour."
ERROR_ADVICE: dict[str, str] = {
    "calendar_not_found": (
        "Google says this calendar does not exist or the connected account lost access to it "
        "— check the calendar still exists and is shared with that account, then attach it "
        "again."
    ),
    "forbidden": (
        "Google refused access to this calendar (its sharing changed) — share it with the "
        "connected account again, then attach it again."
    ),
    "rate_limited": "Google asked calsync to slow down (rate limit). " + _RETRYING,
    "quota_exceeded": "The Google API quota is used up for now. " + _RETRYING,
    "google_unavailable": "Google answered with a server error. " + _RETRYING,
    "network": "calsync could not reach Google (network error). " + _RETRYING,
    "token_refresh_failed": "Refreshing the Google access token failed. " + _RETRYING,
    "unauthorized": "Google refused the access token. " + _RETRYING,
    "full_sync_required": "Google asked for a full resync, which runs by itself.",
}


def reconnect_sentence(public_url: str, host_id: int) -> str:
    return (
        "Google access was revoked — reconnect at "
        f"{public_url.rstrip('/')}/connect/google?host={host_id}"
    )


def error_sentence(
    code: str | None,
    stored_message: str | None,
    state: str,
    *,
    public_url: str,
    host_id: int,
) -> str | None:
    """The last error in plain words with the fix; None when there is nothing to report."""
    if state == "needs_reauth" or code == "auth_revoked":
        return reconnect_sentence(public_url, host_id)
    if code is None:
        return None
    advice = ERROR_ADVICE.get(code)
    if advice is not None:
        return advice
    detail = (stored_message or "An unexpected error occurred.").rstrip(".")
    return f"{detail}. calsync retries by itself; if this persists, tell the operator."


def _iso(moment: datetime | None) -> str | None:
    return format_rfc3339(moment) if moment else None


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def freshness_entry(
    calendar: Calendar, state: SyncState | None, health: Health | None
) -> dict[str, Any]:
    """{id, googleCalendarId, state, syncedAt, lagSeconds, stale} of one calendar."""
    return {
        "id": calendar.id,
        "googleCalendarId": calendar.google_calendar_id,
        "state": str(health.state) if health else "syncing",
        "syncedAt": _iso(state.last_success_at) if state else None,
        "lagSeconds": _round(health.lag_seconds) if health else None,
        "stale": health.stale if health else True,
    }


def calendar_freshness(session: Session, calendar: Calendar, now: datetime) -> dict[str, Any]:
    found = calendars_freshness(session, [calendar.id], now)
    # A calendar deleted meanwhile has no state: answer as for one never synced.
    return found.get(calendar.id) or freshness_entry(calendar, None, None)


def calendars_freshness(
    session: Session, calendar_ids: list[int], now: datetime
) -> dict[int, dict[str, Any]]:
    """Freshness of each listed calendar by id, in one query."""
    found = calendars_health(session, calendar_ids, now)
    return {
        calendar.id: freshness_entry(calendar, state, health) for calendar, state, health in found
    }


def host_calendars(session: Session, host_id: int) -> list[Calendar]:
    return list(
        session.scalars(select(Calendar).where(Calendar.host_id == host_id).order_by(Calendar.id))
    )


def host_freshness(session: Session, host_id: int, now: datetime) -> list[dict[str, Any]]:
    """Freshness of each of the host's calendars, ordered by calendar id, in one query."""
    found = host_calendars_health(session, host_id, now)
    return [freshness_entry(calendar, state, health) for calendar, state, health in found]
