"""bench.sync_cpu --smoke: the CPU of one incremental sync against fetching the change alone,
without and with webhook endpoints."""

from __future__ import annotations

import math
from pathlib import Path

from tests.bench.conftest import run_bench


def test_sync_cpu_smoke(tmp_path: Path) -> None:
    report = run_bench("sync_cpu", tmp_path)
    values = report["values"]
    assert values["calendars"] == 20 and values["changes"] > 0
    for phase in ("plain", "announced"):
        for kind in ("fetch", "sync"):
            for stat in ("mean", "p50", "p90"):
                assert values[f"{phase}.{kind}_cpu_ms_{stat}"] > 0
        assert math.isfinite(values[f"{phase}.sync_over_fetch_alone"])
    assert report["bars"] == []
