"""Smoke run of bench.outbound_delivery: every promised number is reported and sane."""

from __future__ import annotations

import math

from tests.bench.conftest import require_tool, run_bench


def test_outbound_delivery_smoke(tmp_path) -> None:
    require_tool("node", "nodejs")  # the receivers (bench/webhook_receiver.mjs)
    report = run_bench("outbound_delivery", tmp_path)
    values = report["values"]
    for phase in ("off", "on"):
        assert values[f"{phase}.changes"] > 0 and values[f"{phase}.missing"] == 0
        assert math.isfinite(values[f"{phase}.sync_lag_p99_ms"])
    for phase in ("off1", "on1", "off2", "on2"):
        # Every phase says where its lag went: each stage's p50/p99 in ms.
        stages = values[f"{phase}.lag_stages_p50_p99_ms"].split()
        assert stages[0::2] == ["push", "queue", "run"]
        assert all(int(p) >= 0 for pair in stages[1::2] for p in pair.split("/"))
    assert values["on.events"] > 0
    assert values["on.deliveries"] >= values["on.events"] * values["endpoints"]
    assert values["on.events_missing_an_endpoint"] == 0
    for key in ("on.delivery_lag_p50_ms", "on.delivery_lag_p99_ms"):
        assert math.isfinite(values[key]) and values[key] >= 0
    assert math.isfinite(values["sync_lag_p99_on_over_off"])
    assert {bar["what"] for bar in report["bars"]} >= {
        "delivery p99 ms (commit -> 2xx)",
        "sync lag p99 on / off",
    }
