"""Smoke runs of the benchmarks under bench/: each runs its seconds-long version as a user
would (`python -m bench.<name> --smoke`), so the benchmarks cannot rot. No timing is asserted:
only that the run finishes and reports every number it promises."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.backends import port_open, use_services

REPO = Path(__file__).resolve().parents[2]


def require_tool(binary: str, package: str) -> None:
    """Outside CI a missing tool skips (naming the Debian package); in CI it fails."""
    if shutil.which(binary) is not None:
        return
    message = f"{binary} not found: install the Debian package {package}"
    if use_services():
        pytest.fail(message)
    pytest.skip(message)


def require_services() -> None:
    """Benchmarks measure the production setup: PostgreSQL and a redis-server binary."""
    require_tool("redis-server", "redis-server")
    if not port_open("127.0.0.1", 5432):
        message = "PostgreSQL is not reachable on 127.0.0.1:5432 (Debian package postgresql)"
        if use_services():
            pytest.fail(message)
        pytest.skip(message)


def run_bench(module: str, tmp_path: Path, *args: str, timeout: float = 120) -> dict[str, Any]:
    """Run `python -m bench.<module> --smoke --json ...` from the repository; its report."""
    require_services()
    report = tmp_path / f"{module}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    completed = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", "--smoke", "--json", str(report), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"bench.{module} failed:\n{output[-6000:]}"
    assert report.exists(), output[-6000:]
    return json.loads(report.read_text())
