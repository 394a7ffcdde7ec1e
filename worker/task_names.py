"""The names the queue knows: every task and queue name in one place. They are a wire
contract (messages already in a broker carry them), so they never change. A test checks
that every name the beat schedule or a sender uses is a registered task, and that every
queue is consumed by the Procfile's worker."""

from __future__ import annotations

from enum import StrEnum


class QueueNames(StrEnum):
    CALSYNC = "calsync"  # syncs, channels, alerts, audits (the default queue)
    # Outbound webhooks, apart so a slow receiver never holds up a sync.
    OUTBOUND = "outbound"


class TaskNames(StrEnum):
    SYNC_CALENDAR = "calsync.sync_calendar"
    START_WATCH = "calsync.start_watch"
    STOP_CHANNELS = "calsync.stop_channels"
    SWEEP_DIRTY = "calsync.sweep_dirty"
    SAFETY_NET = "calsync.safety_net"
    RENEW_CHANNELS = "calsync.renew_channels"
    EVALUATE_ALERTS = "calsync.evaluate_alerts"
    AUDIT_CALENDARS = "calsync.audit_calendars"
    SCHEDULE_AUDITS = "calsync.schedule_audits"
    PRUNE_HISTORY = "calsync.prune_history"
    OUTBOUND_FAN_OUT = "calsync.outbound_fan_out"
    OUTBOUND_DELIVER = "calsync.outbound_deliver"
    OUTBOUND_SWEEP = "calsync.outbound_sweep"
    OUTBOUND_STATES = "calsync.outbound_states"


# Tasks that run on the outbound queue (celery_factory routes them there).
OUTBOUND_TASKS = frozenset(
    {
        TaskNames.OUTBOUND_FAN_OUT,
        TaskNames.OUTBOUND_DELIVER,
        TaskNames.OUTBOUND_SWEEP,
        TaskNames.OUTBOUND_STATES,
    }
)


# Tasks about one calendar: their first argument is its id (bound to their log lines).
CALENDAR_TASKS = frozenset({TaskNames.SYNC_CALENDAR, TaskNames.START_WATCH})
