"""Outbound metrics: attempts by outcome and the commit-to-2xx lag (counters in every
process), endpoints by state and the outbox's depth and age (gauges at scrape time)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from core.settings import Settings
from models import OutboxEvent
from models.db import session_scope
from webhook import metrics_view

from .conftest import Driver, Receiver
from .test_delivery import block, new_host, register


def _values(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_attempts_lag_and_outbox_gauges(
    client, receiver: Receiver, driver: Driver, outbound_settings: Settings
) -> None:
    def counted() -> dict[tuple[str, tuple], float]:
        return _values(metrics.multiprocess_registry())

    delivered = ("calsync_outbound_deliveries_total", (("outcome", "delivered"),))
    http_error = ("calsync_outbound_deliveries_total", (("outcome", "http_error"),))
    lag_count = ("calsync_outbound_delivery_lag_seconds_count", ())
    before = counted()
    host_id, _ = new_host()
    register(client, receiver)
    receiver.answers = [500]
    block(client, host_id, 1, 2)
    driver.run()
    driver.elapse_backoff()
    after = counted()
    assert after[delivered] - before.get(delivered, 0) == 1
    assert after[http_error] - before.get(http_error, 0) == 1
    assert after[lag_count] - before.get(lag_count, 0) == 1

    now = datetime.now(UTC)
    with session_scope() as session:  # an event the fan-out never got to
        session.add(
            OutboxEvent(
                type="busy.changed",
                host_id=host_id,
                cause="sync",
                payload={"changed": []},
                committed_at=now - timedelta(minutes=10),
            )
        )
    registry = CollectorRegistry()
    registry.register(metrics_view.DatabaseCollector(outbound_settings, now=lambda: now))
    gauges = _values(registry)
    assert gauges[("calsync_outbound_endpoints", (("state", "active"),))] == 1
    assert gauges[("calsync_outbound_endpoints", (("state", "failing"),))] == 0
    assert gauges[("calsync_outbox_depth", ())] == 1
    assert gauges[("calsync_outbox_oldest_unfanned_seconds", ())] >= 600
    assert gauges[("calsync_outbox_oldest_pending_delivery_seconds", ())] == 0
