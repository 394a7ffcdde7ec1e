"""Audit: compare calendars' busy tables with Google's own freeBusy answer.

One freeBusy request per Google account (at most 50 calendars each), through
`google_client.execute_with_retry` like every Google call (rate-limiter permits, tenacity on
429/403 rate limits/5xx). Race-free: after the freeBusy answer an incremental sync of each
calendar runs; only if it found no further change is the table known to be what Google
answered from, and only then are the two compared. A calendar that changed meanwhile is
audited again later ("deferred"), never reported as a mismatch; a Google error is "error",
never a mismatch either.

A mismatch triggers a full resync (swapped in atomically by the sync engine) and a second
audit; a mismatch that survives it is "persistent": recorded, counted, logged with its ranges
(never titles) and shown as `differsFromGoogle` in the sync status until an audit matches.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from core import metrics
from core.settings import Settings, get_settings
from models.audits import Audit, AuditOutcome
from models.db import session_scope
from models.events import BusyBlock, CalendarEvent
from rules.audit import (
    AuditComparison,
    StoredBlock,
    compare,
    differences_json,
    our_busy,
)
from rules.busy_rules import EventFacts
from rules.intervals import Interval
from rules.rfc3339 import parse_rfc3339
from worker import google_client, sync_engine
from worker.sync_engine import CalendarContext

log = logging.getLogger("calsync.audit")

FREEBUSY_MAX_CALENDARS = 50  # Google's limit per freeBusy.query


@dataclass
class AuditReport:
    """One calendar's audit: outcome matched | mismatch | persistent | deferred | error |
    skipped (not auditable now: revoked access, blocked, gone)."""

    calendar_id: int
    outcome: str
    detail: str = ""
    window_start: datetime | None = None
    window_end: datetime | None = None
    differences: list[dict[str, str]] = field(default_factory=list)
    differing_seconds: float = 0.0
    policy_touched: int = 0
    healed: bool = False  # a first mismatch that the full resync repaired
    healed_differences: list[dict[str, str]] = field(default_factory=list)  # ... its ranges


def _now() -> datetime:
    return datetime.now(UTC)


def audit_calendars(
    calendar_ids: Iterable[int],
    *,
    settings: Settings | None = None,
    now: Callable[[], datetime] = _now,
    heal: bool = True,
) -> list[AuditReport]:
    """Audit these calendars: one freeBusy request per account (≤ 50 calendars each)."""
    settings = settings or get_settings()
    reports: list[AuditReport] = []
    by_account: dict[int, list[CalendarContext]] = defaultdict(list)
    for calendar_id in dict.fromkeys(calendar_ids):
        with session_scope() as session:
            context = sync_engine.load_context(session, calendar_id)
        if context is None or isinstance(context, str):
            reports.append(AuditReport(calendar_id, "skipped", detail=context or "gone"))
            continue
        by_account[context.account_id].append(context)
    for contexts in by_account.values():
        for start in range(0, len(contexts), FREEBUSY_MAX_CALENDARS):
            chunk = contexts[start : start + FREEBUSY_MAX_CALENDARS]
            reports.extend(_audit_chunk(chunk, settings, now, heal))
    return reports


def _audit_chunk(
    contexts: list[CalendarContext],
    settings: Settings,
    now: Callable[[], datetime],
    heal: bool,
) -> list[AuditReport]:
    window_start = now().replace(microsecond=0)
    window_end = window_start + timedelta(days=settings.audit_days)
    try:
        answer = _freebusy(contexts, window_start, window_end, settings)
    except Exception as exc:  # Google failed even after retries: no verdict, never a mismatch
        log.warning("audit_freebusy_failed account_id=%s error=%s", contexts[0].account_id, exc)
        reports = []
        for context in contexts:
            metrics.observe_audit("error")
            reports.append(AuditReport(context.calendar_id, "error", detail=type(exc).__name__))
        return reports
    reports = []
    for context in contexts:
        report = _audit_one(context, answer, window_start, window_end, settings, now)
        if report.outcome == AuditOutcome.MISMATCH and heal:
            report = _heal(context, report, settings, now)
        reports.append(report)
    return reports


def _freebusy(
    contexts: list[CalendarContext],
    window_start: datetime,
    window_end: datetime,
    settings: Settings,
) -> dict[str, Any]:
    service = google_client.build_service(contexts[0].credentials, settings, contexts[0].email)
    return google_client.query_freebusy(
        service, [context.google_calendar_id for context in contexts], window_start, window_end
    )


def _audit_one(
    context: CalendarContext,
    answer: dict[str, Any],
    window_start: datetime,
    window_end: datetime,
    settings: Settings,
    now: Callable[[], datetime],
) -> AuditReport:
    calendar_id = context.calendar_id
    report = AuditReport(calendar_id, "deferred", window_start=window_start, window_end=window_end)
    entry = (answer.get("calendars") or {}).get(context.google_calendar_id)
    if entry is None or entry.get("errors"):
        reason = (entry or {}).get("errors", [{}])[0].get("reason", "missing") if entry else ""
        report.outcome, report.detail = "error", f"freeBusy: {reason or 'missing'}"
        metrics.observe_audit("error")
        return report
    try:
        google = [
            Interval(parse_rfc3339(item["start"]), parse_rfc3339(item["end"]))
            for item in entry.get("busy", [])
        ]
    except (KeyError, ValueError) as exc:
        report.outcome, report.detail = "error", f"freeBusy answer unreadable: {exc}"
        metrics.observe_audit("error")
        return report

    # Race-free: the table is compared only if a sync that started after the answer finds
    # that nothing changed since the table's sync-token position.
    result = sync_engine.sync_calendar(calendar_id, trigger="audit", force=True, settings=settings)
    if result.status != "done":
        report.detail = f"sync {result.status}"
        metrics.observe_audit("deferred")
        return report
    if any(run.events_seen or run.kind != "incremental" for run in result.runs):
        report.detail = "calendar changed during the audit"
        metrics.observe_audit("deferred")
        return report

    comparison, touched = _compare_stored(context, google, window_start, window_end)
    report.outcome = AuditOutcome.MATCHED if comparison.matched else AuditOutcome.MISMATCH
    report.differences = differences_json(comparison.differences)
    report.differing_seconds = comparison.differing_seconds
    report.policy_touched = touched
    _store(report, now())
    metrics.observe_audit(str(report.outcome), comparison.differing_seconds)
    if not comparison.matched:
        log.warning(
            "audit_mismatch calendar_id=%s differing_seconds=%.0f ranges=%s",
            calendar_id,
            comparison.differing_seconds,
            report.differences,
        )
    return report


def _heal(
    context: CalendarContext, first: AuditReport, settings: Settings, now: Callable[[], datetime]
) -> AuditReport:
    """A full resync swapped in atomically, then a second audit of this calendar alone."""
    resync = sync_engine.sync_calendar(
        context.calendar_id, trigger="audit", full=True, force=True, settings=settings
    )
    if resync.status != "done":
        # No resync, no second verdict: the first mismatch stands, never "persistent".
        first.detail = f"full resync {resync.status}"
        return first
    second = audit_calendars([context.calendar_id], settings=settings, now=now, heal=False)[0]
    if second.outcome == AuditOutcome.MATCHED:
        second.healed = True
        second.healed_differences = first.differences
        return second
    if second.outcome == AuditOutcome.MISMATCH:
        with session_scope() as session:
            row = session.get(Audit, _last_id(context.calendar_id))
            if row is not None:
                row.outcome = AuditOutcome.PERSISTENT
        second.outcome = AuditOutcome.PERSISTENT
        metrics.observe_audit("persistent")
        log.error(
            "audit_mismatch_persists calendar_id=%s differing_seconds=%.0f ranges=%s",
            context.calendar_id,
            second.differing_seconds,
            second.differences,
        )
        return second
    # The second audit could not decide (changed meanwhile, Google error): the first stands.
    first.detail = f"second audit {second.outcome}"
    return first


def _last_id(calendar_id: int) -> int:
    with session_scope() as session:
        found = session.scalars(
            select(Audit.id)
            .where(Audit.calendar_id == calendar_id)
            .order_by(Audit.id.desc())
            .limit(1)
        ).first()
    return found or -1


def _compare_stored(
    context: CalendarContext,
    google: list[Interval],
    window_start: datetime,
    window_end: datetime,
) -> tuple[AuditComparison, int]:
    with session_scope() as session:
        blocks = [
            StoredBlock(key, start, end)
            for key, start, end in session.execute(
                select(BusyBlock.event_key, BusyBlock.start, BusyBlock.end).where(
                    BusyBlock.calendar_id == context.calendar_id,
                    BusyBlock.start < window_end,
                    BusyBlock.end > window_start,
                )
            )
        ]
        events = [
            _facts(row)
            for row in session.scalars(
                select(CalendarEvent).where(
                    CalendarEvent.calendar_id == context.calendar_id,
                    CalendarEvent.start < window_end,
                    CalendarEvent.end > window_start,
                )
            )
        ]
    ours = our_busy(blocks, events, context.policy)
    return compare(ours.busy, google, window_start, window_end), ours.policy_touched


def _facts(row: CalendarEvent) -> EventFacts:
    return EventFacts(
        google_event_id=row.google_event_id,
        status=row.status,
        start=row.start,
        end=row.end,
        all_day=row.all_day,
        transparency=row.transparency,
        event_type=row.event_type,
        response_status=row.response_status,
        summary=None,
        updated=row.google_updated,
        recurring_event_id=row.recurring_event_id,
    )


def _store(report: AuditReport, at: datetime) -> None:
    assert report.window_start is not None and report.window_end is not None
    with session_scope() as session:
        session.add(
            Audit(
                calendar_id=report.calendar_id,
                at=at,
                window_start=report.window_start,
                window_end=report.window_end,
                matched=report.outcome == AuditOutcome.MATCHED,
                outcome=str(report.outcome),
                differences=report.differences,
                differing_seconds=report.differing_seconds,
                policy_touched=report.policy_touched,
            )
        )
