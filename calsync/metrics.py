"""Prometheus metrics: module-level, named with units, no calendar ids as labels.

Counters and histograms live in prometheus_client's multiprocess files (one per process,
shared by web and worker on a host), so a gunicorn worker's /metrics sums every web worker,
Celery pool process and CLI run of the host. Gauges about the deployment's state are
computed from the database at scrape time (`DatabaseCollector`), so they are global.
"""

from __future__ import annotations

from calsync import metrics_dir

# Before prometheus_client is imported: it chooses multiprocess mode at import time.
metrics_dir.prepare()

import logging  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

from calsync.queue_depth import queue_depth  # noqa: E402
from calsync.settings import Settings  # noqa: E402

log = logging.getLogger("calsync.metrics")

if values.ValueClass is values.MutexValue:
    # Something imported prometheus_client before this module set the directory: this
    # process's metrics stay in memory and never reach another process's /metrics.
    log.warning("metrics_not_multiprocess prometheus_client was imported too early")

# 50 ms (a push applied at once) … 1 h (the safety-net sync caught a lost notification).
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
SYNC_KINDS = ("incremental", "full", "410-recovery")
SYNC_OUTCOMES = ("ok", "retrying", "failed", "needs_reauth")

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


def observe_sync_run(run: dict[str, Any]) -> None:
    """One finished sync run (the engine's run dict): counts, and lags when it committed."""
    kind, outcome = str(run["kind"]), str(run["outcome"])
    SYNC_RUNS.labels(kind, outcome).inc()
    if outcome != "ok":
        return
    if kind == "410-recovery":
        RESYNCS_410.inc()
    lag_ms = run.get("notification_lag_ms")
    if lag_ms is not None:
        NOTIFICATION_TO_APPLIED.labels(kind).observe(max(0, lag_ms) / 1000)
    finished: datetime | None = run.get("finished_at")
    # A first full sync "changes" every event ever edited: its lag says nothing about us.
    if finished is not None and kind != "full":
        for updated in run.get("changed_updated") or ():
            # Clocks differ a little between Google and us: never a negative lag.
            PROPAGATION_LAG.labels(kind).observe(max(0.0, (finished - updated).total_seconds()))


def install_worker_hooks() -> None:
    """Point the sync engine's and Google client's observers at these metrics."""
    from worker import google_client, sync_engine

    google_client.request_observer = observe_google_request
    if hasattr(google_client, "retry_observer"):
        google_client.retry_observer = observe_google_retry
    sync_engine.run_observer = observe_sync_run


def install_web_hooks() -> None:
    from webhook import push_receiver

    init_webhook_outcomes(push_receiver.OUTCOMES)
    if getattr(push_receiver.record_outcome, "counts_metrics", False):
        return
    previous = push_receiver.record_outcome

    def record_outcome(outcome: str) -> None:
        previous(outcome)  # the receiver's own in-process tally stays as it was
        observe_webhook_outcome(outcome)

    record_outcome.counts_metrics = True  # type: ignore[attr-defined]
    push_receiver.record_outcome = record_outcome


class DatabaseCollector(Collector):
    """Gauges computed from the database (and broker) on each scrape: global, not per host."""

    def __init__(self, settings: Settings, now: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.now = now or (lambda: datetime.now(UTC))

    def describe(self) -> list[Metric]:
        return []  # nothing is queried when the collector is registered

    def collect(self) -> Iterator[Metric]:
        from models.db import session_scope
        from models.ops_snapshot import take_snapshot

        up = GaugeMetricFamily(
            "calsync_metrics_database_up", "1 if the database answered this scrape."
        )
        try:
            with session_scope(self.settings.database_url) as session:
                snapshot = take_snapshot(
                    session,
                    self.now(),
                    stale_after_seconds=self.settings.stale_after_seconds,
                    safety_net_seconds=self.settings.safety_net_seconds,
                )
        except Exception as exc:
            log.warning("metrics_database_unavailable error=%s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield from _snapshot_gauges(snapshot)
        depth = queue_depth(self.settings)
        if depth is not None:
            yield GaugeMetricFamily(
                "calsync_queue_depth", "Task messages waiting in the calsync queue.", value=depth
            )


def _snapshot_gauges(snapshot) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "calsync_calendar_staleness_seconds",
        "Largest time since a calendar last synced successfully (or was attached).",
        value=snapshot.max_staleness_seconds,
    )
    yield GaugeMetricFamily(
        "calsync_calendar_pending_lag_seconds",
        "Longest time a recorded notification has waited to be applied (0 = none waiting).",
        value=snapshot.max_pending_lag_seconds,
    )
    by_state = GaugeMetricFamily("calsync_calendars", "Calendars by sync state.", labels=["state"])
    for state, count in snapshot.count_by_state().items():
        by_state.add_metric([state], count)
    yield by_state
    yield GaugeMetricFamily(
        "calsync_channels_live", "Watch channels not stopped.", value=snapshot.channels_live
    )
    yield GaugeMetricFamily(
        "calsync_channels_expiring",
        "Live watch channels expiring within 24 hours (renewal replaces them sooner).",
        value=snapshot.channels_expiring,
    )
    silent = snapshot.silent_seconds
    if silent is not None:
        yield GaugeMetricFamily(
            "calsync_notification_silence_seconds",
            "Time since any push notification arrived, while channels are live.",
            value=silent,
        )


def scrape_registry(settings: Settings) -> CollectorRegistry:
    """Every process's counters and histograms on this host, plus the database gauges."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(DatabaseCollector(settings))
    return registry


def exposition(settings: Settings) -> tuple[bytes, str]:
    """The /metrics body and its content type."""
    return generate_latest(scrape_registry(settings)), CONTENT_TYPE_LATEST
