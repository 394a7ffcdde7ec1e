"""GET /metrics: Prometheus exposition of every calsync process on this host (multiprocess
files: web workers, Celery pool processes) plus gauges computed from the database and the
broker at scrape time, so they are global (identical on every web host).

prometheus_client is reached only through core.metrics, which must be imported first
(it chooses multiprocess mode before prometheus_client loads)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from flask import Blueprint, Response, request

from core import metrics
from core.settings import Settings
from models.audits import audit_gauges
from models.db import session_scope
from models.ops_snapshot import OpsSnapshot, take_snapshot
from models.outbound_health import OutboundHealth, outbound_health
from webhook.errors import ApiError
from webhook.request_scope import app_settings
from worker.queue_depth import queue_depth
from worker.rate_limit import daily_budget_used_ratio

from prometheus_client import CollectorRegistry  # isort: skip  (after core.metrics)
from prometheus_client.core import GaugeMetricFamily, Metric  # isort: skip
from prometheus_client.registry import Collector  # isort: skip

log = logging.getLogger("calsync.metrics")

metrics_blueprint = Blueprint("metrics", __name__)


@metrics_blueprint.get("/metrics")
def scrape() -> Response:
    settings = app_settings()
    if settings.metrics_token:
        _require_metrics_token(settings.metrics_token)
    body, content_type = metrics.exposition(scrape_registry(settings))
    return Response(body, content_type=content_type)


def _require_metrics_token(expected: str) -> None:
    """CALSYNC_METRICS_TOKEN as a bearer header, or 401 before any query runs."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if not (
        scheme.lower() == "bearer"
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    ):
        raise ApiError(
            401,
            "unauthorized",
            "Send CALSYNC_METRICS_TOKEN as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": 'Bearer realm="calsync-metrics"'},
        )


def scrape_registry(settings: Settings) -> CollectorRegistry:
    """Every process's counters and histograms on this host, plus the database gauges."""
    registry = metrics.multiprocess_registry()
    registry.register(DatabaseCollector(settings))
    return registry


class DatabaseCollector(Collector):
    """Gauges computed from the database (and broker) on each scrape: global, not per host."""

    def __init__(self, settings: Settings, now: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.now = now or (lambda: datetime.now(UTC))

    def describe(self) -> list[Metric]:
        return []  # nothing is queried when the collector is registered

    def collect(self) -> Iterator[Metric]:

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
                last_match_age, differing = audit_gauges(session, self.now())
                outbound = outbound_health(session, self.now())
        except Exception as exc:
            log.warning("metrics_database_unavailable error=%s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield from _snapshot_gauges(snapshot)
            yield GaugeMetricFamily(
                "calsync_audit_last_match_age_seconds",
                "Largest time since a calendar's last audit that matched Google's freeBusy "
                "(over audited calendars; one never matched counts from its first audit).",
                value=last_match_age,
            )
            yield GaugeMetricFamily(
                "calsync_calendars_differing_from_google",
                "Calendars whose busy table still differed from Google after a full resync.",
                value=differing,
            )
            yield from _outbound_gauges(outbound)
        depth = queue_depth(self.settings)
        if depth is not None:
            yield GaugeMetricFamily(
                "calsync_queue_depth", "Task messages waiting in the calsync queue.", value=depth
            )
        yield from _budget_gauge(self.settings)


def _budget_gauge(settings: Settings) -> Iterator[Metric]:
    """Share of CALSYNC_PROJECT_REQUESTS_PER_DAY used in the last 24 hours, read from the
    rate limiter's shared state (Redis or its SQLite file); absent without a daily budget or
    while the limiter's store does not answer."""
    try:
        used = daily_budget_used_ratio(settings)
    except Exception as exc:
        log.warning("metrics_rate_limiter_unavailable error=%s", type(exc).__name__)
        return
    if used is not None:
        yield GaugeMetricFamily(
            "calsync_google_daily_budget_used_ratio",
            "Share (0..1) of the daily Google request budget used in the last 24 hours.",
            value=used,
        )


def _snapshot_gauges(snapshot: OpsSnapshot) -> Iterator[Metric]:
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


def _outbound_gauges(health: OutboundHealth) -> Iterator[Metric]:
    by_state = GaugeMetricFamily(
        "calsync_outbound_endpoints", "Outbound webhook endpoints by state.", labels=["state"]
    )
    for state, count in health.endpoints_by_state.items():
        by_state.add_metric([state], count)
    yield by_state
    yield GaugeMetricFamily(
        "calsync_outbox_depth",
        "Outbound events not yet fanned out plus deliveries not yet accepted by a receiver.",
        value=health.depth,
    )
    yield GaugeMetricFamily(
        "calsync_outbox_oldest_unfanned_seconds",
        "Age of the oldest outbound event not yet turned into deliveries (0 = none).",
        value=health.oldest_unfanned_seconds,
    )
    yield GaugeMetricFamily(
        "calsync_outbox_oldest_pending_delivery_seconds",
        "Age of the oldest outbound delivery not yet accepted by its receiver (0 = none).",
        value=health.oldest_pending_seconds,
    )
