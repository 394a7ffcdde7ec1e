"""bench.busy_read --smoke: loads blocks, answers host busy reads in-process and over HTTP,
agrees with the emulator's freeBusy, serves the same busy time over CalDAV and the ICS feed,
and reports every promised number."""

from __future__ import annotations

import math

from tests.bench.conftest import run_bench

LATENCIES = (
    "server",
    "query",
    "http",
    "http_same_questions",
    "http_freebusy_same_questions",
    "baseline_emulator_freebusy",
    "caldav_report_server",
    "ics_server",
    "caldav_report_http",
    "ics_http",
)
RATIOS = (
    "baseline_over_ours_p50",
    "baseline_over_ours_p99",
    "baseline_over_ours_freebusy_p50",
    "baseline_over_ours_freebusy_p99",
)


def test_busy_read_smoke(tmp_path) -> None:
    report = run_bench("busy_read", tmp_path)
    values = report["values"]
    assert report["smoke"] is True
    assert values["busy_blocks"] > 0 and values["calendars"] > 0 and values["hosts"] > 0
    assert values["answers_compared"] > 0
    assert values["answers_mismatched"] == 0
    assert values["busy_intervals_per_answer"] > 0
    for key in LATENCIES:
        assert values[f"{key}_requests"] > 0, key
        assert 0 < values[f"{key}_p50_ms"] <= values[f"{key}_p99_ms"], key
    assert 0 < values["server_cpu_p50_ms"] <= values["server_cpu_p99_ms"]
    for key in RATIOS:
        assert math.isfinite(values[key]) and values[key] > 0, key
    assert values["booking_tool_answers_compared"] > 0
    assert values["booking_tool_answers_mismatched"] == 0
    assert {bar["what"].split(" ")[0] for bar in report["bars"]} == {
        "server",
        "HTTP",
        "CalDAV",
        "ICS",
    }
