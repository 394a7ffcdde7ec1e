"""Sending work to the queue by task name, so callers (the webhook, the CLI, the API) never
import the sync engine or anything that talks to Google."""

from __future__ import annotations

from typing import Any

from core.errors import EnqueueError
from worker import publishing
from worker.task_names import TaskNames

__all__ = [
    "EnqueueError",
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


def send(task_name: TaskNames, *args: Any, **kwargs: Any) -> None:
    publishing.publish(_app(), task_name, *args, **kwargs)


def enqueue_sync(calendar_id: int, *, reason: str, full: bool = False, force: bool = False) -> None:
    send(TaskNames.SYNC_CALENDAR, calendar_id, trigger=reason, full=full, force=force)


def enqueue_syncs(calendar_ids: list[int], *, reason: str) -> None:
    publishing.publish_syncs(_app(), calendar_ids, reason=reason)


def enqueue_watch(calendar_id: int) -> None:
    send(TaskNames.START_WATCH, calendar_id)


def enqueue_stop_channels(account_id: int, channels: list[tuple[str, str | None]]) -> None:
    send(TaskNames.STOP_CHANNELS, account_id, [list(c) for c in channels])
