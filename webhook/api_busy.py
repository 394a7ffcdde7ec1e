"""Busy reads: `GET /v1/hosts/{host}/busy` and Google's `freeBusy.query` shape at
`POST /v1/freeBusy`.

Every answer says how fresh each calendar is. A frontend that would rather show no slots
than possibly wrong ones asks with `strict=true` and gets a 503 while any calendar is stale.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import or_, select

from models.busy_queries import calendars_busy, host_busy
from models.calendars import Calendar
from rules.intervals import Interval
from webhook.api_freshness import calendars_freshness, host_freshness
from webhook.api_hosts import HOST_PATH
from webhook.api_input import parse_body, parse_query
from webhook.api_schemas import BusyQuery, FreeBusyRequest
from webhook.api_time import format_rfc3339
from webhook.auth import current_caller, require_host
from webhook.errors import ApiError
from webhook.request_scope import app_settings, read_only_session, request_session

api_busy = Blueprint("api_busy", __name__)

# States in which the stored busy time cannot be trusted to follow Google any more.
FAILING_STATES = {"failing", "needs_reauth"}


def source_json(source: str) -> dict[str, Any]:
    """`calendar:<id>/<event>` or `manual:<id>` (models.busy_queries) as an object."""
    kind, _, rest = source.partition(":")
    if kind == "manual":
        return {"type": "manual", "blockId": int(rest)}
    calendar_id, _, event_id = rest.partition("/")
    return {"type": "event", "calendarId": int(calendar_id), "eventId": event_id}


def _interval_json(interval: Interval) -> dict[str, Any]:
    return {
        "start": format_rfc3339(interval.start),
        "end": format_rfc3339(interval.end),
        "sources": [source_json(s) for s in interval.sources],
    }


@api_busy.get(HOST_PATH + "/busy")
def host_busy_view(host_id: int) -> Response:
    # Autocommit: each SELECT sees the latest commit, and blocks are read after freshness,
    # so they are never older than the freshness this answer claims.
    session = read_only_session()
    host = require_host(host_id)
    query = parse_query(BusyQuery, max_window_days=app_settings().max_window_days)
    calendars = host_freshness(session, host.id, datetime.now(UTC))
    stale = [c for c in calendars if c["stale"]]
    if query.strict and stale:
        names = ", ".join(f"{c['id']} ({c['state']})" for c in stale)
        raise ApiError(
            503,
            "stale_calendars",
            f"Busy time may be wrong: calendar {names} is not up to date. "
            "Retry later, or ask without strict=true to get the data with freshness flags.",
            extra={"staleCalendars": stale},
            headers={"Retry-After": "30"},
        )
    busy = host_busy(session, host.id, query.time_min, query.time_max)
    return jsonify(
        {
            "timeMin": format_rfc3339(query.time_min),
            "timeMax": format_rfc3339(query.time_max),
            "busy": [_interval_json(i) for i in busy],
            "calendars": calendars,
            "stale": bool(stale),
        }
    )


def _caller_calendars(requested: list[str]) -> list[Calendar]:
    """The caller's calendars that `requested` could name (by Google id or our id); only
    those are loaded, so an admin's request does not read every calendar."""
    if not requested:
        return []
    # Ids beyond the integer column's range can name nothing (and must not reach the SQL).
    numeric = [int(r) for r in requested if r.isascii() and r.isdigit() and len(r) <= 10]
    numeric = [n for n in numeric if n < 2**31]
    names = Calendar.google_calendar_id.in_(requested)
    query = select(Calendar).where(or_(names, Calendar.id.in_(numeric)) if numeric else names)
    caller = current_caller()
    if not caller.is_admin:
        query = query.where(Calendar.host_id == caller.host_id)
    return list(request_session().scalars(query.order_by(Calendar.id)))


def _resolve(requested: str, calendars: list[Calendar]) -> list[Calendar]:
    """The caller's calendars `requested` names: our numeric id, or the Google calendar id."""
    by_google = [c for c in calendars if c.google_calendar_id == requested]
    if by_google:
        return by_google
    if requested.isascii() and requested.isdigit():
        return [c for c in calendars if str(c.id) == requested]
    return []


@api_busy.post("/v1/freeBusy")
def free_busy() -> Response:
    session = read_only_session()
    current_caller()
    body = parse_body(FreeBusyRequest, max_window_days=app_settings().max_window_days)
    # timeZone is checked but not applied: answers are in UTC (the same instants).
    requested = [item.id for item in body.items]
    now = datetime.now(UTC)
    mine = _caller_calendars(requested)
    resolved = {requested_id: _resolve(requested_id, mine) for requested_id in requested}
    # One query each for the freshness and the busy time of every calendar asked about.
    calendar_ids = sorted({found[0].id for found in resolved.values() if len(found) == 1})
    freshness_by_id = calendars_freshness(session, calendar_ids, now)
    busy_by_id = calendars_busy(session, calendar_ids, body.time_min, body.time_max)
    answers: dict[str, dict[str, Any]] = {}
    any_stale = False
    for requested_id, found in resolved.items():
        if len(found) != 1:
            reason = "notFound" if not found else "ambiguous"
            answers[requested_id] = {
                "errors": [{"domain": "global", "reason": reason}],
                "busy": [],
            }
            continue
        calendar = found[0]
        freshness = freshness_by_id[calendar.id]
        any_stale = any_stale or freshness["stale"]
        busy = busy_by_id[calendar.id]
        entry: dict[str, Any] = {
            "busy": [
                {"start": format_rfc3339(i.start), "end": format_rfc3339(i.end)} for i in busy
            ],
            **{key: freshness[key] for key in ("state", "syncedAt", "lagSeconds", "stale")},
            "calendarId": calendar.id,
        }
        # As Google does for a calendar it cannot read: say so beside the (last known) busy
        # time, so a client that checks `errors` does not trust it blindly.
        if freshness["syncedAt"] is None:
            entry["errors"] = [{"domain": "calsync", "reason": "notSyncedYet"}]
        elif freshness["state"] in FAILING_STATES:
            entry["errors"] = [{"domain": "calsync", "reason": freshness["state"]}]
        answers[requested_id] = entry
    return jsonify(
        {
            "kind": "calendar#freeBusy",
            "timeMin": format_rfc3339(body.time_min),
            "timeMax": format_rfc3339(body.time_max),
            "calendars": answers,
            "stale": any_stale,
        }
    )
