"""Builds the Celery app from settings: broker, reliability options, beat schedule."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.concurrency.thread import TaskPool as ThreadTaskPool
from celery.signals import beat_init, celeryd_after_setup, worker_process_init

from core.settings import Settings, get_settings
from rules import sync_schedule
from rules.audit import audit_check_seconds
from worker import sender_slots
from worker.publishing import publish_syncs
from worker.task_names import OUTBOUND_TASKS, QueueNames, TaskNames

QUEUE = str(QueueNames.CALSYNC)
TASK_MODULES = ["worker.tasks", "worker.alert_tasks", "worker.outbound_tasks"]
# Outbound webhook sweeps run this often: a fan-out or delivery whose message was lost is
# sent again within about this long (plus the grace the normal path gets first).
OUTBOUND_SWEEP_SECONDS = 1.0
OUTBOUND_STATES_SECONDS = 10.0


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    if settings.is_embedded_broker:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # The embedded broker is polled; the 1 s default would dominate sync latency.
        from kombu.transport import sqlalchemy as sqla_transport

        sqla_transport.Transport.polling_interval = 0.1
    # Logging, metrics and task-context signals (it sets up the metrics directory first).
    import worker.observability  # noqa: F401

    app = Celery(
        "calsync",
        broker=settings.broker_url,
        include=TASK_MODULES,
        # Named, not imported: the web process builds this app only to send tasks.
        task_cls="worker.task_base:CalsyncTask",
    )
    app.conf.update(
        task_default_queue=QUEUE,
        task_routes={str(name): {"queue": str(QueueNames.OUTBOUND)} for name in OUTBOUND_TASKS},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A task is acknowledged only when done; a killed worker's task is delivered again.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # How long the pool waits for the result of a pool process that died before it
        # reports the task lost (and frees the slot its message holds). Our tasks store no
        # results, so the 10 s default only delays recovery from a killed pool process.
        worker_lost_wait=1.0,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # The webhook must answer 503 within moments when the broker is down, not hang.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        broker_connection_timeout=2,
        broker_transport=_transport(settings),
        broker_transport_options=_transport_options(settings),
        beat_schedule=_beat_schedule(settings),
        # One beat sends the periodic tasks, others wait on a Redis lock (failover).
        beat_scheduler="worker.beat_leader:LeaderScheduler",
        timezone="UTC",
    )
    return app


def declare_queue(app: Celery) -> None:
    """Create the task queue once, before several processes start using the broker.

    kombu's SQLAlchemy transport (the embedded broker) creates a queue by "select, then
    insert", so web, worker and beat declaring it at the same first moment can collide on
    its unique name; declaring it up front (`calsync db upgrade`, `calsync demo`) avoids that.
    """
    with app.connection_for_write() as connection:
        for name in QueueNames:
            queue = app.amqp.queues.get(str(name)) or app.amqp.queues.add(str(name))
            queue(connection.default_channel).declare()


def _transport(settings: Settings) -> str | None:
    """kombu's transport; None = the one the URL's scheme names."""
    if settings.broker_url.startswith("redis://"):
        from worker.broker_transport import TRANSPORT_PATH

        return TRANSPORT_PATH  # survives Redis going away mid-wait (see that module)
    return None


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.is_embedded_broker:
        # Passed to create_engine by kombu's SQLAlchemy transport: wait for SQLite locks
        # instead of failing when web, worker and beat write at the same moment.
        return {"connect_args": {"timeout": 30}}
    return {
        # Unacked tasks of a worker that died outright come back after this long; the
        # sweeper recovers sooner from the dirty marks in the database.
        "visibility_timeout": 900,
        "socket_connect_timeout": 2,
        "socket_timeout": 10,
    }


def _beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "sweep-dirty-calendars": {
            "task": str(TaskNames.SWEEP_DIRTY),
            "schedule": sync_schedule.sweep_check_seconds(settings),
        },
        "renew-channels": {
            "task": str(TaskNames.RENEW_CHANNELS),
            # Follows RENEW_BEFORE: a check interval longer than the renew-ahead lets
            # channels expire before they are renewed.
            "schedule": sync_schedule.renew_check_seconds(settings),
        },
        "evaluate-alerts": {
            "task": str(TaskNames.EVALUATE_ALERTS),
            "schedule": 30.0,
        },
        "schedule-audits": {
            "task": str(TaskNames.SCHEDULE_AUDITS),
            "schedule": audit_check_seconds(settings.audit_seconds),
        },
        "prune-history": {
            # Sync runs past CALSYNC_SYNC_RUN_RETENTION_DAYS and spent sign-in links.
            "task": str(TaskNames.PRUNE_HISTORY),
            "schedule": 3600.0,
        },
        "outbound-sweep": {
            "task": str(TaskNames.OUTBOUND_SWEEP),
            "schedule": OUTBOUND_SWEEP_SECONDS,
        },
        "outbound-states": {
            "task": str(TaskNames.OUTBOUND_STATES),
            "schedule": OUTBOUND_STATES_SECONDS,
        },
        "safety-net-sync": {
            "task": str(TaskNames.SAFETY_NET),
            "schedule": sync_schedule.safety_net_check_seconds(settings),
        },
    }


@worker_process_init.connect
def _fresh_connections_after_fork(**_kwargs: Any) -> None:
    # A forked pool process must not reuse the parent's database sockets.
    from models.db import dispose_engines

    dispose_engines(after_fork=True)


@celeryd_after_setup.connect
def _a_connection_per_thread(instance: Any = None, **_kwargs: Any) -> None:
    # A thread-pool worker (the Procfile's outbound) runs as many transactions at once as it
    # has threads: its database pool keeps that many connections instead of opening and
    # closing the ones beyond five for every transaction.
    pool = getattr(instance, "pool_cls", None)
    if isinstance(pool, type) and issubclass(pool, ThreadTaskPool):
        from models.db import keep_connections

        keep_connections(int(instance.concurrency or 0))


@celeryd_after_setup.connect
def _outbound_yields_the_cpu(instance: Any = None, **_kwargs: Any) -> None:
    # A worker consuming only the outbound queue runs below the sync worker's priority
    # (CALSYNC_OUTBOUND_NICE): busy time first, notifications about it second. Set before
    # the pool starts its threads, which inherit it.
    queues = set(instance.app.amqp.queues.consume_from or ()) if instance is not None else set()
    if queues == {str(QueueNames.OUTBOUND)}:
        os.nice(get_settings().outbound_nice)
        # Its senders may wait a moment for more work, on all but a few of its threads.
        sender_slots.allow(int(instance.concurrency or 0))


@beat_init.connect
def _start_intake_drainer(sender: Any = None, **_kwargs: Any) -> None:
    # Beat runs once per deployment: the natural home of the push intake's drainer.
    from intake.drainer import start_in_beat

    app = sender.app

    def enqueue(calendar_ids: list[int]) -> None:
        publish_syncs(app, calendar_ids, reason="push")

    start_in_beat(get_settings(), enqueue)
