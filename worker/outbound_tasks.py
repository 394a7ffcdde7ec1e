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
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import urllib3
from celery import Task

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
from models.outbound_fanout import FanOutResult, fan_out
from models.outbound_states import announce_state_changes
from worker import outbound_sender, sender_slots
from worker.celery_app import app
from worker.enqueue import enqueue_outbound_delivery, enqueue_outbound_fan_out_once
from worker.task_names import TaskNames

log = logging.getLogger("calsync.outbound")

# The normal path (the message sent after the commit) gets this long before the sweep
# steps in, so the two rarely do the same work: when they do, the one that claims a host's
# rows second waits for the first's transaction, host after host.
SWEEP_GRACE = timedelta(seconds=5)
# Under a steady stream of changes, a fan-out's follow-up comes at most this often: each
# fan-out wakes every endpoint's sender for a batch (a claim and a record, whatever its
# size), so fan-outs every few ms cost the outbound process more CPU than the sending;
# a host's event waits at most this much beyond its coalescing window for it.
FAN_OUT_EVERY = 0.1
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


def _arrival(endpoint_id: str) -> threading.Event:
    """Set when this process has made deliveries for the endpoint (wakes its sender)."""
    with _http_lock:
        return _arrivals.setdefault(endpoint_id, threading.Event())


def start_senders(endpoint_ids: Iterable[str]) -> None:
    """Queue a sender for each endpoint that has none running (one that is waiting for
    more work in this process is woken instead)."""
    wanted = sorted(set(endpoint_ids))
    if not wanted:
        return
    for endpoint_id in wanted:
        _arrival(endpoint_id).set()
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
_http_lock = threading.Lock()


def _http_for(endpoint_id: str) -> urllib3.PoolManager:
    """The endpoint's HTTP session in this process, kept across sender tasks so its
    connections stay alive (a sender task ends whenever its lanes run dry)."""
    with _http_lock:
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
    sent = 0
    http = _http_for(endpoint_id)
    arrival = _arrival(endpoint_id)
    waiting = False
    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            dry_since: float | None = None
            while True:
                arrival.clear()  # before the claim: a later fan-out's set is not missed
                with session_scope() as session:
                    batch = claim_batch(session, endpoint_id, owner, _now(), claim_hold, BATCH)
                if not batch:
                    dry_since = dry_since or time.monotonic()
                    if not waiting:
                        waiting = sender_slots.take()
                    if not waiting or time.monotonic() - dry_since >= LINGER_SECONDS:
                        break
                    arrival.wait(LOOK_AGAIN_SECONDS)
                    continue
                dry_since = None
                sent += _send_and_record(endpoint_id, batch, timeout, http, pool.map)
                if time.monotonic() > deadline:
                    # More may be due: a fresh message carries on (the sender stays marked).
                    enqueue_outbound_delivery(endpoint_id)
                    return sent
    finally:
        if waiting:
            sender_slots.give_back()
    with session_scope() as session:
        release_sender(session, endpoint_id)
    # Work that came due between the last claim and the release: start again.
    with session_scope() as session:
        again = endpoints_with_due_work(session, _now(), endpoint_id=endpoint_id)
    if again:
        start_senders(again)
    return sent


def _send_and_record(
    endpoint_id: str,
    batch: list[DeliveryWork],
    timeout: float,
    http: urllib3.PoolManager,
    map_: Callable[[Callable[[DeliveryWork], Attempt], list[DeliveryWork]], Iterable[Attempt]],
) -> int:
    """One attempt for each delivery of the batch, each answer recorded."""
    settings = get_settings()
    attempts = outbound_sender.send_batch(batch, timeout, http, map_)
    now = _now()
    answered = list(zip(batch, attempts, strict=True))
    with session_scope() as session:
        record_delivered(
            session,
            endpoint_id,
            [(work.delivery_id, attempt) for work, attempt in answered if attempt.ok],
            now,
        )
        outcomes = [
            "delivered"
            if attempt.ok
            else record_attempt(
                session,
                work.delivery_id,
                attempt,
                now,
                first_retry_seconds=settings.outbound_first_retry_seconds,
            ).outcome
            for work, attempt in answered
        ]
    for (work, attempt), outcome in zip(answered, outcomes, strict=True):
        _observe(work, attempt, outcome, now)
    return len(batch)


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
