"""Acceptance: after an end-to-end sync on real processes, the web's /metrics shows lag
observations made in the Celery worker's pool processes (multiprocess files), with the
expected labels, beside the web's own webhook counters and the database gauges."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Stack, attach_watched, wait_for, watching_and_synced

pytestmark = pytest.mark.e2e


def scrape(stack: Stack) -> dict[tuple[str, tuple], float]:
    text = requests.get(stack.web_url + "/metrics", timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


INCREMENTAL = (("kind", "incremental"),)


def test_worker_lag_observations_reach_the_web_scrape(live: Stack) -> None:
    cal = attach_watched(live, "metrics@example.com")
    wait_for(lambda: watching_and_synced([cal.calendar_id]), 60, "first sync + watch", live)
    before = scrape(live)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    live.emulator.control.insert_event(
        cal.google_calendar_id,
        {
            "summary": "pushed",
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
        },
    )

    def observed() -> bool:
        now = scrape(live)
        key = ("calsync_propagation_lag_seconds_count", INCREMENTAL)
        n2a = ("calsync_notification_to_applied_seconds_count", INCREMENTAL)
        return now.get(key, 0) > before.get(key, 0) and now.get(n2a, 0) > before.get(n2a, 0)

    wait_for(observed, 60, "lag observations in /metrics", live)
    after = scrape(live)
    lag_sum = ("calsync_notification_to_applied_seconds_sum", INCREMENTAL)
    assert after[lag_sum] > before.get(lag_sum, 0)  # a non-zero lag was observed
    assert after[("calsync_propagation_lag_seconds_sum", INCREMENTAL)] > 0
    bucket = ("calsync_notification_to_applied_seconds_bucket", (*INCREMENTAL, ("le", "3600.0")))
    assert after[bucket] >= 1
    runs = ("calsync_sync_runs_total", (("kind", "incremental"), ("outcome", "ok")))
    assert after[runs] > before.get(runs, 0)
    google = ("calsync_google_requests_total", (("method", "events.list"), ("status", "200")))
    assert after[google] > before.get(google, 0)
    accepted = ("calsync_webhook_notifications_total", (("outcome", "accepted"),))
    assert after[accepted] > before.get(accepted, 0)
    assert after[("calsync_calendars", (("state", "ok"),))] >= 1
    assert ("calsync_queue_depth", ()) in after
    # No calendar identity in any label.
    assert not any("calendar" in dict(labels) for _name, labels in after)

    # The sync ran in a worker pool process, whose metrics file the web read.
    directory = Path(
        live.env.get("PROMETHEUS_MULTIPROC_DIR") or Path(live.settings.data_dir) / "metrics"
    )
    pool_pids = live.workers[0].children()
    assert any((directory / f"histogram_{pid}.db").exists() for pid in pool_pids), (
        sorted(os.listdir(directory)),
        pool_pids,
    )
