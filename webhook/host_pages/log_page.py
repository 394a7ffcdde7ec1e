"""The sync log `/me/log` (with the week's summary and the audits) and `/me/log.csv`."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import (
    Response,
    render_template,
    request,
)

from models import Host
from models.audits import Audit, audits_for_host
from models.host_log import host_channel_openings, host_runs
from models.status_view import (
    host_calendars,
)
from rules.status_presenter import (
    error_words,
    host_zone,
    local_text,
)
from rules.sync_log import RunFacts, is_failure, seconds_text, week_summary
from webhook.errors import ApiError
from webhook.host_pages.common import (
    LOG_DAYS,
    host_pages,
    html_page,
    signed_in,
)
from webhook.host_session import csrf_token
from webhook.request_scope import request_session


@dataclass(frozen=True)
class LogRow:
    facts: RunFacts
    local_time: str
    iso: str
    failed: bool


@dataclass(frozen=True)
class LogFilter:
    """`?failures=1` and `?calendar=ID` of the log and its CSV."""

    failures_only: bool
    calendar_id: int | None

    def query(self, **extra: Any) -> dict[str, Any]:
        """The filter as query arguments for a link (only what is set)."""
        args: dict[str, Any] = {}
        if self.failures_only:
            args["failures"] = 1
        if self.calendar_id is not None:
            args["calendar"] = self.calendar_id
        return {**args, **extra}


def _log_filter(names: dict[int, str]) -> LogFilter:
    calendar_text = request.args.get("calendar", "")
    calendar_id = None
    if calendar_text:
        calendar_id = int(calendar_text) if calendar_text.isdigit() else -1
        if calendar_id not in names:
            raise ApiError(404, "not_found", "There is no such calendar on your page.")
    return LogFilter(request.args.get("failures") == "1", calendar_id)


def _calendar_names(host: Host) -> dict[int, str]:
    return {
        c.calendar_id: c.summary or c.google_calendar_id
        for c in host_calendars(request_session(), host.id)
    }


def _log_rows(host: Host, now: datetime, names: dict[int, str], chosen: LogFilter) -> list[LogRow]:
    zone, _ = host_zone(host.time_zone)
    since = now - timedelta(days=LOG_DAYS)
    found = host_runs(
        request_session(),
        host.id,
        since,
        failures_only=chosen.failures_only,
        calendar_id=chosen.calendar_id,
    )
    rows = []
    for run, calendar_id in found:
        error = None
        if run.error_code or run.error_message:
            error, _fix = error_words(
                {"code": run.error_code or "", "message": run.error_message or ""}
            )
        facts = RunFacts(
            calendar=names.get(calendar_id, f"calendar {calendar_id}"),
            started_at=run.started_at,
            kind=run.kind,
            trigger=run.trigger,
            events_seen=run.events_seen,
            blocks_added=run.blocks_upserted,
            blocks_removed=run.blocks_deleted,
            duration_ms=run.duration_ms,
            lag_ms=run.notification_lag_ms,
            outcome=run.outcome,
            error=error,
        )
        rows.append(
            LogRow(
                facts,
                local_text(run.started_at, zone, seconds=True),
                run.started_at.isoformat(),
                is_failure(run.outcome),
            )
        )
    return rows


@host_pages.get("/me/log")
def sync_log() -> Response:
    host = signed_in()
    now = datetime.now(UTC)
    zone, zone_name = host_zone(host.time_zone)
    names = _calendar_names(host)
    chosen = _log_filter(names)
    since = now - timedelta(days=LOG_DAYS)
    rows = _log_rows(host, now, names, chosen)
    # The summary covers every run of the chosen calendars, also when only failures show.
    everything = LogFilter(False, chosen.calendar_id)
    all_rows = _log_rows(host, now, names, everything) if chosen.failures_only else rows
    session = request_session()
    audits = [
        {
            "calendar": names.get(audit.calendar_id, str(audit.calendar_id)),
            "at": local_text(audit.at, zone),
            "outcome": audit.outcome,
            "words": _audit_words(audit),
        }
        for audit in audits_for_host(session, host.id, since)
        if chosen.calendar_id in (None, audit.calendar_id)
    ]
    renewals = host_channel_openings(session, host.id, since, calendar_id=chosen.calendar_id)
    html = render_template(
        "host_log.html",
        host=host,
        zone_name=zone_name,
        rows=rows,
        chosen=chosen,
        calendars=names,
        summary=week_summary([row.facts for row in all_rows], renewals, zone),
        audits=audits,
        seconds_text=seconds_text,
        csrf_token=csrf_token(),
        data_as_of=local_text(now, zone, seconds=True),
    )
    return html_page(html)


CSV_COLUMNS = (
    "started_at",
    "calendar",
    "kind",
    "trigger",
    "events_seen",
    "blocks_added",
    "blocks_removed",
    "duration_ms",
    "lag_ms",
    "outcome",
    "error",
)


@host_pages.get("/me/log.csv")
def sync_log_csv() -> Response:
    host = signed_in()
    names = _calendar_names(host)
    rows = _log_rows(host, datetime.now(UTC), names, _log_filter(names))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        f = row.facts
        writer.writerow(
            [
                row.iso,
                f.calendar,
                f.kind,
                f.trigger or "",
                f.events_seen,
                f.blocks_added,
                f.blocks_removed,
                "" if f.duration_ms is None else f.duration_ms,
                "" if f.lag_ms is None else f.lag_ms,
                f.outcome,
                f.error or "",
            ]
        )
    response = Response(out.getvalue(), mimetype="text/csv")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    response.headers["Content-Disposition"] = f'attachment; filename="calsync-sync-log-{stamp}.csv"'
    return response


def _audit_words(audit: Audit) -> str:
    if audit.matched is None:  # undecided: a change was in flight; retried shortly
        return audit.detail or "Not decided: a change was in flight"
    if audit.matched:
        return "Matched Google"
    return f"Differed from Google by {seconds_text(int(audit.differing_seconds * 1000))}"
