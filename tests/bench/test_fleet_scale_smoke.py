"""bench.fleet_scale --smoke: loads a small fleet with COPY, runs every periodic task's
database work, explains each statement, runs beat + worker + web idle on the fleet at the
emulator, then the busy phase (changes at the emulator pushed to web and synced, host busy
reads in-process and over HTTP) on a fleet of the same size, then the recovery after
downtime (the whole fleet overdue at once, the same changes), and reports every promised
number."""

from __future__ import annotations

import math

import pytest

from tests.bench.conftest import SMOKE_TIMEOUTS, run_bench

TASKS = (
    "sweep",
    "safety_net",
    "renewals",
    "audits_due",
    "drainer_batch",
    "lease",
    "alerts",
    "metrics_scrape",
    "prune_history",
    "outbound_sweep",
    "outbound_states",
)


@pytest.mark.timeout(SMOKE_TIMEOUTS["fleet_scale"] + 60)
def test_fleet_scale_smoke(tmp_path) -> None:
    report = run_bench("fleet_scale", tmp_path)
    values = report["values"]
    assert report["smoke"] is True
    (size,) = {key.split(".")[0] for key in values if key.endswith(".calendars")}
    assert values[f"{size}.calendars"] == int(size[1:])
    assert values[f"{size}.busy_blocks"] == 50 * values[f"{size}.calendars"]
    explained = {key.split(".")[2] for key in values if key.startswith(f"{size}.sql.")}
    for task in TASKS:
        assert values[f"{size}.task.{task}_ms"] > 0, task
        assert task in explained, task  # each task's statements were explained
    assert all(values[key] >= 0 for key in values if key.endswith(".execution_ms")), (
        "every statement explained"
    )
    assert values["projected.n100000.google_requests_per_day.safety_net"] > 0
    assert report["bars"], "the per-statement bars are reported"
    idle = f"idle.{size}"
    assert values[f"{idle}.google_requests_per_calendar_day.calendar.events.list"] > 0
    assert values[f"{idle}.cpu_seconds_per_1000_calendar_hours"] > 0
    assert values[f"{idle}.metrics_scrapes"] > 0
    assert values[f"{idle}.processes_died"] == "-"
    for role in ("web", "worker", "beat"):
        assert values[f"{idle}.peak_rss_mb.{role}"] > 0, role
    busy = f"busy.{size}"
    assert values[f"{busy}.watched_calendars"] > 0
    assert values[f"{busy}.push.changes"] > 0
    assert values[f"{busy}.push.missing"] == 0  # every change pushed, synced and committed
    for key in ("lag_p50_ms", "lag_p99_ms", "lag_max_ms"):
        assert math.isfinite(values[f"{busy}.push.{key}"]) and values[f"{busy}.push.{key}"] >= 0
    for read in (
        "server",
        "http",
        "caldav_report_server",
        "caldav_report_http",
        "ics_server",
        "ics_http",
    ):
        assert values[f"{busy}.read.{read}_requests"] > 0, read
        assert values[f"{busy}.read.{read}_p99_ms"] > 0, read
    # CalDAV and ICS give the booking tools /busy's answer on the fleet's hosts.
    assert values[f"{busy}.read.booking_tool_answers_compared"] > 0
    assert values[f"{busy}.read.booking_tool_answers_mismatched"] == 0
    # The load started after the safety net had caught up with the attach phase.
    before = f"{busy}.push.safety_net_before"
    assert values[f"{before}.due"] <= values[f"{before}.round"]
    # Back after downtime: the whole fleet overdue, the same changes while it is worked off.
    recovery = f"{busy}.recovery"
    assert values[f"{recovery}.calendars_overdue"] == values[f"{size}.calendars"]
    assert values[f"{recovery}.push.changes"] > 0
    assert values[f"{recovery}.push.missing"] == 0
    assert values[f"{recovery}.push.lag_p99_ms"] >= 0
    assert values[f"{recovery}.queue_depth_max"] >= 0
    assert values[f"{recovery}.still_overdue_after"] < values[f"{recovery}.calendars_overdue"]
    assert values[f"{busy}.processes_died"] == "-"
    busy_bars = {bar["what"] for bar in report["bars"] if bar["what"].startswith("busy: ")}
    assert len(busy_bars) == 8, busy_bars
