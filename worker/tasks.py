"""Celery tasks. Thin: each calls the engine and turns its answer into retry decisions.

Names are explicit and stable (`TaskNames`: what the webhook and beat send); arguments are
ids. The base class (worker/task_base.py) acknowledges late, ignores results, retries only
transient errors and times every run; beat's tasks never retry (the next tick runs them).
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta

from celery import Task

from core.settings import Settings, get_settings
from models import fleet_counts
from models.db import session_scope
from models.host_log import prune_sync_runs
from models.sign_in_links import prune_sign_in_links
from models.sync_flags import forgotten_dirty
from rules import sync_schedule
from rules.audit import (
    undecided_retry_seconds,
)
from worker import audit, channels, rate_limit, sync_engine
from worker.celery_app import app
from worker.enqueue import enqueue_audit, enqueue_sync
from worker.queue_depth import queue_depth
from worker.schedule_reads import due_audits, due_calendars
from worker.task_names import TaskNames

log = logging.getLogger("calsync.tasks")

MAX_RETRIES = 25
SCHEDULED_TRIGGERS = frozenset(str(kind) for kind in sync_schedule.Due)


@app.task(name=str(TaskNames.SYNC_CALENDAR), bind=True, max_retries=MAX_RETRIES)
def sync_calendar(
    self: Task, calendar_id: int, trigger: str = "push", full: bool = False, force: bool = False
) -> str:
    # Beat asks again while a calendar stays due, so with a backlog the same sync can be
    # queued twice: only the first one that finds it still due runs.
    if (
        trigger in SCHEDULED_TRIGGERS
        and not self.request.retries
        and not due_calendars(datetime.now(UTC), only=calendar_id)
    ):
        return "skipped"
    result = sync_engine.sync_calendar(
        calendar_id, owner=self.request.id, trigger=trigger, full=full, force=force
    )
    if result.status == "deferred":
        # Not a failure: another worker holds the lease. Come back when it ends, in a new
        # message so a long lease does not use up the retry budget.
        sync_calendar.apply_async(
            args=[calendar_id],
            kwargs={"trigger": trigger, "full": full, "force": force},
            countdown=result.retry_in,
        )
    elif result.status == "retry":
        if self.request.retries >= MAX_RETRIES:
            # The dirty mark stays set; the sweeper keeps trying at its own pace.
            log.error("sync_gave_up calendar_id=%s", calendar_id)
            return result.status
        raise self.retry(countdown=result.retry_in or 0, max_retries=MAX_RETRIES)
    return result.status


def _held_for_backlog(round_name: str, settings: Settings, *, urgent_only: bool = False) -> bool:
    """Whether beat's round sends nothing this time: the queue holds a backlog
    (`sync_schedule.BACKLOG_MESSAGES`), most likely with this round's calendars in it;
    `urgent_only`: counting only the messages of the default priority."""
    depth = queue_depth(settings, urgent_only=urgent_only)
    if not sync_schedule.holds_for_backlog(depth):
        return False
    log.info("%s_held queue_depth=%s", round_name, depth)
    return True


@app.task(name=str(TaskNames.SWEEP_DIRTY), max_retries=0)
def sweep_dirty() -> int:
    """Re-enqueue calendars whose notification was recorded but whose task was lost
    (broker emptied, worker died): the database's dirty mark is the source of truth."""
    settings = get_settings()
    # Its messages go ahead of scheduled syncs: only a backlog of those it would add to
    # holds it (a killed worker's calendar is not left waiting behind the safety net's).
    if _held_for_backlog("sweeper", settings, urgent_only=True):
        return 0
    with session_scope() as session:
        forgotten = forgotten_dirty(session, datetime.now(UTC), settings.sweep_after_seconds)
    for calendar_id in forgotten:
        enqueue_sync(calendar_id, reason="sweeper")
    if forgotten:
        log.info("sweeper_requeued count=%s", len(forgotten))
    return len(forgotten)


@app.task(name=str(TaskNames.SAFETY_NET), max_retries=0)
def safety_net() -> int:
    """Sync every calendar that has gone too long without a sync: push is not 100% reliable,
    so no calendar may depend on it alone (and one without working push is polled)."""
    settings = get_settings()
    if _held_for_backlog("safety_net", settings):
        return 0
    due = due_calendars(datetime.now(UTC))
    countdowns = sync_schedule.spread_countdowns(len(due), settings)
    for (calendar_id, kind), countdown in zip(due, countdowns, strict=True):
        enqueue_sync(
            calendar_id,
            reason=str(kind),
            full=kind is sync_schedule.Due.FULL,
            force=True,
            countdown=countdown,
            scheduled=True,
        )
    return len(due)


# Transient errors (Google 5xx/429, network, database or broker away) are retried by the
# base class after 5, 10, 20 … 300 s; anything else fails the task: the channel check in
# renew_channels opens the watch later, or the calendar stays on polling.
@app.task(name=str(TaskNames.START_WATCH), max_retries=10)
def start_watch(calendar_id: int) -> str | None:
    return channels.start_watch(calendar_id)


# Transient errors are retried every 30 s; anything else fails the task: the channels are
# already stopped on our side and expire at Google.
@app.task(
    name=str(TaskNames.STOP_CHANNELS),
    max_retries=5,
    transient_backoff=30,
    transient_backoff_max=30,
)
def stop_channels(
    account_id: int, channel_list: list[list[str | None]], sealed_credentials: str | None = None
) -> None:
    channels.stop_channels_of_account(
        account_id,
        [(str(cid), rid) for cid, rid in channel_list],
        sealed_credentials=sealed_credentials.encode("ascii") if sealed_credentials else None,
    )


@app.task(name=str(TaskNames.RENEW_CHANNELS), max_retries=0)
def renew_channels() -> int:
    """Renew channels before they expire, and open one for every calendar whose channel is
    missing or expired. Each then gets a catch-up sync: whatever changed while channels
    were switched (or absent) was not pushed."""
    renewed = channels.renew_expiring()
    opened = channels.ensure_watched()
    for calendar_id in [*renewed, *opened]:
        enqueue_sync(calendar_id, reason="channel_renewed", force=True)
    return len(renewed) + len(opened)


# An audit that could not decide (the calendar changed meanwhile, Google failed after the
# request's own retries) is tried again soon, a bounded number of times
# (rules.audit.undecided_retry_seconds); after that the calendar waits for its next regular
# audit, which beat schedules from the last attempt.
@app.task(name=str(TaskNames.AUDIT_CALENDARS), max_retries=0)
def audit_calendars(
    calendar_ids: list[int], reason: str = "schedule", attempt: int = 0
) -> dict[str, int]:
    reports = audit.audit_calendars(calendar_ids)
    counts: dict[str, int] = {}
    for report in reports:
        counts[report.outcome] = counts.get(report.outcome, 0) + 1
    log.info("audit_done reason=%s attempt=%s outcomes=%s", reason, attempt, counts)
    undecided = [r.calendar_id for r in reports if r.outcome in ("deferred", "error")]
    delay = (
        undecided_retry_seconds(attempt, get_settings().audit_seconds, random.random())
        if undecided
        else None
    )
    if delay is not None:
        audit_calendars.apply_async(
            args=[undecided],
            kwargs={"reason": "undecided", "attempt": attempt + 1},
            countdown=delay,
        )
    return counts


@app.task(name=str(TaskNames.SCHEDULE_AUDITS), max_retries=0)
def schedule_audits() -> int:
    """Enqueue one audit task per Google account for its calendars that are due (one
    freeBusy request per account and round). Audits are upkeep: while the daily budget
    runs low they wait, like scheduled syncs, so they never take what syncs need."""
    settings = get_settings()
    now = datetime.now(UTC)
    budget_used = rate_limit.daily_budget_used_ratio(settings)
    if budget_used is not None and budget_used >= sync_schedule.BUDGET_LOW_USED_RATIO:
        log.info("audits_deferred_for_budget budget_used=%.3f", budget_used)
        return 0
    due = due_audits(now, settings)
    for calendar_ids in due.values():
        enqueue_audit(calendar_ids, reason="schedule")
    return sum(len(ids) for ids in due.values())


@app.task(name=str(TaskNames.PRUNE_HISTORY), max_retries=0)
def prune_history() -> dict[str, int]:
    """Delete sync runs older than CALSYNC_SYNC_RUN_RETENTION_DAYS and sign-in links that
    expired over a day ago (the host's log shows 7 days; the retention is for the operator);
    fold the fleet counts' change rows (models/fleet_counts.py)."""
    now = datetime.now(UTC)
    keep = timedelta(days=get_settings().sync_run_retention_days)
    with session_scope() as session:
        runs = prune_sync_runs(session, now - keep)
        links = prune_sign_in_links(session, now)
        folded = fleet_counts.fold(session)
    if runs or links:
        log.info("history_pruned sync_runs=%s sign_in_links=%s", runs, links)
    return {"syncRuns": runs, "signInLinks": links, "countRowsFolded": folded}
