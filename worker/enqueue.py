"""Sending work to the queue by task name, so callers (the webhook, the CLI, the API) never
import the sync engine or anything that talks to Google.

A request or task that changes the database and sends work about it sends it through
`after_commit(session, ...)`: the message goes out only once the session's transaction has
committed (a worker must never run for data that rolled back, nor before it can see the
data) and not at all when it rolls back."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from core.errors import EnqueueError
from core.settings import get_settings
from models.outbox_writer import add_outbox_listener
from worker import fan_out_gate, publishing
from worker.task_names import TaskNames

__all__ = [
    "EnqueueError",
    "TaskBatch",
    "after_commit",
    "enqueue_audit",
    "enqueue_outbound_delivery",
    "enqueue_outbound_fan_out",
    "enqueue_outbound_fan_out_once",
    "enqueue_stop_channels",
    "enqueue_sync",
    "enqueue_syncs",
    "enqueue_watch",
    "send",
]


def _app() -> Any:
    # Imported on first use: building the app reads the settings, which a CLI or test
    # configures after importing this module.
    from worker.celery_app import app

    return app


def send(
    task_name: TaskNames,
    *args: Any,
    countdown: float = 0.0,
    priority: int | None = None,
    **kwargs: Any,
) -> None:
    publishing.publish(_app(), task_name, *args, countdown=countdown, priority=priority, **kwargs)


def enqueue_sync(
    calendar_id: int,
    *,
    reason: str,
    full: bool = False,
    force: bool = False,
    countdown: float = 0.0,
    scheduled: bool = False,
) -> None:
    """A sync of the calendar, to start no sooner than `countdown` seconds from now;
    `scheduled` (beat's safety net, not a change Google told of): behind every pushed one."""
    send(
        TaskNames.SYNC_CALENDAR,
        calendar_id,
        trigger=reason,
        full=full,
        force=force,
        countdown=countdown,
        priority=publishing.SCHEDULED_PRIORITY if scheduled else None,
    )


def enqueue_syncs(calendar_ids: list[int], *, reason: str) -> None:
    publishing.publish_syncs(_app(), calendar_ids, reason=reason)


def enqueue_audit(calendar_ids: list[int], *, reason: str) -> None:
    send(TaskNames.AUDIT_CALENDARS, calendar_ids, reason=reason)


def enqueue_outbound_fan_out(host_id: int | None, countdown: float = 0.0) -> None:
    send(TaskNames.OUTBOUND_FAN_OUT, host_id, countdown=countdown)


def enqueue_outbound_fan_out_once(host_id: int | None, countdown: float = 0.0) -> None:
    """A fan-out, unless one is already waiting to run (worker/fan_out_gate.py): a
    fan-out takes every ready host, and one still inside its window makes it send the
    next. Under load, one message per window for the whole deployment."""
    fan_out_gate.send_once(lambda due: enqueue_outbound_fan_out(host_id, due), countdown)


def enqueue_outbound_delivery(endpoint_id: str, countdown: float = 0.0) -> None:
    """Run the endpoint's sender (its due deliveries, in order per host)."""
    send(TaskNames.OUTBOUND_DELIVER, endpoint_id, countdown=countdown)


def _fan_out_after_commit(session: Session, host_id: int | None) -> None:
    """An outbox row was written: fan it out once its transaction commits and the host's
    coalescing window has passed. If the broker is away, beat's sweep does it later."""
    pending: TaskBatch | None = session.info.get(_BATCH_KEY)
    if pending is not None and host_id in pending.fan_out_hosts:
        return  # one message per host and transaction
    window = get_settings().outbound_coalesce_ms / 1000
    batch = after_commit(
        session, _quietly(enqueue_outbound_fan_out_once), host_id, countdown=window
    )
    batch.fan_out_hosts.add(host_id)


def _quietly(send: Callable[..., None]) -> Callable[..., None]:
    """A send whose failure only logs: the outbox row is committed and the sweep sends it;
    the caller's own sends (syncs, watches) must not look failed because of it."""

    def attempt(*args: Any, **kwargs: Any) -> None:
        try:
            send(*args, **kwargs)
        except EnqueueError:
            log.warning("outbound_fan_out_not_enqueued broker unavailable; the sweep sends it")

    attempt.__name__ = getattr(send, "__name__", "send")
    return attempt


add_outbox_listener(_fan_out_after_commit)


def enqueue_watch(calendar_id: int) -> None:
    send(TaskNames.START_WATCH, calendar_id)


def enqueue_stop_channels(
    account_id: int,
    channels: list[tuple[str, str | None]],
    *,
    sealed_credentials: str | None = None,
) -> None:
    """`sealed_credentials`: the account's credentials as stored (encrypted), for an account
    deleted before its channels could be stopped."""
    if sealed_credentials is None:
        send(TaskNames.STOP_CHANNELS, account_id, [list(c) for c in channels])
    else:
        send(
            TaskNames.STOP_CHANNELS,
            account_id,
            [list(c) for c in channels],
            sealed_credentials=sealed_credentials,
        )


log = logging.getLogger("calsync.enqueue")

_BATCH_KEY = "calsync.task_batch"


class TaskBatch:
    """The sends waiting for one transaction of a session to commit, in order.

    After the commit, `error` is the first failure (usually `EnqueueError`: the broker is
    away) and the sends after it are not tried; the caller decides what that means, as it
    did when it sent by hand (the data is committed either way)."""

    def __init__(self) -> None:
        # Each send with the (innermost) transaction it was registered in, so that rolling
        # back a savepoint drops the sends about its data and keeps the others.
        self._sends: list[
            tuple[SessionTransaction | None, Callable[..., None], tuple[Any, ...], dict]
        ] = []
        self.sent = 0
        self.error: Exception | None = None
        # Hosts whose outbound fan-out this transaction already sends.
        self.fan_out_hosts: set[int | None] = set()

    def add(
        self,
        transaction: SessionTransaction | None,
        send: Callable[..., None],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self._sends.append((transaction, send, args, kwargs))

    @property
    def failed(self) -> bool:
        return self.error is not None

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        sends, self._sends = self._sends, []
        for _transaction, send, args, kwargs in sends:
            try:
                send(*args, **kwargs)
            except Exception as exc:
                # Never out of the commit hook: the transaction is committed already and
                # SQLAlchemy would leave the session half closed.
                if not isinstance(exc, EnqueueError):
                    log.exception("enqueue_failed send=%s", getattr(send, "__name__", send))
                self.error = exc
                return
            self.sent += 1

    def _drop_within(self, rolled_back: SessionTransaction) -> None:
        def inside(transaction: SessionTransaction | None) -> bool:
            while transaction is not None:
                if transaction is rolled_back:
                    return True
                transaction = transaction.parent
            return False

        self._sends = [entry for entry in self._sends if not inside(entry[0])]


def after_commit(
    session: Session, send: Callable[..., None], *args: Any, **kwargs: Any
) -> TaskBatch:
    """Call `send(*args, **kwargs)` (e.g. `enqueue_sync`) once the session's outermost
    transaction commits; never if the transaction (or the savepoint it was registered in)
    rolls back, or the session closes without committing.

    Returns the transaction's batch (every send registered in the same transaction), whose
    `error` says after the commit whether the broker took them."""
    batch: TaskBatch | None = session.info.get(_BATCH_KEY)
    if batch is None:
        batch = session.info[_BATCH_KEY] = TaskBatch()
        if not event.contains(session, "after_commit", _send_batch):
            event.listen(session, "after_commit", _send_batch)
            event.listen(session, "after_soft_rollback", _drop_rolled_back)
            event.listen(session, "after_transaction_end", _drop_unsent)
    batch.add(session.get_nested_transaction() or session.get_transaction(), send, *args, **kwargs)
    return batch


def _send_batch(session: Session) -> None:
    # SQLAlchemy fires this for a savepoint's release too; only the outermost commit counts.
    if session.in_nested_transaction():
        return
    batch: TaskBatch | None = session.info.pop(_BATCH_KEY, None)
    if batch is not None:
        batch._run()


def _drop_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    batch: TaskBatch | None = session.info.get(_BATCH_KEY)
    if batch is not None:
        batch._drop_within(previous_transaction)


def _drop_unsent(session: Session, transaction: SessionTransaction) -> None:
    # The outermost transaction ended without its commit hook taking the batch (the
    # session closed, say): its sends are for data that was never committed.
    if transaction.parent is None and not transaction.nested:
        session.info.pop(_BATCH_KEY, None)
