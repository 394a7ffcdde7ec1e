"""The sync of one calendar: claim it, fetch what changed, decide, commit blocks + token.

Invariants:
- Only the holder of the calendar's lease writes its events; the lease is re-checked in the
  transaction that commits, so a worker that lost its lease commits nothing.
- Blocks and the new `nextSyncToken` commit in one transaction. A crash before that commit
  leaves the old token, so the next run fetches the same changes again (applying is
  idempotent); a crash after it has nothing left to do.
- The dirty mark is cleared when the run starts and checked again in the commit
  transaction: a notification that arrived meanwhile makes the same worker run again.
- A failed run puts its dirty mark back, so a lost retry message is found by the sweeper.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from googleapiclient.errors import HttpError
from sqlalchemy import BindParameter, bindparam, case, insert, select, update
from sqlalchemy.orm import Session

from core import metrics
from core.settings import Settings, get_settings
from intake.redis_intake import notice_delay_ms
from models import (
    AccountState,
    Calendar,
    GoogleAccount,
    SyncKind,
    SyncOutcome,
    SyncRunRecord,
    SyncState,
)
from models.accounts import ACCOUNTS
from models.busy_block_writer import ApplyStats, DecidedEvent, Horizon, apply_events
from models.calendars import CALENDARS
from models.credentials_box import decrypt_credentials, encrypt_credentials
from models.db import session_scope
from models.hosts import HOSTS
from models.sync_flags import (
    SYNC_STATES,
    claim,
    extend_lease,
    lease_remaining,
    release_lease,
    restore_dirty,
    take_dirty,
)
from models.sync_runs import SYNC_RUNS
from rules import sync_schedule
from rules.busy_rules import BusyPolicy, decide, parse_event
from worker import google_client
from worker.channels import retire_channels
from worker.enqueue import TaskBatch, after_commit, enqueue_stop_channels
from worker.google_errors import Classified, ErrorKind, classify
from worker.lease_heartbeat import LeaseHeartbeat

log = logging.getLogger("calsync.sync")


def _observe(run: SyncRunRecord) -> None:
    try:
        metrics.observe_sync_run(
            run.kind,
            run.outcome,
            notification_lag_ms=run.notification_lag_ms,
            finished_at=run.finished_at,
            changed_updated=run.changed_updated,
        )
    except Exception:  # a metrics problem must never turn a committed sync into a failure
        log.exception("sync_run_metrics_failed")


MAX_PASSES = 5  # re-runs for notifications that arrive during a run, before yielding
MAX_DEBOUNCE_CHECKS = 20  # the cap bounds the wait; this bounds the database reads
HORIZON_PAST = timedelta(days=1)
MAX_BACKOFF_SECONDS = 300


class LeaseLost(RuntimeError):
    """Another worker took over the calendar (our lease expired); commit nothing."""


@dataclass
class SyncResult:
    """What the task should do next."""

    status: str  # done | skipped | deferred | retry | failed | needs_reauth | blocked
    retry_in: float | None = None
    runs: list[SyncRunRecord] = field(default_factory=list)
    detail: str = ""


@dataclass(frozen=True)
class CalendarContext:
    calendar_id: int
    google_calendar_id: str
    account_id: int
    time_zone: str
    policy: BusyPolicy
    credentials: dict
    # The Google account's address when known: names the user the rate limiter counts.
    email: str | None = None
    # The stored (encrypted) credentials these were read from: a refreshed access token is
    # stored only over these, never over a reconnect's new ones.
    credentials_stored: bytes = b""


def _now() -> datetime:
    return datetime.now(UTC)


def _backoff_seconds(failures: int) -> float:
    # Truncated exponential with full jitter, never under a second.
    return max(1.0, random.uniform(0, min(MAX_BACKOFF_SECONDS, 2 ** min(failures, 10))))


def sync_calendar(
    calendar_id: int,
    *,
    owner: str | None = None,
    trigger: str = "manual",
    full: bool = False,
    force: bool = False,
    settings: Settings | None = None,
    now: Callable[[], datetime] = _now,
) -> SyncResult:
    settings = settings or get_settings()
    owner = owner or uuid.uuid4().hex
    if not (force or full):
        _wait_for_quiet(calendar_id, settings, now)
    with session_scope() as session:
        taken = claim(
            session,
            calendar_id,
            owner,
            now(),
            settings.lease_seconds,
            require_dirty=not (force or full),
        )
        if taken is None:
            return _why_not_claimed(session, calendar_id, now())
        context = _load_context(session, calendar_id)
        if context is None or isinstance(context, str):
            # Not syncable now (revoked access, calendar gone): keep the mark for later.
            if taken.dirty_since is not None:
                restore_dirty(session, calendar_id, taken.dirty_since)
            release_lease(session, calendar_id, owner)
            return SyncResult("blocked" if context else "skipped", detail=context or "gone")

    # A short lease, renewed from a thread while the sync runs: a worker killed mid-sync
    # holds the calendar for at most one lease (worker/lease_heartbeat.py).
    with LeaseHeartbeat(calendar_id, owner, settings.lease_seconds, now):
        return _passes(
            context, owner, taken.dirty_since, taken.sync_token, trigger, full, settings, now
        )


def _passes(
    context: CalendarContext,
    owner: str,
    dirty_since: datetime | None,
    stored_token: str | None,
    trigger: str,
    full: bool,
    settings: Settings,
    now: Callable[[], datetime],
) -> SyncResult:
    calendar_id = context.calendar_id
    sync_token = None if full else stored_token
    result = SyncResult("done")
    for _ in range(MAX_PASSES):
        started = now()
        try:
            run, dirty_again = _one_pass(
                context, owner, sync_token, dirty_since, trigger, settings, now, started
            )
        except LeaseLost:
            return SyncResult("skipped", detail="lease lost", runs=result.runs)
        except Exception as exc:  # every failure is recorded, then classified
            kind = SyncKind.INCREMENTAL if sync_token else SyncKind.FULL
            return _fail(context, owner, exc, kind, dirty_since, trigger, started, now, result)
        result.runs.append(run)
        if dirty_again is None:
            return result
        # Notified while we ran: go again with the stored token, keeping the lease, but
        # not sooner than the minimum interval, so the rest of a burst is one more fetch.
        # The mark is taken only now: everything notified until this moment is covered.
        _pause_before_rerun(context.calendar_id, owner, started, settings, now)
        with session_scope() as session:
            dirty_since = take_dirty(
                session, context.calendar_id, owner, now(), settings.lease_seconds
            )
        sync_token, trigger = run.next_sync_token, "rerun"
    # Still busy after several passes: hand the rest to a fresh task, keep the dirty mark.
    with session_scope() as session:
        restore_dirty(session, calendar_id, dirty_since or now())
        release_lease(session, calendar_id, owner)
    result.status, result.retry_in = "retry", 0.0
    return result


def _wait_for_quiet(calendar_id: int, settings: Settings, now: Callable[[], datetime]) -> None:
    """Debounce: let a burst of notifications end before the first fetch, so it is fetched
    once (the rule and its cap are in sync_schedule.debounce_seconds)."""
    notice_delay = notice_delay_ms(settings)
    for _ in range(MAX_DEBOUNCE_CHECKS):
        with session_scope() as session:
            marks = session.execute(_QUIET_MARKS, {"calendar_id": calendar_id}).one_or_none()
        if marks is None:
            return
        dirty_since, last_notification_at = marks
        wait = sync_schedule.debounce_seconds(
            now(), dirty_since, last_notification_at, settings, notice_delay
        )
        if wait <= 0:
            return
        time.sleep(wait)


def _pause_before_rerun(
    calendar_id: int,
    owner: str,
    previous_start: datetime,
    settings: Settings,
    now: Callable[[], datetime],
) -> None:
    wait = settings.min_sync_interval_ms / 1000 - (now() - previous_start).total_seconds()
    if wait <= 0:
        return
    with session_scope() as session:
        extend_lease(session, calendar_id, owner, now(), settings.lease_seconds)
    time.sleep(wait)


def _why_not_claimed(session: Session, calendar_id: int, at: datetime) -> SyncResult:
    state = session.get(SyncState, calendar_id)
    if state is None:
        return SyncResult("skipped", detail="unknown calendar")
    remaining = lease_remaining(session, calendar_id, at)
    if (state.dirty_since or state.syncing_since) and remaining > 0:
        # Another worker holds the lease; if it dies, we take over when the lease ends.
        return SyncResult("deferred", retry_in=remaining + 0.5, detail="leased")
    return SyncResult("skipped", detail="clean")


def load_context(session: Session, calendar_id: int) -> CalendarContext | str | None:
    """The calendar's context for Google calls; a reason string when it may not call Google
    now (revoked access, blocked), None when it is gone."""
    return _load_context(session, calendar_id)


def _context_statement() -> Any:
    return (
        select(
            CALENDARS.c.google_calendar_id,
            CALENDARS.c.time_zone,
            ACCOUNTS.c.id.label("account_id"),
            ACCOUNTS.c.state,
            ACCOUNTS.c.email,
            ACCOUNTS.c.credentials_encrypted,
            HOSTS.c.time_zone.label("host_time_zone"),
            HOSTS.c.busy_policy,
            SYNC_STATES.c.blocked_reason,
        )
        .join(ACCOUNTS, ACCOUNTS.c.id == CALENDARS.c.account_id)
        .join(HOSTS, HOSTS.c.id == CALENDARS.c.host_id)
        .join(SYNC_STATES, SYNC_STATES.c.calendar_id == CALENDARS.c.id)
        .where(CALENDARS.c.id == bindparam("calendar_id"))
    )


# Statements every sync runs, built once (Core, on the tables): building them per call, and
# the ORM's execution layer, were most of a sync worker's CPU besides Google's answer.
_CONTEXT = _context_statement()
_QUIET_MARKS = select(SYNC_STATES.c.dirty_since, SYNC_STATES.c.last_notification_at).where(
    SYNC_STATES.c.calendar_id == bindparam("calendar_id")
)
_RUN_INSERT = insert(SYNC_RUNS)


def _load_context(session: Session, calendar_id: int) -> CalendarContext | str | None:
    row = session.execute(_CONTEXT, {"calendar_id": calendar_id}).one_or_none()
    if row is None:
        return None
    if row.state != AccountState.OK:
        return "needs_reauth"
    if row.blocked_reason:
        return str(row.blocked_reason)
    return CalendarContext(
        calendar_id=calendar_id,
        google_calendar_id=row.google_calendar_id,
        account_id=row.account_id,
        time_zone=row.time_zone or row.host_time_zone or "UTC",
        policy=BusyPolicy.from_json(row.busy_policy or {}),
        credentials=decrypt_credentials(row.credentials_encrypted),
        email=row.email,
        credentials_stored=row.credentials_encrypted,
    )


class _PageReader:
    """Consumes pages into decided events, keeping the lease alive and counting."""

    def __init__(
        self,
        context: CalendarContext,
        owner: str,
        settings: Settings,
        now: Callable[[], datetime],
    ) -> None:
        self.context, self.owner, self.settings, self.now = context, owner, settings, now
        self.pages = 0
        self.events_seen = 0
        self.time_zone = context.time_zone
        self.next_sync_token: str | None = None
        self.decided: list[DecidedEvent] = []

    def read(self, pages: Iterable[dict]) -> None:
        for page in pages:
            self.pages += 1
            self.time_zone = page.get("timeZone") or self.time_zone
            for event in page.get("items", ()):
                facts = parse_event(event, self.time_zone)
                self.decided.append(DecidedEvent(facts, decide(facts, self.context.policy)))
            self.events_seen += len(page.get("items", ()))
            self.next_sync_token = page.get("nextSyncToken") or self.next_sync_token
            if page.get("nextPageToken"):
                with session_scope() as session:
                    if not extend_lease(
                        session,
                        self.context.calendar_id,
                        self.owner,
                        self.now(),
                        self.settings.lease_seconds,
                    ):
                        raise LeaseLost


def _fetch(
    service: google_client.AccountService,
    context: CalendarContext,
    sync_token: str | None,
    settings: Settings,
    now: Callable[[], datetime],
) -> Iterator[dict]:
    at = now()
    return google_client.list_event_pages(
        service,
        context.google_calendar_id,
        sync_token=sync_token,
        time_min=None if sync_token else at - HORIZON_PAST,
        time_max=None if sync_token else at + timedelta(days=settings.sync_horizon_days),
    )


# The `cause` of the outbound busy.changed event of each kind of sync.
SYNC_CAUSES = {
    SyncKind.INCREMENTAL: "sync",
    SyncKind.FULL: "full_sync",
    SyncKind.RECOVERY_410: "410_recovery",
}


def _one_pass(
    context: CalendarContext,
    owner: str,
    sync_token: str | None,
    dirty_since: datetime | None,
    trigger: str,
    settings: Settings,
    now: Callable[[], datetime],
    started: datetime,
) -> tuple[SyncRunRecord, datetime | None]:
    kind = SyncKind.INCREMENTAL if sync_token else SyncKind.FULL
    reader = _PageReader(context, owner, settings, now)
    service = google_client.build_service(context.credentials, settings, context.email)
    try:
        reader.read(_fetch(service, context, sync_token, settings, now))
    except HttpError as exc:
        if sync_token is None or classify(exc).kind is not ErrorKind.SYNC_TOKEN_GONE:
            raise
        # 410: the token is dead. Fetch everything again and swap it in atomically.
        log.info("sync_token_gone calendar_id=%s", context.calendar_id)
        kind = SyncKind.RECOVERY_410
        reader = _PageReader(context, owner, settings, now)
        reader.read(_fetch(service, context, None, settings, now))
    if not reader.next_sync_token:
        raise RuntimeError("Google ended the listing without a nextSyncToken")
    fresh = google_client.refreshed_credentials(service, context.credentials)
    return _commit(context, owner, kind, reader, dirty_since, trigger, now, started, fresh)


def _commit(
    context: CalendarContext,
    owner: str,
    kind: SyncKind,
    reader: _PageReader,
    dirty_since: datetime | None,
    trigger: str,
    now: Callable[[], datetime],
    started: datetime,
    fresh_credentials: dict | None = None,
) -> tuple[SyncRunRecord, datetime | None]:
    calendar_id = context.calendar_id
    with session_scope() as session:
        applied_at = now()
        # First statement takes the row lock (and on SQLite the write lock).
        if not extend_lease(session, calendar_id, owner, applied_at, reader.settings.lease_seconds):
            raise LeaseLost
        horizon = Horizon(
            applied_at - HORIZON_PAST,
            applied_at + timedelta(days=reader.settings.sync_horizon_days),
        )
        stats = apply_events(
            session,
            calendar_id,
            reader.decided,
            horizon=horizon,
            now=applied_at,
            replace_all=kind is not SyncKind.INCREMENTAL,
            cause=SYNC_CAUSES[kind],
        )
        dirty_again = _store_success(
            session,
            calendar_id,
            reader.next_sync_token,
            applied_at,
            full=kind is not SyncKind.INCREMENTAL,
        )
        if reader.time_zone != context.time_zone:
            session.execute(
                update(Calendar)
                .where(Calendar.id == calendar_id)
                .values(time_zone=reader.time_zone)
            )
        if fresh_credentials is not None:
            _store_refreshed(session, context, fresh_credentials)
        run = _run_row(calendar_id, kind, trigger, started, applied_at, reader, stats, dirty_since)
        run.next_sync_token = reader.next_sync_token
        run.changed_updated = stats.changed_updated
        session.execute(_RUN_INSERT, run.row_values())
    _observe(run)
    log.info(
        "sync_applied calendar_id=%s kind=%s pages=%s events=%s upserted=%s deleted=%s",
        calendar_id,
        kind,
        reader.pages,
        reader.events_seen,
        stats.blocks_upserted,
        stats.blocks_deleted,
    )
    return run, dirty_again


def _store_success(
    session: Session, calendar_id: int, token: str | None, at: datetime, *, full: bool
) -> datetime | None:
    """The new token and a clean record, in one statement; the lease is let go unless a
    notification came in meanwhile (the dirty mark it returns: the caller runs again)."""
    statement = _STORE_SUCCESS_FULL if full else _STORE_SUCCESS
    return session.execute(statement, {"id": calendar_id, "token": token, "at": at}).scalar_one()


def _store_success_statement(*, full: bool) -> Any:
    table = SYNC_STATES
    dirty = table.c.dirty_since
    at: BindParameter[datetime] = bindparam("at", type_=table.c.last_success_at.type)
    values: dict[str, Any] = {
        "sync_token": bindparam("token"),
        "last_success_at": at,
        "consecutive_failures": 0,
        "last_error_code": None,
        "last_error_message": None,
        "syncing_since": None,
        # SET reads the row as it was: the lease stays only with a new mark to work on.
        "lease_owner": case((dirty.is_(None), None), else_=table.c.lease_owner),
        "lease_until": case((dirty.is_(None), None), else_=table.c.lease_until),
    }
    if full:
        values["full_sync_at"] = at
    return (
        update(table).where(table.c.calendar_id == bindparam("id")).values(values).returning(dirty)
    )


_STORE_SUCCESS = _store_success_statement(full=False)
_STORE_SUCCESS_FULL = _store_success_statement(full=True)


def _store_refreshed(session: Session, context: CalendarContext, fresh: dict) -> None:
    """The refreshed access token, encrypted, over the credentials it was refreshed from
    (if the account was reconnected meanwhile, its new credentials stay)."""
    session.execute(
        update(ACCOUNTS)
        .where(
            GoogleAccount.id == context.account_id,
            GoogleAccount.credentials_encrypted == context.credentials_stored,
        )
        .values(credentials_encrypted=encrypt_credentials(fresh))
    )


def _run_row(
    calendar_id: int,
    kind: SyncKind,
    trigger: str,
    started: datetime,
    finished: datetime,
    reader: _PageReader,
    stats: ApplyStats,
    dirty_since: datetime | None,
) -> SyncRunRecord:
    return SyncRunRecord(
        calendar_id=calendar_id,
        kind=str(kind),
        trigger=trigger,
        started_at=started,
        finished_at=finished,
        duration_ms=int((finished - started).total_seconds() * 1000),
        pages=reader.pages,
        events_seen=reader.events_seen,
        blocks_upserted=stats.blocks_upserted,
        blocks_deleted=stats.blocks_deleted,
        notification_lag_ms=(
            int((finished - dirty_since).total_seconds() * 1000) if dirty_since else None
        ),
        outcome=str(SyncOutcome.OK),
    )


def _fail(
    context: CalendarContext,
    owner: str,
    exc: BaseException,
    kind: SyncKind,
    dirty_since: datetime | None,
    trigger: str,
    started: datetime,
    now: Callable[[], datetime],
    result: SyncResult,
) -> SyncResult:
    problem = classify(exc)
    if problem.kind is ErrorKind.PERMANENT:
        log.exception("sync_failed calendar_id=%s", context.calendar_id)
    else:
        log.warning(
            "sync_failed calendar_id=%s code=%s kind=%s error=%s",
            context.calendar_id,
            problem.code,
            problem.kind,
            type(exc).__name__,
        )
    at = now()
    with session_scope() as session:
        state = session.get(SyncState, context.calendar_id, populate_existing=True)
        assert state is not None
        failures = state.consecutive_failures + 1
        state.consecutive_failures = failures
        state.last_error_code = problem.code
        state.last_error_message = problem.message
        outcome, status, retry_in = _failure_policy(problem, failures)
        if problem.kind is ErrorKind.AUTH_REVOKED:
            _mark_needs_reauth(session, context.account_id, problem)
        stopping: TaskBatch | None = None
        if problem.kind is ErrorKind.CALENDAR_GONE:
            state.blocked_reason = problem.code
            # Its notifications can only lead to more refused calls: stop listening.
            retired = retire_channels(session, context.calendar_id, at)
            if retired:
                stopping = after_commit(session, enqueue_stop_channels, context.account_id, retired)
        if state.lease_owner == owner:
            if retry_in is not None:
                # Hold the lease through the backoff so the sweeper does not retry early;
                # the Celery retry arrives when it ends.
                state.lease_owner = "backoff"
                state.lease_until = at + timedelta(seconds=retry_in)
            else:
                state.lease_owner = None
                state.lease_until = None
        # Keep the work: a lost retry message is found again by the sweeper.
        restore_dirty(session, context.calendar_id, dirty_since or at)
        failed_run = SyncRunRecord(
            calendar_id=context.calendar_id,
            kind=str(kind),
            trigger=trigger,
            started_at=started,
            finished_at=at,
            duration_ms=int((at - started).total_seconds() * 1000),
            outcome=str(outcome),
            error_code=problem.code,
            error_message=problem.message,
        )
        session.add(failed_run.to_row())
    if stopping is not None and stopping.failed:
        # They are stopped on our side already and expire at Google.
        log.warning("channel_stop_not_enqueued account_id=%s", context.account_id)
    _observe(failed_run)
    result.status, result.retry_in, result.detail = status, retry_in, problem.code
    return result


def _failure_policy(problem: Classified, failures: int) -> tuple[SyncOutcome, str, float | None]:
    if problem.kind is ErrorKind.AUTH_REVOKED:
        return SyncOutcome.NEEDS_REAUTH, "needs_reauth", None
    if problem.kind is ErrorKind.CALENDAR_GONE:
        return SyncOutcome.FAILED, "blocked", None
    return SyncOutcome.RETRYING, "retry", _backoff_seconds(failures)


def _mark_needs_reauth(session: Session, account_id: int, problem: Classified) -> None:
    session.execute(
        update(GoogleAccount)
        .where(GoogleAccount.id == account_id)
        .values(state=AccountState.NEEDS_REAUTH, state_reason=problem.message)
    )
    google_client.forget_services()
