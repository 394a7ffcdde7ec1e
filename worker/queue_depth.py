"""How many task messages wait in the broker's `calsync` queue (not yet taken by a worker)."""

from __future__ import annotations

import logging
from functools import cache

from sqlalchemy import Engine, create_engine, inspect, text

from core.settings import Settings
from intake.redis_intake import shared_client
from worker.task_names import QueueNames

log = logging.getLogger("calsync.queue_depth")

QUEUE = str(QueueNames.CALSYNC)
# kombu's Redis transport keeps priorities 3, 6, 9 in separate lists beside the plain one.
_REDIS_PRIORITY_SEPARATOR = "\x06\x16"
_REDIS_PRIORITIES = (3, 6, 9)


@cache
def _sqla_engine(url: str) -> Engine:
    return create_engine(url, connect_args={"timeout": 5} if url.startswith("sqlite") else {})


def _redis_depth(url: str, urgent_only: bool) -> int:
    keys = [QUEUE]
    if not urgent_only:
        keys += [f"{QUEUE}{_REDIS_PRIORITY_SEPARATOR}{p}" for p in _REDIS_PRIORITIES]
    with shared_client(url).pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())


def _embedded_depth(url: str) -> int:
    # kombu's SQLAlchemy transport: delivered messages stay with visible = false.
    engine = _sqla_engine(url.removeprefix("sqla+"))
    with engine.connect() as conn:
        if not inspect(conn).has_table("kombu_message"):
            return 0  # created with the first message ever sent
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM kombu_message m JOIN kombu_queue q "
                    "ON q.id = m.queue_id WHERE q.name = :queue AND m.visible"
                ),
                {"queue": QUEUE},
            ).scalar_one()
        )


def queue_depth(settings: Settings, *, urgent_only: bool = False) -> int | None:
    """Messages waiting, or None when the broker cannot be asked (unknown kind, down).
    `urgent_only`: only those of the default priority (pushed syncs, the sweeper's), not the
    scheduled syncs sent at a lower one (worker.publishing.SCHEDULED_PRIORITY); the embedded
    broker keeps no priorities and counts all."""
    url = settings.broker_url
    try:
        if url.startswith(("redis://", "rediss://")):
            return _redis_depth(url, urgent_only)
        if settings.is_embedded_broker:
            return _embedded_depth(url)
    except Exception as exc:
        log.warning("queue_depth_unavailable error=%s", type(exc).__name__)
    return None
