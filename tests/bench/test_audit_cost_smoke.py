"""Smoke run of bench.audit_cost: every promised number is reported and sane."""

from __future__ import annotations

from tests.bench.conftest import run_bench


def test_audit_cost_smoke(tmp_path) -> None:
    report = run_bench("audit_cost", tmp_path)
    values = report["values"]
    calendars = values["calendars_per_fleet"]
    for fleet in ("one_per_account", "fifty_per_account"):
        assert values[f"{fleet}.quiet.matched"] == calendars
        assert values[f"{fleet}.quiet.events_list_requests"] == 0  # a match needs no listing
        assert values[f"{fleet}.quiet.round_cpu_s"] > 0
        assert values[f"{fleet}.cold.token_refreshes"] > 0
        assert values[f"{fleet}.changed.calendars_changed"] > 0
        assert values[f"{fleet}.changed.mismatch"] == 0
        assert values[f"{fleet}.changed.deferred"] == values[f"{fleet}.changed.calendars_changed"]
        assert 0 < values[f"{fleet}.requests_per_calendar_per_day"] <= 1.0
    assert values["one_per_account.quiet.freebusy_requests"] == calendars
    assert values["fifty_per_account.quiet.freebusy_requests"] == -(-calendars // 50)
    assert any(bar["what"].startswith("audit requests per calendar") for bar in report["bars"])
