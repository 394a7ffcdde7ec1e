"""Smoke run of bench/webhook_ingestion.py: wrk against calsync's push receiver and the bare
baseline; every promised number is reported and sane (no timing is asserted)."""

from __future__ import annotations

import math

from tests.bench.conftest import require_tool, run_bench


def test_webhook_ingestion_smoke(tmp_path) -> None:
    require_tool("wrk", "wrk")
    report = run_bench("webhook_ingestion", tmp_path)
    values = report["values"]

    for run in ("calsync.flood", "calsync.transition", "bare"):
        assert values[f"{run}.requests"] > 0
        assert values[f"{run}.requests_per_second"] > 0
        assert 0 < values[f"{run}.p50_ms"] <= values[f"{run}.p99_ms"]
        assert values[f"{run}.non_204"] == 0
        assert values[f"{run}.socket_errors"] == 0
    calendars = values["calendars"]
    assert values["db.calendars_notified"] == calendars
    assert values["db.channels_with_message_number"] == calendars
    assert values["calsync.transition.enqueued"] > 0
    assert 0 < values["calsync.transition.enqueued_fraction"] <= 1
    assert values["intake.drain_wait_seconds"] >= 0  # the intake emptied after the load
    for key in ("calsync_flood_vs_bare", "calsync_transition_vs_bare", "p99_flood_vs_bare"):
        assert math.isfinite(values[key]) and values[key] > 0
    assert [bar["what"] for bar in report["bars"]] == ["notifications/s calsync (flood) / bare"]
