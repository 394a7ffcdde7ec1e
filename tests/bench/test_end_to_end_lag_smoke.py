"""Smoke run of bench.end_to_end_lag: every promised number is reported and sane."""

from __future__ import annotations

import math

from tests.bench.conftest import run_bench


def test_end_to_end_lag_smoke(tmp_path) -> None:
    report = run_bench("end_to_end_lag", tmp_path)
    values = report["values"]
    for phase in ("push", "push_latency100", "poll"):
        assert values[f"{phase}.changes"] > 0
        assert values[f"{phase}.missing"] == 0
        for key in ("lag_p50_ms", "lag_p95_ms", "lag_p99_ms", "lag_max_ms"):
            assert math.isfinite(values[f"{phase}.{key}"]) and values[f"{phase}.{key}"] >= 0
    assert values["push.calendars"] > 0 and values["poll.calendars"] > 0
    assert values["push.calendars_mismatched"] == 0
    assert values["poll.calendars_mismatched"] == 0
    for ratio in ("poll_p50_over_push_p50", "poll_p99_over_push_p99"):
        assert math.isfinite(values[ratio]) and values[ratio] > 0
    assert {bar["what"] for bar in report["bars"]} >= {
        "push p50 lag ms (latency 0)",
        "push p99 lag ms (latency 0)",
        "push p99 lag ms (latency 100 ms)",
    }
