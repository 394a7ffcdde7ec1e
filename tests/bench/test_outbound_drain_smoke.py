"""Smoke run of bench.outbound_drain: a backlog of deliveries drained by the real outbound
worker, every delivery received, the rate and CPU per delivery reported."""

from __future__ import annotations

import math

from tests.bench.conftest import require_tool, run_bench


def test_outbound_drain_smoke(tmp_path) -> None:
    require_tool("node", "nodejs")  # the receivers (bench/webhook_receiver.mjs)
    report = run_bench("outbound_drain", tmp_path)
    values = report["values"]
    assert values["deliveries"] > 0
    assert values["received"] == values["deliveries"]
    assert values["deliveries_per_second"] > 0
    assert math.isfinite(values["outbound_cpu_ms_per_delivery"])
    assert values["outbound_cpu_ms_per_delivery"] > 0
    assert {bar["what"] for bar in report["bars"]} == {"deliveries not received"}
