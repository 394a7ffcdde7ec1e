"""Worker-side logging and metrics wiring, connected to Celery's signals on import.

- logging: our structured setup replaces Celery's (`setup_logging`), in worker and beat;
- each task runs with task id, task name, run id (one per execution attempt: a retried task
  keeps its task id) and, for calendar tasks, the calendar id bound to its log lines;
- metrics: the sync engine's and Google client's observers count into calsync.metrics, and a
  pool process that exits is marked dead for prometheus_client's multiprocess files.
"""

from __future__ import annotations

import os
import uuid
from contextvars import Token
from typing import Any

from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
)

from calsync import logs, metrics, metrics_dir
from calsync.settings import get_settings

_bound: dict[str, Token[dict[str, str]]] = {}


@worker_init.connect
def _install_metrics(**_kwargs: Any) -> None:
    # In the main worker process, before the pool forks: every pool process inherits it.
    metrics.install_worker_hooks()


@setup_logging.connect
def _configure_logging(**_kwargs: Any) -> None:
    logs.configure_logging("worker", fmt=get_settings().log_format)


def _calendar_id(args: Any, kwargs: Any) -> object:
    if isinstance(kwargs, dict) and "calendar_id" in kwargs:
        return kwargs["calendar_id"]
    if args and isinstance(args[0], int):
        return args[0]
    return None


@task_prerun.connect
def _bind_task(
    task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None, **_: Any
) -> None:
    name = getattr(task, "name", None)
    calendar_id = None
    if name in ("calsync.sync_calendar", "calsync.start_watch"):
        calendar_id = _calendar_id(args, kwargs)
    if task_id:
        _bound[task_id] = logs.bind(
            task_id=task_id, task=name, run_id=uuid.uuid4().hex[:12], calendar_id=calendar_id
        )


@task_postrun.connect
def _unbind_task(task_id: str | None = None, **_: Any) -> None:
    token = _bound.pop(task_id or "", None)
    if token is not None:
        logs.unbind(token)


@worker_process_shutdown.connect
def _mark_dead(**_kwargs: Any) -> None:
    metrics_dir.mark_process_dead(os.getpid())
