"""Metrics: observations from sync runs and hooks, the database gauges, /metrics, and the
multiprocess directory's fresh-start wipe."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core import metrics, metrics_dir
from core.settings import Settings
from models import SyncState
from models.db import session_scope
from tests.factories import make_account, make_calendar, make_channel, make_host
from tests.support.limiter import clear_daily_state
from webhook import create_app, metrics_view
from worker import rate_limit

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_multiprocess_mode_is_on_in_every_process_that_imports_metrics() -> None:
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    assert Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).is_dir()


def test_a_committed_incremental_run_observes_both_lags_and_counts() -> None:
    before = {
        "runs": sample("calsync_sync_runs_total", kind="incremental", outcome="ok"),
        "n2a": sample("calsync_notification_to_applied_seconds_count", kind="incremental"),
        "n2a_sum": sample("calsync_notification_to_applied_seconds_sum", kind="incremental"),
        "prop": sample("calsync_propagation_lag_seconds_count", kind="incremental"),
        "prop_sum": sample("calsync_propagation_lag_seconds_sum", kind="incremental"),
    }
    metrics.observe_sync_run(
        "incremental",
        "ok",
        notification_lag_ms=1500,
        finished_at=NOW,
        changed_updated=[NOW - timedelta(seconds=4), NOW + timedelta(seconds=1)],
    )
    assert sample("calsync_sync_runs_total", kind="incremental", outcome="ok") == before["runs"] + 1
    n2a = sample("calsync_notification_to_applied_seconds_count", kind="incremental")
    assert n2a == before["n2a"] + 1
    assert sample(
        "calsync_notification_to_applied_seconds_sum", kind="incremental"
    ) == pytest.approx(before["n2a_sum"] + 1.5)
    assert sample("calsync_propagation_lag_seconds_count", kind="incremental") == before["prop"] + 2
    # The event stamped after our commit (clock skew) counts as zero, never negative.
    assert sample("calsync_propagation_lag_seconds_sum", kind="incremental") == pytest.approx(
        before["prop_sum"] + 4
    )


def test_full_sync_lag_is_not_a_propagation_lag_and_410_counts_a_resync() -> None:
    prop_full = sample("calsync_propagation_lag_seconds_count", kind="full")
    resyncs = sample("calsync_resyncs_410_total")
    metrics.observe_sync_run("full", "ok", finished_at=NOW, changed_updated=[NOW])
    metrics.observe_sync_run("410-recovery", "ok", finished_at=NOW, changed_updated=[])
    assert sample("calsync_propagation_lag_seconds_count", kind="full") == prop_full
    assert sample("calsync_resyncs_410_total") == resyncs + 1


def test_failed_run_counts_without_lag() -> None:
    failed = sample("calsync_sync_runs_total", kind="incremental", outcome="retrying")
    lag = sample("calsync_notification_to_applied_seconds_count", kind="incremental")
    metrics.observe_sync_run("incremental", "retrying", finished_at=NOW)
    assert sample("calsync_sync_runs_total", kind="incremental", outcome="retrying") == failed + 1
    assert sample("calsync_notification_to_applied_seconds_count", kind="incremental") == lag


def test_google_attempts_and_retries_are_counted() -> None:
    ok = sample("calsync_google_requests_total", method="events.list", status="503")
    retries = sample("calsync_google_retries_total")
    metrics.observe_google_request("events.list", 503)
    metrics.observe_google_retry("events.list")
    assert sample("calsync_google_requests_total", method="events.list", status="503") == ok + 1
    assert sample("calsync_google_retries_total") == retries + 1


def test_sync_engine_survives_broken_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    from models import SyncRunRecord
    from worker import sync_engine

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("metrics broke")

    monkeypatch.setattr(metrics, "observe_sync_run", broken)
    run = SyncRunRecord(1, "incremental", "push", NOW, NOW, "ok")
    sync_engine._observe(run)  # must not raise


def _families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_database_gauges(settings: Settings, db: None) -> None:
    with session_scope() as session:
        host = make_host(session)
        ok_account = make_account(session, host)
        revoked = make_account(session, host, state="needs_reauth")
        fresh = make_calendar(session, host, ok_account)
        lagging = make_calendar(session, host, ok_account, dirty_since=NOW - timedelta(minutes=5))
        make_calendar(session, host, revoked)
        for cal_id in (fresh.id, lagging.id):
            session.get(SyncState, cal_id).last_success_at = NOW - timedelta(minutes=10)
        make_channel(session, fresh, expiration=NOW + timedelta(hours=3))
        make_channel(session, lagging, expiration=NOW + timedelta(days=5))
    registry = CollectorRegistry()
    registry.register(metrics_view.DatabaseCollector(settings, now=lambda: NOW))
    families = _families(generate_latest(registry).decode())
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for samples in families.values()
        for s in samples
    }
    assert values[("calsync_metrics_database_up", ())] == 1
    assert values[("calsync_calendar_pending_lag_seconds", ())] == 300
    assert values[("calsync_calendar_staleness_seconds", ())] >= 600
    assert values[("calsync_calendars", (("state", "lagging"),))] == 1
    assert values[("calsync_calendars", (("state", "needs_reauth"),))] == 1
    assert values[("calsync_calendars", (("state", "ok"),))] == 1
    assert values[("calsync_calendars", (("state", "failing"),))] == 0
    assert values[("calsync_channels_expiring", ())] == 1
    assert values[("calsync_channels_live", ())] == 2
    # Embedded broker: a count of waiting messages is always available.
    assert ("calsync_queue_depth", ()) in values
    assert all("calendar" not in dict(labels) for _name, labels in values)


def test_daily_budget_used_ratio_is_a_scrape_gauge(settings: Settings, db: None) -> None:
    def gauge(configured: Settings) -> float | None:
        registry = CollectorRegistry()
        registry.register(metrics_view.DatabaseCollector(configured, now=lambda: NOW))
        families = _families(generate_latest(registry).decode())
        samples = families.get("calsync_google_daily_budget_used_ratio")
        return samples[0].value if samples else None

    assert gauge(settings) is None  # no daily budget: no gauge
    budgeted = dataclasses.replace(settings, project_requests_per_day=240)  # a burst of 10
    clear_daily_state(budgeted)  # permits of other tests
    try:
        for _ in range(8):
            rate_limit.acquire("user", budgeted)
        assert gauge(budgeted) == pytest.approx(8 / 240)
    finally:
        clear_daily_state(budgeted)


def test_database_down_is_reported_not_raised(settings: Settings) -> None:
    broken = Settings(
        data_dir=settings.data_dir,
        database_url="sqlite:////nonexistent-dir/for/sure/x.db",
        broker_url=settings.broker_url,
    )
    registry = CollectorRegistry()
    registry.register(metrics_view.DatabaseCollector(broken))
    families = _families(generate_latest(registry).decode())
    assert families["calsync_metrics_database_up"][0].value == 0


def test_metrics_endpoint_serves_process_files_and_database_gauges(
    settings: Settings, db: None
) -> None:
    client = create_app(settings).test_client()
    metrics.observe_webhook_outcome("bad_token")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "version=" in response.headers["Content-Type"]
    families = _families(response.get_data(as_text=True))
    for name in (
        "calsync_notification_to_applied_seconds",
        "calsync_propagation_lag_seconds",
        "calsync_sync_runs",
        "calsync_webhook_notifications",
        "calsync_calendars",
        "calsync_calendar_staleness_seconds",
        "calsync_channels_expiring",
        "calsync_queue_depth",
    ):
        assert name in families, name
    rejected = [
        s for s in families["calsync_webhook_notifications"] if s.labels["outcome"] == "bad_token"
    ]
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    assert rejected and rejected[0].value >= 1, (os.getpid(), sorted(os.listdir(directory)))
    buckets = {
        s.labels["le"]
        for s in families["calsync_notification_to_applied_seconds"]
        if s.name.endswith("_bucket")
    }
    assert {"0.05", "3600.0"} <= buckets


def test_webhook_outcomes_are_counted_by_the_receiver_hook(settings: Settings, db: None) -> None:
    from webhook import push_receiver

    create_app(settings)
    before = sample("calsync_webhook_notifications_total", outcome="malformed")
    push_receiver.record_outcome("malformed")
    assert sample("calsync_webhook_notifications_total", outcome="malformed") == before + 1


def test_fresh_start_wipes_only_when_every_owner_is_dead(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(dead.stdout)
    (tmp_path / f"counter_{dead_pid}.db").write_bytes(b"x")
    (tmp_path / f"histogram_{dead_pid}.db").write_bytes(b"x")
    live = tmp_path / f"counter_{os.getppid()}.db"
    live.write_bytes(b"x")
    assert metrics_dir.wipe_if_fresh_start(tmp_path) is False  # a live owner: keep all
    assert len(list(tmp_path.glob("*.db"))) == 3
    live.unlink()
    assert metrics_dir.wipe_if_fresh_start(tmp_path) is True
    assert list(tmp_path.glob("*.db")) == []


def test_default_dir_is_under_the_data_dir(tmp_path: Path) -> None:
    assert metrics_dir.default_dir({"CALSYNC_DATA_DIR": str(tmp_path)}) == tmp_path / "metrics"
