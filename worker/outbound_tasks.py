"""Celery tasks of outbound webhooks, on their own queue (QueueNames.OUTBOUND).

- `outbound_fan_out(host_id)`: sent after a change commits (countdown: the coalescing
  window); merges the host's outbox rows and creates the deliveries, then sends each lane's
  head.
- `outbound_deliver(delivery_id)`: one attempt; on success the lane's next delivery is sent
  at once, on failure this one again after the backoff.
- `outbound_sweep` (beat, every second): whatever the messages missed (a lost message, a
  worker killed between commit and send, a retry due): the outbox and deliveries tables are
  the truth. Also disables endpoints failing for 5 days.
- `outbound_states` (beat, every 10 s): announces calendar state changes and drops
  sent events and deliveries older than a week.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from celery import Task

from core import metrics
from core.settings import get_settings
from models.db import session_scope
from models.outbound_deliveries import (
    Recorded,
    claim,
    disable_long_failing,
    due_lane_heads,
    prune,
    record_attempt,
)
from models.outbound_fanout import fan_out
from models.outbound_states import announce_state_changes
from worker import outbound_sender
from worker.celery_app import app
from worker.enqueue import enqueue_outbound_delivery, enqueue_outbound_fan_out
from worker.task_names import TaskNames

log = logging.getLogger("calsync.outbound")

# The normal path (the message sent after the commit) gets this long before the sweep
# steps in, so the two rarely do the same work (and when they do, claims sort it out).
SWEEP_GRACE = timedelta(seconds=2)
# A delivery's claim outlasts the request's timeout by this much: a sender killed
# mid-request is replaced once it runs out.
CLAIM_MARGIN = timedelta(seconds=5)
# Retries further out than this wait for the sweep, not a message with a countdown (Redis
# redelivers unacknowledged messages after its visibility timeout).
LONGEST_COUNTDOWN = 60.0


def _now() -> datetime:
    return datetime.now(UTC)


@app.task(name=str(TaskNames.OUTBOUND_FAN_OUT), max_retries=3)
def outbound_fan_out(host_id: int | None) -> int:
    settings = get_settings()
    window = timedelta(milliseconds=settings.outbound_coalesce_ms)
    with session_scope() as session:
        result = fan_out(session, _now(), window, host_id=host_id)
    for delivery_id in result.heads:
        enqueue_outbound_delivery(delivery_id)
    if result.wait_seconds is not None:
        # Changes kept coming: come back when the newest is out of the window.
        enqueue_outbound_fan_out(host_id, countdown=result.wait_seconds + 0.01)
    return result.events


@app.task(name=str(TaskNames.OUTBOUND_DELIVER), bind=True, max_retries=3)
def outbound_deliver(self: Task, delivery_id: int) -> str:
    settings = get_settings()
    hold = timedelta(seconds=settings.outbound_timeout_seconds) + CLAIM_MARGIN
    # The task id is the claim's owner: a message delivered again after its worker died
    # carries the same id and may take over its own claim at once.
    owner = str(self.request.id or f"local-{delivery_id}")
    with session_scope() as session:
        work = claim(session, delivery_id, owner, _now(), hold)
    if work is None:
        return "skipped"
    attempt = outbound_sender.send(work, settings.outbound_timeout_seconds)
    now = _now()
    with session_scope() as session:
        recorded = record_attempt(session, delivery_id, attempt, now)
    outcome = outbound_sender.outcome_of(attempt)
    metrics.observe_outbound_attempt(
        outcome if recorded.outcome != "given_up" else "given_up",
        (now - work.committed_at).total_seconds() if attempt.ok else None,
    )
    if not attempt.ok:
        log.info(
            "outbound_attempt_failed delivery_id=%s endpoint_id=%s outcome=%s status=%s",
            delivery_id,
            work.endpoint_id,
            recorded.outcome,
            attempt.status_code,
        )
    _follow_up(delivery_id, recorded)
    return recorded.outcome


def _follow_up(delivery_id: int, recorded: Recorded) -> None:
    if recorded.next_in_lane is not None:
        enqueue_outbound_delivery(recorded.next_in_lane)
    if recorded.retry_in is not None and recorded.retry_in <= LONGEST_COUNTDOWN:
        enqueue_outbound_delivery(delivery_id, countdown=recorded.retry_in)


@app.task(name=str(TaskNames.OUTBOUND_SWEEP), max_retries=0)
def outbound_sweep() -> int:
    settings = get_settings()
    now = _now()
    window = timedelta(milliseconds=settings.outbound_coalesce_ms)
    with session_scope() as session:
        result = fan_out(session, now, window + SWEEP_GRACE)
    with session_scope() as session:
        due = due_lane_heads(session, now - SWEEP_GRACE)
        disabled = disable_long_failing(session, now)
    for delivery_id in [*result.heads, *due]:
        enqueue_outbound_delivery(delivery_id)
    if disabled:
        log.warning("outbound_endpoints_disabled ids=%s", ",".join(disabled))
    if result.events or due:
        log.info("outbound_sweep fanned_out=%s resent=%s", result.events, len(due))
    return result.events + len(due)


@app.task(name=str(TaskNames.OUTBOUND_STATES), max_retries=0)
def outbound_states() -> int:
    """Announce calendar state changes; also drop what is past its retention."""
    with session_scope() as session:
        announced = announce_state_changes(session, _now())
    with session_scope() as session:
        prune(session, _now())
    return announced
