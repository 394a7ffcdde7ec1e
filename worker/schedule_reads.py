"""What beat's periodic tasks find due, read by stored moment and judged by the rules
(models/stored_moments.py). Apart from worker.tasks so that benchmarks can run the reads
without building the Celery app."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from core.settings import Settings, get_settings
from models import stored_moments
from models.audits import audit_candidates
from models.calendars import SyncState
from models.db import session_scope
from models.sync_flags import schedule_candidates
from rules import sync_schedule
from rules.audit import audit_check_seconds, audit_due, due_by_account, next_audit_at
from worker import rate_limit

log = logging.getLogger("calsync.tasks")


def due_calendars(
    now: datetime,
    settings: Settings | None = None,
    only: int | None = None,
    page_rows: int = stored_moments.PAGE_ROWS,
) -> list[tuple[int, sync_schedule.Due]]:
    """Calendars (or just `only`) due for a safety-net, poll or periodic full sync now, and
    not being synced. While the daily budget runs low, only never-synced calendars are due
    (`sync_schedule.yields_to_budget`): the rest wait until it recovers. Read and judged a
    page of `page_rows` at a time, each page's next moments stored in its own transaction."""
    settings = settings or get_settings()
    budget_used: float | None = None
    deferred = 0
    found: list[tuple[int, sync_schedule.Due]] = []
    seen: set[int] = set()
    at: stored_moments.PagePosition | None = stored_moments.START
    while at is not None:
        with session_scope() as session:
            rows, at = schedule_candidates(session, now, only, at, page_rows)
            # A row whose next moment a page stored may come again further on: judged once.
            rows = [row for row in rows if row[0] not in seen]
            seen.update(row[0] for row in rows)
            if rows and budget_used is None:
                budget_used = rate_limit.daily_budget_used_ratio(settings)
            later = []
            for calendar_id, last_success, full_sync_at, expiration, heard, problem, read in rows:
                timing = sync_schedule.CalendarTiming(
                    calendar_id=calendar_id,
                    last_success_at=last_success,
                    full_sync_at=full_sync_at,
                    channel_expiration=expiration,
                    channel_last_heard=heard,
                    watch_refused=problem is not None,
                )
                kind = sync_schedule.due(timing, now, settings)
                if kind is None:
                    moment = sync_schedule.next_due_at(timing, settings)
                    if moment is not None:
                        later.append((calendar_id, read, moment))
                elif sync_schedule.yields_to_budget(timing, budget_used):
                    deferred += 1
                else:
                    found.append((calendar_id, kind))
            stored_moments.store(session, SyncState.next_check_at, later)
    if deferred and only is None:
        log.info("scheduled_syncs_deferred count=%s budget_used=%.3f", deferred, budget_used)
    return found


def due_audits(
    now: datetime, settings: Settings, page_rows: int = stored_moments.PAGE_ROWS
) -> dict[int, list[int]]:
    """Calendars to audit now, per Google account (rules.audit.due_by_account), read by
    their stored moments a page of `page_rows` at a time; those whose moment came but that
    are not due get the next one, stored with their page."""
    check_seconds = audit_check_seconds(settings.audit_seconds)
    candidates: dict[int, tuple[int, int, datetime | None]] = {}
    at: stored_moments.PagePosition | None = stored_moments.START
    while at is not None:
        with session_scope() as session:
            rows, at = audit_candidates(
                session, now + timedelta(seconds=check_seconds), at, page_rows
            )
            # A row whose next moment a page stored may come again further on (within the
            # take-along window): judged once.
            rows = [row for row in rows if row[0] not in candidates]
            candidates.update({row[0]: row[:3] for row in rows})
            later = [
                (calendar_id, seen, next_audit_at(account_id, last_at, now, settings.audit_seconds))
                for calendar_id, account_id, last_at, seen in rows
                if (seen is None or seen <= now)
                and not audit_due(account_id, last_at, now, settings.audit_seconds)
            ]
            stored_moments.store(session, SyncState.next_audit_at, later)
    # An account's calendars may sit on different pages: grouped once all are read.
    ordered = sorted(candidates.values(), key=lambda row: (row[1], row[0]))
    return due_by_account(ordered, now, settings.audit_seconds, check_seconds)
