"""The names the queue knows: every task and queue name in one place. They are a wire
contract (messages already in a broker carry them), so they never change. A test checks
that every name the beat schedule or a sender uses is a registered task, and that every
queue is consumed by the Procfile's worker."""

from __future__ import annotations

from enum import StrEnum


class QueueNames(StrEnum):
    CALSYNC = "calsync"  # the one queue; the Procfile's worker consumes it (the default)


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


# Tasks about one calendar: their first argument is its id (bound to their log lines).
CALENDAR_TASKS = frozenset({TaskNames.SYNC_CALENDAR, TaskNames.START_WATCH})
