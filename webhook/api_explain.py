"""`GET /v1/hosts/{host}/explain?at=…`: why a time is (not) bookable.

Lists every stored event and manual block around the instant with the stored decision and
a sentence a host understands, plus each calendar's freshness and whether calsync can know
about that time at all (not synced yet, or outside the synced horizon).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import ColumnElement, and_, select

from models import CalendarEvent, ManualBlock
from rules.busy_rules import EXPLANATIONS, Reason
from webhook.api_freshness import host_calendars, host_freshness
from webhook.api_hosts import HOST_PATH
from webhook.api_input import parse_query
from webhook.api_schemas import Coverage, ExplainQuery
from webhook.api_time import format_rfc3339
from webhook.auth import require_host
from webhook.request_scope import app_settings, request_session

api_explain = Blueprint("api_explain", __name__)

MAX_ITEMS = 500
# The sync keeps events from a day back (worker.sync_engine.HORIZON_PAST) to the horizon.
HORIZON_PAST = timedelta(days=1)


def _overlaps(
    start_column: Any, end_column: Any, at: datetime, margin: timedelta
) -> ColumnElement[bool]:
    if not margin:  # the instant itself: [start, end) contains `at`
        return and_(start_column <= at, end_column > at)
    return and_(start_column < at + margin, end_column > at - margin)


def _event_item(event: CalendarEvent, at: datetime) -> dict[str, Any]:
    try:
        reason = Reason(event.decision)
        explanation = EXPLANATIONS[reason]
    except (ValueError, KeyError):
        explanation = f"Stored decision: {event.decision}."
    assert event.start is not None and event.end is not None
    return {
        "type": "event",
        "calendarId": event.calendar_id,
        "eventId": event.google_event_id,
        "summary": event.summary,
        "start": format_rfc3339(event.start),
        "end": format_rfc3339(event.end),
        "allDay": event.all_day,
        "busy": event.decision == Reason.BUSY,
        "coversAt": event.start <= at < event.end,
        "reason": event.decision,
        "explanation": explanation,
    }


def _block_item(block: ManualBlock, at: datetime) -> dict[str, Any]:
    note = f" ({block.note})" if block.note else ""
    return {
        "type": "manual",
        "blockId": block.id,
        "summary": block.note or None,
        "start": format_rfc3339(block.start),
        "end": format_rfc3339(block.end),
        "allDay": False,
        "busy": True,
        "coversAt": block.start <= at < block.end,
        "reason": str(Reason.BUSY),
        "explanation": f"Blocks bookings: you blocked this time by hand{note}.",
    }


def _coverage(calendar: dict[str, Any], at: datetime, now: datetime, horizon_days: int) -> dict:
    if calendar["syncedAt"] is None:
        return {
            "coverage": Coverage.NOT_SYNCED_YET,
            "explanation": (
                "This calendar has not finished its first sync, so calsync does not know its "
                "events yet: a time may look free that is not."
            ),
        }
    if not now - HORIZON_PAST <= at < now + timedelta(days=horizon_days):
        return {
            "coverage": Coverage.OUTSIDE_HORIZON,
            "explanation": (
                f"This time is outside what calsync keeps (from 1 day ago to {horizon_days} "
                "days ahead), so this calendar's events at that time are not known here."
            ),
        }
    if calendar["stale"]:
        lag = calendar["lagSeconds"]
        behind = f" and {lag:.0f} seconds behind Google" if lag else ""
        return {
            "coverage": Coverage.SYNCED,
            "explanation": (
                f"Synced, but its state is {calendar['state']}{behind}: a change made in Google "
                "recently may not be reflected yet."
            ),
        }
    return {"coverage": Coverage.SYNCED, "explanation": "Synced and up to date."}


def _summary(at_text: str, items: list[dict], calendars: list[dict]) -> str:
    blocking = [item for item in items if item["busy"] and item["coversAt"]]
    if blocking:
        return f"Not bookable at {at_text}: {len(blocking)} busy item(s) cover this time."
    unknown = [c for c in calendars if c["coverage"] != Coverage.SYNCED]
    if unknown:
        codes = sorted({c["coverage"] for c in unknown})
        return (
            f"Bookable at {at_text} as far as calsync knows, but "
            f"{len(unknown)} calendar(s) cannot be checked ({', '.join(codes)})."
        )
    not_blocking = [item for item in items if item["coversAt"]]
    tail = (
        f" {len(not_blocking)} event(s) at this time do not block; each says why."
        if not_blocking
        else ""
    )
    stale = [c for c in calendars if c["stale"]]
    if stale:
        tail += f" {len(stale)} calendar(s) may be behind Google."
    return f"Bookable at {at_text}: nothing that blocks covers this time.{tail}"


@api_explain.get(HOST_PATH + "/explain")
def explain(host_id: int) -> Response:
    host = require_host(host_id)
    query = parse_query(ExplainQuery)
    return jsonify(explain_answer(host.id, query.at, timedelta(minutes=query.margin_minutes)))


def explain_answer(host_id: int, at: datetime, margin: timedelta) -> dict[str, Any]:
    """The explain answer for `at` ± `margin` (also the host page's "why is this free")."""
    session = request_session()
    now = datetime.now(UTC)
    calendar_ids = [c.id for c in host_calendars(session, host_id)]
    events = session.scalars(
        select(CalendarEvent)
        .where(
            CalendarEvent.calendar_id.in_(calendar_ids),
            _overlaps(CalendarEvent.start, CalendarEvent.end, at, margin),
        )
        .order_by(CalendarEvent.start, CalendarEvent.id)
        .limit(MAX_ITEMS)
    )
    blocks = session.scalars(
        select(ManualBlock)
        .where(
            ManualBlock.host_id == host_id,
            _overlaps(ManualBlock.start, ManualBlock.end, at, margin),
        )
        .order_by(ManualBlock.start, ManualBlock.id)
        .limit(MAX_ITEMS)
    )
    ordered = [(e.start, 0, e.id, _event_item(e, at)) for e in events]
    ordered += [(b.start, 1, b.id, _block_item(b, at)) for b in blocks]
    items = [item for *_key, item in sorted(ordered, key=lambda row: row[:3])]
    horizon_days = app_settings().sync_horizon_days
    calendars = [
        {**c, **_coverage(c, at, now, horizon_days)} for c in host_freshness(session, host_id, now)
    ]
    at_text = format_rfc3339(at)
    return {
        "at": at_text,
        "marginMinutes": int(margin.total_seconds() // 60),
        "busy": any(item["busy"] and item["coversAt"] for item in items),
        "summary": _summary(at_text, items, calendars),
        "items": items,
        "calendars": calendars,
    }
