"""Audit: compare calendars' busy tables with Google's own freeBusy answer.

One freeBusy request per Google account (at most 50 calendars each), through
`google_client.execute_with_retry` like every Google call (rate-limiter permits, tenacity on
429/403 rate limits/5xx).

Race-free without a listing per calendar: each calendar's sync position (its stored sync
token) is read before the request. The table is read with its position before and after; a
table that matches the answer is a match (it agreed with Google at that moment) and costs
nothing more. Only a table that differs is checked for a change in flight: if its position
moved since before the request (a sync applied something meanwhile) the audit is
"deferred"; otherwise `events.list(syncToken=<that position>)` asks Google whether anything
changed since: a change means "deferred" (and the change is synced now), none means the
difference is real. An undecided audit ("deferred", or "error" when Google failed after
retries) is a row without a verdict and never a mismatch; the task tries it again soon
(`rules.audit.undecided_retry_seconds`).

A mismatch triggers a full resync (swapped in atomically by the sync engine) and a second
audit; a mismatch that survives it is "persistent": recorded, counted, logged with its ranges
(never titles), alerted by the built-in notifier and shown as `differsFromGoogle` in the sync
status until an audit matches.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from googleapiclient.errors import HttpError
from sqlalchemy import select
from sqlalchemy.orm import Session

from core import metrics
from core.settings import Settings, get_settings
from models.audits import DECIDED, Audit, AuditOutcome, mark_persistent, record_audits
from models.calendars import SyncState
from models.db import session_scope
from models.events import BusyBlock, CalendarEvent
from rules.audit import (
    OurSide,
    StoredBlock,
    compare,
    differences_json,
    our_busy,
)
from rules.busy_rules import EventFacts
from rules.intervals import Interval
from rules.rfc3339 import parse_rfc3339
from worker import google_client, sync_engine
from worker.google_errors import ErrorKind, classify
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
    positions = _positions([context.calendar_id for context in contexts])
    try:
        answer = _freebusy(contexts, window_start, window_end, settings)
    except Exception as exc:  # Google failed even after retries: no verdict, never a mismatch
        log.warning("audit_freebusy_failed account_id=%s error=%s", contexts[0].account_id, exc)
        reports = []
        for context in contexts:
            report = AuditReport(
                context.calendar_id,
                AuditOutcome.ERROR,
                detail=f"freeBusy failed: {_error_words(exc)}",
                window_start=window_start,
                window_end=window_end,
            )
            metrics.observe_audit("error")
            reports.append(report)
        _store(reports, now())
        return reports
    tables = _read_tables(contexts, window_start, window_end)
    reports = [
        _audit_one(
            context,
            answer,
            positions.get(context.calendar_id),
            tables[context.calendar_id],
            settings,
        )
        for context in contexts
    ]
    _store(reports, now())
    if heal:
        for index, (context, report) in enumerate(zip(contexts, reports, strict=True)):
            if report.outcome == AuditOutcome.MISMATCH:
                reports[index] = _heal(context, report, settings, now)
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
    position: str | None,
    table: _Table,
    settings: Settings,
) -> AuditReport:
    """The verdict for one calendar (stored by the caller, with the chunk's)."""
    calendar_id = context.calendar_id
    window_start, window_end = table.window
    report = AuditReport(
        calendar_id, AuditOutcome.DEFERRED, window_start=window_start, window_end=window_end
    )
    entry = (answer.get("calendars") or {}).get(context.google_calendar_id)
    if entry is None or entry.get("errors"):
        reason = (entry or {}).get("errors", [{}])[0].get("reason", "missing") if entry else ""
        return _undecided(report, AuditOutcome.ERROR, f"freeBusy: {reason or 'missing'}")
    try:
        google = [
            Interval(parse_rfc3339(item["start"]), parse_rfc3339(item["end"]))
            for item in entry.get("busy", [])
        ]
    except (KeyError, ValueError) as exc:
        return _undecided(report, AuditOutcome.ERROR, f"freeBusy answer unreadable: {exc}")
    if position is None:
        return _undecided(report, AuditOutcome.DEFERRED, "not synced yet")

    comparison = compare(table.ours.busy, google, window_start, window_end, table.ours.certain)
    if not comparison.matched:
        # A change in flight makes both sides differ for a moment: decide only if the table
        # is still at the position read before the request and Google has nothing newer.
        if table.positions != (position, position):
            return _undecided(report, AuditOutcome.DEFERRED, "synced during the audit")
        changed = _changed_since(context, position, settings)
        if changed is None:
            return _undecided(report, AuditOutcome.ERROR, "change check failed")
        if changed:
            # Apply what Google has (a lost notification is healed here), decide next time.
            sync_engine.sync_calendar(calendar_id, trigger="audit", force=True, settings=settings)
            return _undecided(report, AuditOutcome.DEFERRED, "changed during the audit")
    report.outcome = AuditOutcome.MATCHED if comparison.matched else AuditOutcome.MISMATCH
    report.differences = differences_json(comparison.differences)
    report.differing_seconds = comparison.differing_seconds
    report.policy_touched = table.ours.policy_touched
    report.detail = (
        f"{comparison.tolerated_seconds:.0f} s of unanswered invitations free at Google "
        "(undocumented, tolerated)"
        if comparison.tolerated_seconds
        else ""
    )
    metrics.observe_audit(str(report.outcome), comparison.differing_seconds)
    if not comparison.matched:
        log.warning(
            "audit_mismatch calendar_id=%s differing_seconds=%.0f ranges=%s",
            calendar_id,
            comparison.differing_seconds,
            report.differences,
        )
    return report


def _undecided(report: AuditReport, outcome: AuditOutcome, detail: str) -> AuditReport:
    """No verdict: a row for the log and the schedule, never a mismatch."""
    report.outcome, report.detail = outcome, detail
    metrics.observe_audit(str(outcome))
    return report


def _error_words(exc: BaseException) -> str:
    status = getattr(getattr(exc, "resp", None), "status", None)
    return f"{type(exc).__name__} {status}" if status else type(exc).__name__


def _positions(calendar_ids: list[int]) -> dict[int, str | None]:
    with session_scope() as session:
        return _positions_in(session, calendar_ids)


def _positions_in(session: Session, calendar_ids: list[int]) -> dict[int, str | None]:
    rows = session.execute(
        select(SyncState.calendar_id, SyncState.sync_token).where(
            SyncState.calendar_id.in_(calendar_ids)
        )
    )
    return {calendar_id: token for calendar_id, token in rows}


def _changed_since(context: CalendarContext, position: str, settings: Settings) -> bool | None:
    """Whether Google lists any change since `position` (one events.list page is enough);
    None when it could not tell. A dead token (410) counts as a change: a sync resolves it."""
    service = google_client.build_service(context.credentials, settings, context.email)
    try:
        for page in google_client.list_event_pages(
            service, context.google_calendar_id, sync_token=position
        ):
            return bool(page.get("items"))
    except HttpError as exc:
        if classify(exc).kind is ErrorKind.SYNC_TOKEN_GONE:
            return True
        log.warning("audit_change_check_failed calendar_id=%s error=%s", context.calendar_id, exc)
        return None
    except Exception as exc:
        log.warning("audit_change_check_failed calendar_id=%s error=%s", context.calendar_id, exc)
        return None
    return False


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
                mark_persistent(session, row)
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


@dataclass(frozen=True)
class _Table:
    ours: OurSide
    positions: tuple[str | None, str | None]  # sync position before and after the read
    window: tuple[datetime, datetime]


def _read_tables(
    contexts: list[CalendarContext], window_start: datetime, window_end: datetime
) -> dict[int, _Table]:
    """Each calendar's blocks and event facts in the window, with its sync position read
    before and after (a sync commits blocks and position together: equal positions mean
    the rows are of that position, on any isolation level). One query of each kind for the
    whole chunk."""
    ids = [context.calendar_id for context in contexts]
    blocks: dict[int, list[StoredBlock]] = defaultdict(list)
    events: dict[int, list[EventFacts]] = defaultdict(list)
    with session_scope() as session:
        before = _positions_in(session, ids)
        for calendar_id, key, start, end in session.execute(
            select(
                BusyBlock.calendar_id, BusyBlock.event_key, BusyBlock.start, BusyBlock.end
            ).where(
                BusyBlock.calendar_id.in_(ids),
                BusyBlock.start < window_end,
                BusyBlock.end > window_start,
            )
        ):
            blocks[calendar_id].append(StoredBlock(key, start, end))
        for row in session.scalars(
            select(CalendarEvent).where(
                CalendarEvent.calendar_id.in_(ids),
                CalendarEvent.start < window_end,
                CalendarEvent.end > window_start,
            )
        ):
            events[row.calendar_id].append(_facts(row))
        after = _positions_in(session, ids)
    return {
        context.calendar_id: _Table(
            our_busy(blocks[context.calendar_id], events[context.calendar_id], context.policy),
            (before.get(context.calendar_id), after.get(context.calendar_id)),
            (window_start, window_end),
        )
        for context in contexts
    }


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


def _store(reports: list[AuditReport], at: datetime) -> None:
    """The chunk's audit rows, in one transaction ("skipped" calendars get none)."""
    with session_scope() as session:
        record_audits(
            session,
            [
                Audit(
                    calendar_id=report.calendar_id,
                    at=at,
                    window_start=report.window_start,
                    window_end=report.window_end,
                    matched=(
                        report.outcome == AuditOutcome.MATCHED
                        if report.outcome in DECIDED
                        else None
                    ),
                    outcome=str(report.outcome),
                    detail=report.detail[:200] or None,
                    differences=report.differences,
                    differing_seconds=report.differing_seconds,
                    policy_touched=report.policy_touched,
                )
                for report in reports
                if report.window_start is not None and report.window_end is not None
            ],
        )
