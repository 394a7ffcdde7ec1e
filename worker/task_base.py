"""The base class of every calsync task (the app's `task_cls`).

- Reliability defaults: acknowledged only when done (`acks_late`), delivered again when
  the worker process dies (`reject_on_worker_lost`), results ignored. Arguments are JSON
  (the app accepts nothing else).
- Retries only errors known to be transient: the broker or the database unavailable, and
  Google's transient errors as `worker.google_errors` classifies them. Anything else is a
  bug or a refusal that a retry cannot fix: the task fails (the dirty mark in the database
  and beat's sweeper, safety net and channel check recover the work). A task that must
  not retry at all (a beat task: the next tick runs it again) sets `max_retries = 0`.
- Records each run's outcome and duration (`calsync_task_runs_total{task,outcome}`,
  `calsync_task_duration_seconds{task}`).

The log binding of task id, run id and calendar id stays with the Celery signals in
worker/observability.py, so it also covers Celery's own log lines about the task.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any

from celery import Task
from celery.exceptions import Retry
from kombu.exceptions import KombuError
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import OperationalError as DatabaseOperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from core import metrics
from core.errors import EnqueueError
from worker.task_names import TaskNames

log = logging.getLogger("calsync.tasks")

metrics.init_task_series(str(name) for name in TaskNames)

# The broker or the database cannot be reached now (kombu wraps the broker's own errors in
# KombuError subclasses; a pool checkout timeout is SQLAlchemy's TimeoutError).
_UNAVAILABLE = (
    EnqueueError,
    KombuError,
    DatabaseOperationalError,
    DisconnectionError,
    PoolTimeoutError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` says "try again later" rather than "this will never work"."""
    if isinstance(exc, _UNAVAILABLE):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    # Imported here: the web process builds this app to send tasks and never needs the
    # Google client libraries.
    import httplib2
    from google.auth.exceptions import RefreshError, TransportError
    from googleapiclient.errors import HttpError

    from worker.google_errors import ErrorKind, classify

    # Only errors of talking to Google (or of the network) are Google's to classify:
    # `classify` calls every other exception permanent anyway, but would call any OSError
    # (a missing file, say) a network error.
    google_or_network = (
        HttpError,
        RefreshError,
        TransportError,
        httplib2.HttpLib2Error,
        ConnectionError,
        TimeoutError,
        ssl.SSLError,
    )
    return isinstance(exc, google_or_network) and classify(exc).kind is ErrorKind.TRANSIENT


class CalsyncTask(Task):  # type: ignore[misc]  # Celery is untyped
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    max_retries = 10
    # Countdown of the n-th transient retry: min(backoff_max, backoff * 2**n) seconds.
    transient_backoff: float = 5
    transient_backoff_max: float = 300

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        outcome = "failed"
        try:
            result = super().__call__(*args, **kwargs)
            outcome = "ok"
            return result
        except Retry:  # the task asked to run again (self.retry)
            outcome = "retry"
            raise
        except Exception as exc:
            if not is_transient(exc) or self._retries_used_up():
                raise
            outcome = "retry"
            countdown = self.transient_countdown(self.request.retries)
            log.warning(
                "task_retry_transient task=%s error=%s countdown=%s",
                self.name,
                type(exc).__name__,
                countdown,
            )
            raise self.retry(exc=exc, countdown=countdown) from exc
        finally:
            metrics.observe_task_run(self.name, outcome, time.monotonic() - started)

    def transient_countdown(self, retries: int) -> float:
        return min(self.transient_backoff_max, self.transient_backoff * 2**retries)

    def _retries_used_up(self) -> bool:
        # None is Celery's "no limit"; every calsync task sets one.
        return self.max_retries is not None and self.request.retries >= self.max_retries
