"""Smoke run of bench.calls_per_burst: every promised number is reported and sane."""

from __future__ import annotations

import math

from tests.bench.conftest import run_bench


def test_calls_per_burst_smoke(tmp_path) -> None:
    report = run_bench("calls_per_burst", tmp_path)
    values = report["values"]
    for phase in ("fast", "spread_1s"):
        assert values[f"{phase}.bursts"] > 0
        assert values[f"{phase}.changes_missing"] == 0
        assert values[f"{phase}.sequences_per_burst_avg"] >= 1
        assert values[f"{phase}.sequences_per_burst_max"] >= 1
        assert values[f"{phase}.burst_span_p50_ms"] > 0
        ratio = values[f"{phase}.google_calls_saved_vs_one_per_notification"]
        assert math.isfinite(ratio) and ratio > 0
    assert any(bar["what"].startswith("events.list sequences") for bar in report["bars"])
