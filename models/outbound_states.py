"""`calendar.state_changed`: a calendar's health state (rules/health.py) compared with the
state last announced, and an outbox row for each change, in the transaction that records
the new state. States are derived (a lag grows with time), so beat checks every few
seconds; `syncing` is passing and never announced.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from core.settings import get_settings
from models.calendars import Calendar, SyncState
from models.ops_snapshot import take_snapshot
from models.outbound import AnnouncedCalendarState, WebhookEndpoint
from models.outbox_writer import record_state_change
from models.sync_status import calendar_status
from rules.health import CalendarState
from rules.status_presenter import calendar_card


def _words(session: Session, calendar_id: int, now: datetime) -> dict[str, str | None] | None:
    """What the status page says about the calendar: headline, error and fix in words."""
    status = calendar_status(session, calendar_id, now, runs=0)
    if status is None:
        return None
    settings = get_settings()
    card = calendar_card(
        status,
        name=status["googleCalendarId"],
        now=now,
        zone=UTC,
        reconnect_url=status.get("reconnectUrl") or "",
        polling_seconds=settings.poll_seconds,
        colour="",
    )
    code = (status.get("lastError") or {}).get("code") or status["state"]
    return {
        "code": code,
        "headline": card.headline,
        "message": card.error or card.reason,
        "fix": card.fix,
    }


def announce_state_changes(session: Session, now: datetime) -> int:
    """Outbox rows for every calendar whose state differs from the one announced; returns
    how many.

    Reads by index only, whatever the fleet's size: the calendars that may not be ok (the
    ops snapshot's attention list) and the ones last announced as not ok (now ok again, or
    gone). Every other calendar is ok and was ok when last looked at, or never announced: a
    calendar without a row counts as `ok` before if it ever synced (a not-ok state would
    have left a row), else as unknown (`previousState` null). Nothing is done while no
    endpoint exists: nobody would hear it."""
    if session.scalar(select(WebhookEndpoint.id).limit(1)) is None:
        return 0
    settings = get_settings()
    snapshot = take_snapshot(
        session,
        now,
        stale_after_seconds=settings.stale_after_seconds,
        safety_net_seconds=settings.safety_net_seconds,
    )
    attention = {row.calendar_id: row for row in snapshot.calendars}
    announced = {
        row.calendar_id: row
        for row in session.scalars(
            select(AnnouncedCalendarState).where(
                or_(
                    AnnouncedCalendarState.state != str(CalendarState.OK),
                    AnnouncedCalendarState.calendar_id.in_(list(attention)),
                )
            )
        )
    }
    # Last announced not ok, no longer in need of attention: ok now, or gone.
    recovered = [calendar_id for calendar_id in announced if calendar_id not in attention]
    hosts = {
        calendar_id: host_id
        for calendar_id, host_id in session.execute(
            select(Calendar.id, Calendar.host_id).where(Calendar.id.in_(recovered))
        )
    }
    changes = [(row.calendar_id, row.host_id, row.state) for row in snapshot.calendars]
    changes += [(c, hosts[c], CalendarState.OK) for c in recovered if c in hosts]
    count = 0
    for calendar_id, host_id, calendar_state in changes:
        if calendar_state is CalendarState.SYNCING:
            continue
        state = str(calendar_state)
        known = announced.get(calendar_id)
        if known is not None and known.state == state:
            continue
        if known is None:
            if calendar_state is CalendarState.OK:
                continue  # ok as it has always been (or first seen ok): nothing to say
            session.add(
                AnnouncedCalendarState(calendar_id=calendar_id, state=state, changed_at=now)
            )
            previous = "ok" if _ever_synced(session, calendar_id) else None
        else:
            previous = known.state
            known.state, known.changed_at = state, now
        error = None if calendar_state is CalendarState.OK else _words(session, calendar_id, now)
        record_state_change(
            session,
            host_id=host_id,
            calendar_id=calendar_id,
            previous=previous,
            state=state,
            error=error,
            now=now,
        )
        count += 1
    gone = [calendar_id for calendar_id in recovered if calendar_id not in hosts]
    if gone:
        session.execute(
            delete(AnnouncedCalendarState).where(AnnouncedCalendarState.calendar_id.in_(gone))
        )
    return count


def _ever_synced(session: Session, calendar_id: int) -> bool:
    return (
        session.scalar(
            select(SyncState.last_success_at).where(SyncState.calendar_id == calendar_id)
        )
        is not None
    )
