"""Publishing task messages through a given Celery app, with the broker's failures turned
into the one error callers handle (`EnqueueError`). `worker.enqueue` binds these to the
process's app; beat's intake drainer uses them with the app it runs in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery
from kombu.exceptions import KombuError, OperationalError

from core.errors import EnqueueError
from worker.task_names import TaskNames


@contextmanager
def broker_errors() -> Iterator[None]:
    """The broker's failures, as the one error callers handle."""
    try:
        yield
    except (OperationalError, KombuError, OSError) as exc:
        raise EnqueueError(f"broker unavailable: {type(exc).__name__}") from exc


def publish(
    app: Celery,
    task_name: TaskNames,
    *args: Any,
    countdown: float = 0.0,
    priority: int | None = None,
    **kwargs: Any,
) -> None:
    """The task's message; it runs no sooner than `countdown` seconds from now, and after
    the queue's messages of a more urgent `priority` (see `SCHEDULED_PRIORITY`)."""
    with broker_errors():
        app.send_task(
            str(task_name),
            args=list(args),
            kwargs=kwargs,
            countdown=max(0.0, countdown) or None,
            priority=priority,
        )


# kombu's Redis transport keeps a queue's messages in one list per priority step and a
# worker takes from the plain list (no priority, or 0) first, from the step-9 list last: a
# scheduled sync sent at this priority waits behind every pushed one, so a backlog of
# safety-net syncs (after downtime: the whole fleet) never delays a change a host just
# made. The embedded broker (one machine) ignores priorities.
SCHEDULED_PRIORITY = 9


def publish_syncs(app: Celery, calendar_ids: list[int], *, reason: str) -> None:
    """One sync per calendar, published through one producer (the intake drainer sends a
    batch at a time). The argument reprs are given: Celery's saferepr of them costs more
    than the rest of building the message."""
    kwargs = {"trigger": reason, "full": False, "force": False}
    kwargsrepr = repr(kwargs)
    with broker_errors(), app.producer_or_acquire() as producer:
        for calendar_id in calendar_ids:
            app.send_task(
                str(TaskNames.SYNC_CALENDAR),
                args=[calendar_id],
                kwargs=kwargs,
                producer=producer,
                argsrepr=f"[{calendar_id}]",
                kwargsrepr=kwargsrepr,
            )
