"""Sending work to the queue by task name, so callers (the webhook, the CLI, the API) never
import the sync engine or anything that talks to Google."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.exceptions import KombuError, OperationalError


class EnqueueError(RuntimeError):
    """The broker could not take the message."""


@contextmanager
def _broker_errors() -> Iterator[None]:
    """The broker's failures, as the one error callers handle."""
    try:
        yield
    except (OperationalError, KombuError, OSError) as exc:
        raise EnqueueError(f"broker unavailable: {type(exc).__name__}") from exc


def send(task_name: str, *args: Any, **kwargs: Any) -> None:
    from worker.celery_app import app

    with _broker_errors():
        app.send_task(task_name, args=list(args), kwargs=kwargs)


def enqueue_sync(calendar_id: int, *, reason: str, full: bool = False, force: bool = False) -> None:
    send("calsync.sync_calendar", calendar_id, trigger=reason, full=full, force=force)


def enqueue_syncs(calendar_ids: list[int], *, reason: str) -> None:
    """One sync per calendar, published through one producer (the webhook's intake drainer
    sends a batch at a time). The argument reprs are given: Celery's saferepr of them costs
    more than the rest of building the message."""
    from worker.celery_app import app

    kwargs = {"trigger": reason, "full": False, "force": False}
    kwargsrepr = repr(kwargs)
    with _broker_errors(), app.producer_or_acquire() as producer:
        for calendar_id in calendar_ids:
            app.send_task(
                "calsync.sync_calendar",
                args=[calendar_id],
                kwargs=kwargs,
                producer=producer,
                argsrepr=f"[{calendar_id}]",
                kwargsrepr=kwargsrepr,
            )


def enqueue_watch(calendar_id: int) -> None:
    send("calsync.start_watch", calendar_id)


def enqueue_stop_channels(account_id: int, channels: list[tuple[str, str | None]]) -> None:
    send("calsync.stop_channels", account_id, [list(c) for c in channels])
