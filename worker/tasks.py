"""Celery tasks. Thin: each calls the engine and turns its answer into retry decisions.

Names are explicit and stable (they are what the webhook and beat send); arguments are ids.
"""

from __future__ import annotations

import logging
import zlib
from datetime import UTC, datetime, timedelta

from celery import Task
from sqlalchemy import or_, select

from calsync.settings import get_settings
from models import AccountState, Calendar, GoogleAccount, SyncState
from models.db import session_scope
from models.sync_flags import forgotten_dirty
from worker import channels, sync_engine
from worker.celery_app import app
from worker.enqueue import enqueue_sync

log = logging.getLogger("calsync.tasks")

MAX_RETRIES = 25


@app.task(
    name="calsync.sync_calendar",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
)
def sync_calendar(
    self: Task, calendar_id: int, trigger: str = "push", full: bool = False, force: bool = False
) -> str:
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


@app.task(name="calsync.sweep_dirty", acks_late=True, ignore_result=True)
def sweep_dirty() -> int:
    """Re-enqueue calendars whose notification was recorded but whose task was lost
    (broker emptied, worker died): the database's dirty mark is the source of truth."""
    settings = get_settings()
    with session_scope() as session:
        forgotten = forgotten_dirty(session, datetime.now(UTC), settings.sweep_after_seconds)
    for calendar_id in forgotten:
        enqueue_sync(calendar_id, reason="sweeper")
    if forgotten:
        log.info("sweeper_requeued count=%s", len(forgotten))
    return len(forgotten)


def _jitter_factor(calendar_id: int) -> float:
    # A stable 0.75 to 1.25 per calendar, so periodic syncs spread out instead of bunching.
    return 0.75 + (zlib.crc32(str(calendar_id).encode()) % 1000) / 2000


@app.task(name="calsync.safety_net", acks_late=True, ignore_result=True)
def safety_net() -> int:
    """Sync every calendar that has gone too long without a successful sync: push is not
    100% reliable, so no calendar may depend on it alone."""
    settings = get_settings()
    now = datetime.now(UTC)
    earliest_due = now - timedelta(seconds=settings.safety_net_seconds * 0.75)
    with session_scope() as session:
        rows = session.execute(
            select(SyncState.calendar_id, SyncState.last_success_at)
            .join(Calendar, Calendar.id == SyncState.calendar_id)
            .join(GoogleAccount, GoogleAccount.id == Calendar.account_id)
            .where(
                GoogleAccount.state == AccountState.OK,
                SyncState.blocked_reason.is_(None),
                or_(SyncState.lease_until.is_(None), SyncState.lease_until < now),
                or_(
                    SyncState.last_success_at.is_(None),
                    SyncState.last_success_at < earliest_due,
                ),
            )
        ).all()
    due = [
        calendar_id
        for calendar_id, last_success in rows
        if last_success is None
        or now - last_success
        >= timedelta(seconds=settings.safety_net_seconds * _jitter_factor(calendar_id))
    ]
    for calendar_id in due:
        enqueue_sync(calendar_id, reason="safety_net", force=True)
    return len(due)


@app.task(
    name="calsync.start_watch",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=10,
)
def start_watch(self: Task, calendar_id: int) -> str | None:
    try:
        return channels.start_watch(calendar_id)
    except Exception as exc:
        raise self.retry(exc=exc, countdown=min(300, 5 * 2**self.request.retries)) from exc


@app.task(name="calsync.stop_channels", bind=True, acks_late=True, max_retries=5)
def stop_channels(self: Task, account_id: int, channel_list: list[list[str | None]]) -> None:
    try:
        channels.stop_channels_of_account(
            account_id, [(str(cid), rid) for cid, rid in channel_list]
        )
    except Exception as exc:
        raise self.retry(exc=exc, countdown=30) from exc


@app.task(name="calsync.renew_channels", acks_late=True, ignore_result=True)
def renew_channels() -> int:
    renewed = channels.renew_expiring()
    for calendar_id in renewed:
        # Catch up on anything that changed while channels were switched.
        enqueue_sync(calendar_id, reason="channel_renewed", force=True)
    return len(renewed)
