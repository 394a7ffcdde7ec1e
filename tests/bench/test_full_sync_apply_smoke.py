"""bench.full_sync_apply --smoke: a full sync from scratch against a raw bulk insert, and the
syncing process's peak memory."""

from __future__ import annotations

import math
from pathlib import Path

from tests.bench.conftest import run_bench


def test_full_sync_apply_smoke(tmp_path: Path) -> None:
    report = run_bench("full_sync_apply", tmp_path)
    values = report["values"]
    assert values["events"] > 0 and values["busy_instances"] > 0
    for key in (
        "sync_seconds_median",
        "write_phase_seconds_median",
        "whole_sync_events_per_second",
        "applied_events_per_second",
        "ceiling_copy_seconds_median",
        "ceiling_executemany_seconds_median",
        "ceiling_events_per_second",
        "memory_sync_seconds",
        "resync_seconds",
    ):
        assert values[key] > 0, key
    for key in ("applied_vs_ceiling", "whole_sync_vs_ceiling"):
        assert math.isfinite(values[key]) and values[key] > 0, key
    assert values["ceiling_way"] in ("copy", "executemany")
    assert 0 < values["worker_rss_before_sync_mb"] <= values["worker_peak_rss_mb"]
    assert values["resync_worker_peak_rss_mb"] > 0
    assert {bar["what"] for bar in report["bars"]} == {
        "applied events/s / raw bulk insert events/s",
        f"peak worker RSS syncing {values['memory_events']} events (MiB)",
    }
