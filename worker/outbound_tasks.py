"""Celery tasks of outbound webhooks, on their own queue (QueueNames.OUTBOUND).

- `outbound_fan_out(host_id)`: sent after a change commits (countdown: the coalescing
  window; at most one a window from each process); merges each ready host's outbox rows,
  creates the deliveries and starts a sender for each endpoint that got some.
- `outbound_deliver(endpoint_id)`: the endpoint's sender: sends its due lane heads in
  batches (each host's events in order, the hosts of a batch side by side over one
  keep-alive connection pool), records each answer, and goes on while work is due. One per
  endpoint at a time, so a slow receiver holds one pool slot, never the others'.
- `outbound_sweep` (beat, every second): whatever the messages missed (a lost message, a
  worker killed between commit and send, a retry come due): the outbox and deliveries
  tables are the truth. Also disables endpoints failing for 5 days.
- `outbound_states` (beat, every 10 s): announces calendar state changes and drops sent
  events and deliveries older than a week.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import urllib3
from celery import Task
from sqlalchemy.orm import Session

from core import metrics
from core.settings import get_settings
from models.db import session_scope
from models.outbound_deliveries import (
    Attempt,
    DeliveryWork,
    claim_batch,
    disable_long_failing,
    endpoints_with_due_work,
    prune,
    record_attempt,
    record_delivered,
    release_sender,
    take_senders,
)
from models.outbound_fanout import SWEEP_GRACE, FanOutResult, fan_out
from models.outbound_states import announce_state_changes
from worker import outbound_sender, sender_slots
from worker.celery_app import app
from worker.enqueue import enqueue_outbound_delivery, enqueue_outbound_fan_out_once
from worker.task_names import TaskNames

log = logging.getLogger("calsync.outbound")

# Under a steady stream of changes, a fan-out's follow-up comes at most this often: each
# fan-out wakes every endpoint's sender for a batch (a claim and a record, whatever its
# size), so fan-outs every few ms cost the outbound process more CPU than the sending;
# a host's event waits at most this much beyond its coalescing window for it. Benchmark 7
# (10 endpoints): 100 ms cost the outbound process ~50% of a core, 200 ms ~35%, for
# delivery p99 ~0.5 s either way (bench/RESULTS.md §7, session 13). 300 ms changed
# nothing: the writers' own messages, due at their window's end, come first (session 14).
FAN_OUT_EVERY = 0.2
# A delivery's claim outlasts the request's timeout by this much: a sender killed
# mid-request is replaced once it runs out.
CLAIM_MARGIN = timedelta(seconds=5)
# A sender sends for at most this long, then hands over to a fresh message (other
# endpoints' senders and the syncs get their turn in the pool).
SENDER_SECONDS = 5.0
BATCH = 50
PARALLEL = 2  # requests of one batch in flight at once (different hosts: no order between)
# A sender whose lanes ran dry waits this long for more before it lets go: under load new
# deliveries come every coalescing window, and a fresh sender task each window (its start,
# release and due-work transactions and its message) cost more CPU than the sending.
LINGER_SECONDS = 1.0
# While it waits it looks again this often, or at once when a fan-out of this process made
# deliveries for its endpoint (another process's are seen at the next look).
LOOK_AGAIN_SECONDS = 0.25


def _now() -> datetime:
    return datetime.now(UTC)


def sender_hold(timeout_seconds: float) -> timedelta:
    """How long a sender is counted as running: its time budget, one more request, margin."""
    return timedelta(seconds=SENDER_SECONDS + timeout_seconds) + CLAIM_MARGIN


_arrivals: dict[str, threading.Event] = {}
# Sender tasks running in this process, by endpoint: new work for one of them needs no
# second sender, only a wake-up (see outbound_deliver for why none is missed).
_senders_here: Counter[str] = Counter()


def _arrival(endpoint_id: str) -> threading.Event:
    """Set when this process has made deliveries for the endpoint (wakes its sender)."""
    with _state_lock:
        return _arrivals.setdefault(endpoint_id, threading.Event())


def start_senders(endpoint_ids: Iterable[str]) -> None:
    """Queue a sender for each endpoint that has none running (one that is waiting for
    more work in this process is woken instead)."""
    wanted = sorted(set(endpoint_ids))
    if not wanted:
        return
    for endpoint_id in wanted:
        _arrival(endpoint_id).set()
    with _state_lock:
        wanted = [endpoint_id for endpoint_id in wanted if not _senders_here[endpoint_id]]
    if not wanted:
        return  # each has a sender here, now woken: no transaction needed
    hold = sender_hold(get_settings().outbound_timeout_seconds)
    now = _now()
    with session_scope() as session:
        starting = take_senders(session, wanted, now, hold)
    for endpoint_id in starting:
        enqueue_outbound_delivery(endpoint_id)


# One fan-out at a time in a process: two at once claim the same ready hosts' rows, and
# the second waits on the first's row locks in PostgreSQL (seconds under load, holding
# back the horizon every claim's index scan depends on); here it waits for the first to
# finish, then finds what is left.
_fan_out_lock = threading.Lock()


def _fan_out(coalesce: timedelta) -> FanOutResult:
    with _fan_out_lock:
        return fan_out(_now(), coalesce)


@app.task(name=str(TaskNames.OUTBOUND_FAN_OUT), max_retries=3)
def outbound_fan_out(host_id: int | None) -> int:
    settings = get_settings()
    window = timedelta(milliseconds=settings.outbound_coalesce_ms)
    # Every host that is ready, not only the one that asked: under load one message fans
    # out the changes of many commits (enqueue_outbound_fan_out sends at most one per
    # window from each process).
    result = _fan_out(window)
    start_senders(result.endpoints)
    if result.wait_seconds is not None:
        # Hosts inside their window: come back when the first of them is out of it, or
        # FAN_OUT_EVERY from now if that is later (unless a sooner fan-out is waiting
        # already: it will see them).
        countdown = max(result.wait_seconds + 0.01, FAN_OUT_EVERY)
        enqueue_outbound_fan_out_once(None, countdown=countdown)
    return result.events


_http: dict[str, urllib3.PoolManager] = {}
# Guards this process's small shared maps: HTTP sessions, arrivals, senders running here.
_state_lock = threading.Lock()


def _http_for(endpoint_id: str) -> urllib3.PoolManager:
    """The endpoint's HTTP session in this process, kept across sender tasks so its
    connections stay alive (a sender task ends whenever its lanes run dry)."""
    with _state_lock:
        if endpoint_id not in _http:
            _http[endpoint_id] = outbound_sender.http_session(PARALLEL)
        return _http[endpoint_id]


@app.task(name=str(TaskNames.OUTBOUND_DELIVER), bind=True, max_retries=3)
def outbound_deliver(self: Task, endpoint_id: str) -> int:
    settings = get_settings()
    timeout = settings.outbound_timeout_seconds
    claim_hold = timedelta(seconds=timeout) + CLAIM_MARGIN
    # The task id owns the claims: a message delivered again after its worker died carries
    # the same id and takes its own claims over at once.
    owner = str(self.request.id or f"local-{endpoint_id}")
    deadline = time.monotonic() + SENDER_SECONDS
    http = _http_for(endpoint_id)
    arrival = _arrival(endpoint_id)
    with _state_lock:
        _senders_here[endpoint_id] += 1
    try:
        with ThreadPoolExecutor(max(1, PARALLEL - 1)) as pool:
            sent, handed_over = _send_while_due(
                endpoint_id, owner, claim_hold, deadline, http, arrival, _striped(pool)
            )
        if handed_over:
            return sent
        with session_scope() as session:
            release_sender(session, endpoint_id)
    finally:
        # Before the check below: a fan-out that still counted this sender (and so only
        # woke it) committed its deliveries before looking, so the check sees them.
        with _state_lock:
            _senders_here[endpoint_id] -= 1
    # Work that came due between the last claim and the release: start again.
    with session_scope() as session:
        again = endpoints_with_due_work(session, _now(), endpoint_id=endpoint_id)
    if again:
        start_senders(again)
    return sent


@dataclass(frozen=True)
class _Answered:
    """A batch's answers, not yet recorded, and when they came."""

    pairs: list[tuple[DeliveryWork, Attempt]]
    at: datetime
    endpoint_failing: bool  # as claimed


def _send_while_due(
    endpoint_id: str,
    owner: str,
    claim_hold: timedelta,
    deadline: float,
    http: urllib3.PoolManager,
    arrival: threading.Event,
    map_: MapFn,
) -> tuple[int, bool]:
    """Claim, send and record batches until the lanes run dry (after lingering a moment
    for more, if a waiting slot is free) or the time is up; how many were sent, and
    whether a fresh message carries on.

    A batch's answers are recorded in the transaction of the next claim, which reads
    them (a host's next event waits for its last one), so a batch costs one transaction,
    not two: under a stream of changes each fan-out wakes every endpoint's sender for a
    small batch. That claim comes at once only if the batch may have more behind it (a
    lane of it has a later delivery queued, or it was full); otherwise at the next
    wake-up or look, as at once it would mostly find nothing: a transaction per batch for
    nothing. Nothing waits long unrecorded: the last claim finds the lanes dry. A sender
    that dies before recording leaves its claims to run out, and the deliveries go again
    (at least once)."""
    timeout = get_settings().outbound_timeout_seconds
    sent, waiting = 0, False
    dry_since: float | None = None
    answered: _Answered | None = None
    try:
        while True:
            arrival.clear()  # before the claim: a later fan-out's set is not missed
            with session_scope() as session:
                outcomes = _record(session, endpoint_id, answered)
                claim = claim_batch(session, endpoint_id, owner, _now(), claim_hold, BATCH)
            _observe_all(answered, outcomes)
            answered, batch = None, claim.work
            if not batch:
                dry_since = dry_since or time.monotonic()
                waiting = waiting or sender_slots.take()
                if not waiting or time.monotonic() - dry_since >= LINGER_SECONDS:
                    return sent, False
                arrival.wait(LOOK_AGAIN_SECONDS)
                continue
            dry_since = None
            attempts = outbound_sender.send_batch(batch, timeout, http, map_)
            answered = _Answered(
                list(zip(batch, attempts, strict=True)), _now(), claim.endpoint_failing
            )
            sent += len(batch)
            if time.monotonic() > deadline:
                with session_scope() as session:
                    outcomes = _record(session, endpoint_id, answered)
                _observe_all(answered, outcomes)
                # More may be due: a fresh message carries on (the sender stays marked).
                enqueue_outbound_delivery(endpoint_id)
                return sent, True
            if not claim.more:
                waiting = waiting or sender_slots.take()
                if waiting:
                    arrival.wait(LOOK_AGAIN_SECONDS)
    finally:
        if waiting:
            sender_slots.give_back()


MapFn = Callable[[Callable[[DeliveryWork], Attempt], list[DeliveryWork]], Iterable[Attempt]]


def _striped(pool: ThreadPoolExecutor) -> MapFn:
    """PARALLEL requests of a batch in flight at once: the batch split in PARALLEL
    stripes, all but one sent from `pool`'s threads, that one from the calling thread.
    One hand-over per stripe, not per request (a future per request cost the sender more
    CPU than the request itself under small batches)."""

    def map_(send: Callable[[DeliveryWork], Attempt], batch: list[DeliveryWork]) -> list[Attempt]:
        def each(stripe: list[DeliveryWork]) -> list[Attempt]:
            return [send(work) for work in stripe]

        if not batch:
            return []
        stripes = [batch[i::PARALLEL] for i in range(min(PARALLEL, len(batch)))]
        elsewhere = [pool.submit(each, stripe) for stripe in stripes[1:]]
        answered = [each(stripes[0]), *(future.result() for future in elsewhere)]
        attempts: list[Attempt] = [None] * len(batch)  # type: ignore[list-item]
        for i, stripe_attempts in enumerate(answered):
            attempts[i::PARALLEL] = stripe_attempts
        return attempts

    return map_


def _record(session: Session, endpoint_id: str, answered: _Answered | None) -> list[str]:
    """Record a batch's answers (as of when they came); each one's outcome."""
    if answered is None:
        return []
    settings = get_settings()
    record_delivered(
        session,
        endpoint_id,
        [(work.delivery_id, attempt) for work, attempt in answered.pairs if attempt.ok],
        answered.at,
        was_failing=answered.endpoint_failing,
    )
    return [
        "delivered"
        if attempt.ok
        else record_attempt(
            session,
            work.delivery_id,
            attempt,
            answered.at,
            first_retry_seconds=settings.outbound_first_retry_seconds,
        ).outcome
        for work, attempt in answered.pairs
    ]


def _observe_all(answered: _Answered | None, outcomes: list[str]) -> None:
    if answered is None:
        return
    for (work, attempt), outcome in zip(answered.pairs, outcomes, strict=True):
        _observe(work, attempt, outcome, answered.at)


def _observe(work: DeliveryWork, attempt: Attempt, outcome: str, now: datetime) -> None:
    kind = "given_up" if outcome == "given_up" else outbound_sender.outcome_of(attempt)
    lag = (now - work.committed_at).total_seconds() if attempt.ok else None
    metrics.observe_outbound_attempt(kind, lag)
    if not attempt.ok:
        log.info(
            "outbound_attempt_failed delivery_id=%s endpoint_id=%s outcome=%s status=%s",
            work.delivery_id,
            work.endpoint_id,
            outcome,
            attempt.status_code,
        )


@app.task(name=str(TaskNames.OUTBOUND_SWEEP), max_retries=0)
def outbound_sweep() -> int:
    settings = get_settings()
    window = timedelta(milliseconds=settings.outbound_coalesce_ms)
    result = _fan_out(window + SWEEP_GRACE)
    now = _now()
    with session_scope() as session:
        due = endpoints_with_due_work(session, now - SWEEP_GRACE)
        disabled = disable_long_failing(session, now)
    start_senders([*result.endpoints, *due])
    if disabled:
        log.warning("outbound_endpoints_disabled ids=%s", ",".join(disabled))
    if result.events or due:
        log.info("outbound_sweep fanned_out=%s endpoints_due=%s", result.events, len(due))
    return result.events + len(due)


@app.task(name=str(TaskNames.OUTBOUND_STATES), max_retries=0)
def outbound_states() -> int:
    """Announce calendar state changes; also drop what is past its retention."""
    with session_scope() as session:
        announced = announce_state_changes(session, _now())
    with session_scope() as session:
        prune(session, _now())
    return announced
