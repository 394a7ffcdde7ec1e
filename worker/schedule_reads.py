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
    now: datetime, settings: Settings | None = None, only: int | None = None
) -> list[tuple[int, sync_schedule.Due]]:
    """Calendars (or just `only`) due for a safety-net, poll or periodic full sync now, and
    not being synced. While the daily budget runs low, only never-synced calendars are due
    (`sync_schedule.yields_to_budget`): the rest wait until it recovers."""
    settings = settings or get_settings()
    with session_scope() as session:
        rows = schedule_candidates(session, now, only)
    budget_used = rate_limit.daily_budget_used_ratio(settings) if rows else None
    deferred = 0
    found = []
    later = []
    for calendar_id, last_success, full_sync_at, expiration, last_heard, problem, seen in rows:
        timing = sync_schedule.CalendarTiming(
            calendar_id=calendar_id,
            last_success_at=last_success,
            full_sync_at=full_sync_at,
            channel_expiration=expiration,
            channel_last_heard=last_heard,
            watch_refused=problem is not None,
        )
        kind = sync_schedule.due(timing, now, settings)
        if kind is None:
            moment = sync_schedule.next_due_at(timing, settings)
            if moment is not None:
                later.append((calendar_id, seen, moment))
            continue
        if sync_schedule.yields_to_budget(timing, budget_used):
            deferred += 1
        else:
            found.append((calendar_id, kind))
    if later:
        with session_scope() as session:
            stored_moments.store(session, SyncState.next_check_at, later)
    if deferred and only is None:
        log.info("scheduled_syncs_deferred count=%s budget_used=%.3f", deferred, budget_used)
    return found


def due_audits(now: datetime, settings: Settings) -> dict[int, list[int]]:
    """Calendars to audit now, per Google account (rules.audit.due_by_account), read by
    their stored moments; those whose moment came but that are not due get the next one."""
    check_seconds = audit_check_seconds(settings.audit_seconds)
    with session_scope() as session:
        rows = audit_candidates(session, now + timedelta(seconds=check_seconds))
    candidates = [
        (calendar_id, account_id, last_at) for calendar_id, account_id, last_at, _ in rows
    ]
    due = due_by_account(candidates, now, settings.audit_seconds, check_seconds)
    # Candidates whose stored moment came but that are not due: store their next moment.
    later = [
        (calendar_id, seen, next_audit_at(account_id, last_at, now, settings.audit_seconds))
        for calendar_id, account_id, last_at, seen in rows
        if (seen is None or seen <= now)
        and not audit_due(account_id, last_at, now, settings.audit_seconds)
    ]
    if later:
        with session_scope() as session:
            stored_moments.store(session, SyncState.next_audit_at, later)
    return due
