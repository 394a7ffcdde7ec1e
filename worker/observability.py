"""Worker-side logging and metrics wiring, connected to Celery's signals on import.

- start: worker and beat stop at once on missing or weak encryption keys (models.startup);
- logging: our structured setup replaces Celery's (`setup_logging`), in worker and beat;
- each task runs with task id, task name, run id (one per execution attempt: a retried task
  keeps its task id) and, for calendar tasks, the calendar id bound to its log lines;
- metrics: a pool process that exits is marked dead for prometheus_client's multiprocess
  files (the sync engine and Google client count into core.metrics themselves).
"""

from __future__ import annotations

import os
import uuid
from contextvars import Token
from typing import Any

from celery.signals import (
    beat_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
)

from core import logs, metrics_dir
from core.settings import SettingsError, get_settings
from models.startup import prepare_process
from worker.task_names import CALENDAR_TASKS

_bound: dict[str, Token[dict[str, str]]] = {}


@setup_logging.connect
def _configure_logging(**_kwargs: Any) -> None:
    logs.configure_logging("worker", fmt=get_settings().log_format)


@worker_init.connect
@beat_init.connect
def _check_configuration(**_kwargs: Any) -> None:
    # Celery logs and swallows an Exception from a signal handler; SystemExit stops the
    # process, with the message naming the variable to fix.
    try:
        prepare_process(get_settings())
    except SettingsError as exc:
        raise SystemExit(f"configuration error: {exc}") from None


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
    if name in CALENDAR_TASKS:
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
