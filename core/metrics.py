"""Prometheus metrics: module-level, named with units, no calendar ids as labels.

Counters and histograms live in prometheus_client's multiprocess files (one per process,
shared by web and worker on a host), so a gunicorn worker's /metrics sums every web worker,
Celery pool process and CLI run of the host. Gauges about the deployment's state are
computed from the database at scrape time (webhook/metrics_view.py), so they are global.
Other modules call the `observe_*` functions directly.
"""

from __future__ import annotations

from core import metrics_dir

# Before prometheus_client is imported: it chooses multiprocess mode at import time.
metrics_dir.prepare()

import logging  # noqa: E402
from collections.abc import Iterable  # noqa: E402
from datetime import datetime  # noqa: E402

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402

log = logging.getLogger("calsync.metrics")

if values.ValueClass is values.MutexValue:
    # Something imported prometheus_client before this module set the directory: this
    # process's metrics stay in memory and never reach another process's /metrics.
    log.warning("metrics_not_multiprocess prometheus_client was imported too early")

# 50 ms (a push applied at once) … 1 h (the safety-net sync caught a lost notification).
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
SYNC_KINDS = ("incremental", "full", "410-recovery")
SYNC_OUTCOMES = ("ok", "retrying", "failed", "needs_reauth")
# A Celery task run: returned, asked to run again (transient error), or raised.
TASK_OUTCOMES = ("ok", "retry", "failed")
# 10 ms (a sweep that found nothing) … 10 min (a full sync of a large calendar).
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

NOTIFICATION_TO_APPLIED = Histogram(
    "calsync_notification_to_applied_seconds",
    "Push notification received until the calendar's busy blocks committed.",
    ["kind"],
    buckets=LAG_BUCKETS,
)
PROPAGATION_LAG = Histogram(
    "calsync_propagation_lag_seconds",
    "Google's `updated` of a changed event until its busy block committed.",
    ["kind"],
    buckets=LAG_BUCKETS,
)
SYNC_RUNS = Counter("calsync_sync_runs", "Sync runs by kind and outcome.", ["kind", "outcome"])
GOOGLE_REQUESTS = Counter(
    "calsync_google_requests",
    "HTTP attempts to Google by API method and status.",
    ["method", "status"],
)
GOOGLE_RETRIES = Counter(
    "calsync_google_retries", "Google requests retried after a transient error."
)
RESYNCS_410 = Counter("calsync_resyncs_410", "Full resyncs because Google answered 410 Gone.")
WEBHOOK_NOTIFICATIONS = Counter(
    "calsync_webhook_notifications", "Google push notifications by outcome.", ["outcome"]
)
TASK_RUNS = Counter(
    "calsync_task_runs", "Celery task runs by task name and outcome.", ["task", "outcome"]
)
TASK_DURATION = Histogram(
    "calsync_task_duration_seconds",
    "Time a Celery task run took, whatever its outcome.",
    ["task"],
    buckets=TASK_BUCKETS,
)

# An audit: matched; differed (a full resync and a second audit follow); still differed after
# it (alerted); deferred (the calendar changed meanwhile: no verdict); error (Google failed).
AUDIT_OUTCOMES = ("matched", "mismatch", "persistent", "deferred", "error")
AUDITS = Counter("calsync_audits", "Busy-table audits against Google's freeBusy.", ["outcome"])
AUDIT_DIFFERING_SECONDS = Histogram(
    "calsync_audit_differing_seconds",
    "Busy time that differed from Google's freeBusy in one audit (0 when it matched).",
    buckets=(0, 60, 900, 3600, 4 * 3600, 86400, 7 * 86400),
)
for _outcome in AUDIT_OUTCOMES:
    AUDITS.labels(_outcome)

for _kind in SYNC_KINDS:
    # Series exist from the start, so rate() and alerts see zeros rather than nothing.
    for _outcome in SYNC_OUTCOMES:
        SYNC_RUNS.labels(_kind, _outcome)


def observe_google_request(method: str, status: int | str) -> None:
    GOOGLE_REQUESTS.labels(method, str(status)).inc()


def observe_google_retry(_method: str = "") -> None:
    GOOGLE_RETRIES.inc()


def observe_webhook_outcome(outcome: str) -> None:
    WEBHOOK_NOTIFICATIONS.labels(outcome).inc()


def init_webhook_outcomes(outcomes: tuple[str, ...]) -> None:
    for outcome in outcomes:
        WEBHOOK_NOTIFICATIONS.labels(outcome)


def observe_audit(outcome: str, differing_seconds: float | None = None) -> None:
    """One audit; `differing_seconds` only when a comparison was made."""
    AUDITS.labels(outcome).inc()
    if differing_seconds is not None:
        AUDIT_DIFFERING_SECONDS.observe(max(0.0, differing_seconds))


def observe_task_run(task: str, outcome: str, seconds: float) -> None:
    """One Celery task run (`task` is its registered name, never an id)."""
    TASK_RUNS.labels(task, outcome).inc()
    TASK_DURATION.labels(task).observe(max(0.0, seconds))


def init_task_series(tasks: Iterable[str]) -> None:
    # Series exist from the start, so rate() and alerts see zeros rather than nothing.
    for task in tasks:
        for outcome in TASK_OUTCOMES:
            TASK_RUNS.labels(task, outcome)


def observe_sync_run(
    kind: str,
    outcome: str,
    *,
    notification_lag_ms: int | None = None,
    finished_at: datetime | None = None,
    changed_updated: Iterable[datetime] = (),
) -> None:
    """One finished sync run: counts, and lags when it committed."""
    SYNC_RUNS.labels(kind, outcome).inc()
    if outcome != "ok":
        return
    if kind == "410-recovery":
        RESYNCS_410.inc()
    if notification_lag_ms is not None:
        NOTIFICATION_TO_APPLIED.labels(kind).observe(max(0, notification_lag_ms) / 1000)
    # A first full sync "changes" every event ever edited: its lag says nothing about us.
    if finished_at is not None and kind != "full":
        for updated in changed_updated:
            # Clocks differ a little between Google and us: never a negative lag.
            PROPAGATION_LAG.labels(kind).observe(max(0.0, (finished_at - updated).total_seconds()))


def multiprocess_registry() -> CollectorRegistry:
    """Every process's counters and histograms on this host (their multiprocess files)."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """A registry's /metrics body and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


# Outbound webhooks: each delivery attempt's outcome, and the lag from the change's commit
# to the receiver's 2xx.
OUTBOUND_OUTCOMES = ("delivered", "http_error", "timeout", "network_error", "refused", "given_up")
OUTBOUND_DELIVERIES = Counter(
    "calsync_outbound_deliveries",
    "Outbound webhook delivery attempts by outcome (given_up: retried 24 h, then dropped).",
    ["outcome"],
)
OUTBOUND_LAG = Histogram(
    "calsync_outbound_delivery_lag_seconds",
    "A busy change committed (outbox row written) until the receiver answered 2xx.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 86400),
)
for _outcome in OUTBOUND_OUTCOMES:
    OUTBOUND_DELIVERIES.labels(_outcome)


def observe_outbound_attempt(outcome: str, lag_seconds: float | None = None) -> None:
    """One delivery attempt; `lag_seconds` when it was the 2xx (a first delivery)."""
    OUTBOUND_DELIVERIES.labels(outcome).inc()
    if lag_seconds is not None:
        OUTBOUND_LAG.observe(max(0.0, lag_seconds))
