"""Calendars of a host: attach, list, detach, and the sync status of one calendar.

Work that talks to Google (the first full sync, opening and stopping watch channels) is
sent only after the database commit (`after_commit`), so a task never runs for data that
rolled back.
If the broker is down then, the calendar is still attached: the safety-net sync and the
channel renewal pick it up, and the answer says the background work was not queued.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy.orm import Session

from models import Calendar
from models.credentials_box import CredentialsError
from models.registry import attach_calendar, detach_calendar
from models.sync_status import calendar_status
from webhook.api_freshness import calendar_freshness, error_sentence, host_calendars
from webhook.api_hosts import HOST_PATH
from webhook.api_input import bad_field, parse_body
from webhook.api_schemas import MAX_ID, CalendarAttach
from webhook.auth import require_calendar, require_host
from webhook.errors import ApiError
from webhook.request_scope import app_settings, request_session
from worker import enqueue as task_queue

log = logging.getLogger("calsync.webhook.calendars")

api_calendars = Blueprint("api_calendars", __name__)

CALENDAR_ID = f"<int(max={MAX_ID}):calendar_id>"


def _calendar_json(session: Session, calendar: Calendar, now: datetime) -> dict[str, Any]:
    return {
        **calendar_freshness(session, calendar, now),
        "hostId": calendar.host_id,
        "timeZone": calendar.time_zone,
        "summary": calendar.summary,
    }


@api_calendars.post(HOST_PATH + "/calendars")
def attach(host_id: int) -> tuple[Response, int]:
    host = require_host(host_id)
    body = parse_body(CalendarAttach)
    credentials = body.credentials.model_dump(by_alias=True, exclude_unset=True)
    session = request_session()
    try:
        calendar, created = attach_calendar(session, host.id, body.google_calendar_id, credentials)
    except CredentialsError as exc:
        raise bad_field("credentials", str(exc)) from None
    sends = task_queue.after_commit(
        session, task_queue.enqueue_sync, calendar.id, reason="attach", full=True
    )
    task_queue.after_commit(session, task_queue.enqueue_watch, calendar.id)
    session.commit()
    queued = not sends.failed
    if sends.failed:
        log.warning("attach_enqueue_failed calendar_id=%s error=%s", calendar.id, sends.error)
    answer = _calendar_json(session, calendar, datetime.now(UTC))
    answer.update(created=created, backgroundQueued=queued)
    return jsonify(answer), 201


@api_calendars.get(HOST_PATH + "/calendars")
def list_calendars(host_id: int) -> Response:
    host = require_host(host_id)
    session = request_session()
    now = datetime.now(UTC)
    return jsonify(
        {"calendars": [_calendar_json(session, c, now) for c in host_calendars(session, host.id)]}
    )


@api_calendars.delete(HOST_PATH + "/calendars/" + CALENDAR_ID)
def detach(host_id: int, calendar_id: int) -> tuple[str, int]:
    host = require_host(host_id)
    calendar = require_calendar(calendar_id)
    if calendar.host_id != host.id:
        raise ApiError(404, "not_found", f"No calendar {calendar_id} on host {host_id}.")
    session = request_session()
    detached = detach_calendar(session, calendar.id)
    sends = None
    if detached is not None and detached[1]:
        account_id, channels = detached
        stopping = [(c.channel_id, c.resource_id) for c in channels]
        sends = task_queue.after_commit(
            session, task_queue.enqueue_stop_channels, account_id, stopping
        )
    session.commit()
    if sends is not None and sends.failed:
        # The calendar is gone, so its channels' pushes now answer 404 and Google lets them
        # expire; nothing is left to stop by hand.
        log.warning(
            "stop_channels_enqueue_failed calendar_id=%s error=%s", calendar_id, sends.error
        )
    return "", 204


@api_calendars.get("/v1/calendars/" + CALENDAR_ID + "/sync-status")
def sync_status(calendar_id: int) -> Response:
    calendar = require_calendar(calendar_id)
    session = request_session()
    report = calendar_status(session, calendar.id, datetime.now(UTC))
    if report is None:  # the calendar has no sync state (should not happen)
        raise ApiError(404, "not_found", f"No calendar {calendar_id}.")
    stored = report.get("lastError") or {}
    sentence = error_sentence(
        stored.get("code"),
        stored.get("message"),
        report["state"],
        public_url=app_settings().public_url,
        host_id=calendar.host_id,
    )
    report["hostId"] = calendar.host_id
    report["lastError"] = (
        None
        if sentence is None
        else {
            "code": stored.get("code") or report["state"],
            "message": sentence,
            "detail": stored.get("message"),
        }
    )
    return jsonify(report)


@api_calendars.post("/v1/calendars/" + CALENDAR_ID + "/audit")
def audit(calendar_id: int) -> tuple[Response, int]:
    """The web process never calls Google: the audit is queued for the worker, and its
    outcome shows as `lastAudit` in the sync status."""
    calendar = require_calendar(calendar_id)
    session = request_session()
    sends = task_queue.after_commit(session, task_queue.enqueue_audit, [calendar.id], reason="api")
    session.commit()
    if sends.failed:
        log.warning("audit_enqueue_failed calendar_id=%s error=%s", calendar.id, sends.error)
        raise ApiError(503, "unavailable", "The audit could not be queued; try again.")
    answer = {
        "calendarId": calendar.id,
        "queued": True,
        "syncStatusUrl": f"/v1/calendars/{calendar.id}/sync-status",
    }
    return jsonify(answer), 202
