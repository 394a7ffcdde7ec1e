"""bench.fleet_scale --smoke: loads a small fleet with COPY, runs every periodic task's
database work, explains each statement, runs beat + worker + web idle on the fleet at the
emulator, and reports every promised number."""

from __future__ import annotations

from tests.bench.conftest import run_bench

TASKS = (
    "sweep",
    "safety_net",
    "renewals",
    "audits_due",
    "drainer_batch",
    "lease",
    "alerts",
    "metrics_scrape",
)


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
