"""`calendar.state_changed`: a calendar's health state (rules/health.py) compared with the
state last announced, and an outbox row for each change, in the transaction that records
the new state. States are derived (a lag grows with time), so beat checks every few
seconds; `syncing` is passing and never announced.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.settings import get_settings
from models.ops_snapshot import take_snapshot
from models.outbound import AnnouncedCalendarState
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
    how many. A calendar seen for the first time is announced only when it is not ok."""
    settings = get_settings()
    snapshot = take_snapshot(
        session,
        now,
        stale_after_seconds=settings.stale_after_seconds,
        safety_net_seconds=settings.safety_net_seconds,
        every_calendar=True,  # compared with every calendar's announced state
    )
    announced = {row.calendar_id: row for row in session.scalars(select(AnnouncedCalendarState))}
    count = 0
    for row in snapshot.calendars:
        if row.state is CalendarState.SYNCING:
            continue
        state = str(row.state)
        known = announced.pop(row.calendar_id, None)
        if known is not None and known.state == state:
            continue
        previous = known.state if known is not None else None
        if known is None:
            session.add(
                AnnouncedCalendarState(calendar_id=row.calendar_id, state=state, changed_at=now)
            )
        else:
            known.state, known.changed_at = state, now
        if known is None and row.state is CalendarState.OK:
            continue
        error = None if row.state is CalendarState.OK else _words(session, row.calendar_id, now)
        record_state_change(
            session,
            host_id=row.host_id,
            calendar_id=row.calendar_id,
            previous=previous,
            state=state,
            error=error,
            now=now,
        )
        count += 1
    # Calendars gone (detached, host deleted) and still syncing ones keep nothing stale.
    present = {row.calendar_id for row in snapshot.calendars}
    gone = [calendar_id for calendar_id in announced if calendar_id not in present]
    if gone:
        session.execute(
            delete(AnnouncedCalendarState).where(AnnouncedCalendarState.calendar_id.in_(gone))
        )
    return count
