"""Smoke runs of the benchmarks under bench/: each runs its seconds-long version as a user
would (`python -m bench.<name> --smoke`), so the benchmarks cannot rot. No timing is asserted:
only that the run finishes and reports every number it promises."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
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


# The smoke runs are independent (each has its own redis-server, PostgreSQL database, ports
# and temporary directory) and mostly wait on their child processes, so the first test to
# ask starts every smoke run the session selected, a few at a time, and each test then waits
# for its own report: the package costs about its slowest runs instead of their sum.
_selected: set[str] = set()  # the smoke runs this session's tests ask for
SMOKES_AT_ONCE = 3
SMOKE_TIMEOUT = 240.0
# Runs that start more than one stack of processes: fleet_scale's idle and busy phases
# (about 3 minutes on a loaded 2-core machine).
SMOKE_TIMEOUTS = {"fleet_scale": 420.0}
_runs: dict[str, Future[subprocess.CompletedProcess[str]]] = {}
_pool = ThreadPoolExecutor(SMOKES_AT_ONCE, thread_name_prefix="bench-smoke")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.parent == here and item.path.name.endswith("_smoke.py"):
            _selected.add(item.path.name.removeprefix("test_").removesuffix("_smoke.py"))


def _smoke(module: str, report: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    return subprocess.run(
        [sys.executable, "-m", f"bench.{module}", "--smoke", "--json", str(report)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUTS.get(module, SMOKE_TIMEOUT),
        check=False,
    )


def run_bench(module: str, tmp_path: Path) -> dict[str, Any]:
    """The report of `python -m bench.<module> --smoke --json ...`, run from the repository."""
    require_services()
    if module not in _runs:
        reports = Path(tempfile.mkdtemp(prefix="calsync-bench-smokes-"))
        # The asking test's own run first, so it never waits behind the others.
        for name in sorted((_selected - _runs.keys()) | {module}, key=lambda n: n != module):
            _runs[name] = _pool.submit(_smoke, name, reports / f"{name}.json")
    completed = _runs[module].result()
    report = Path(completed.args[-1])
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"bench.{module} failed:\n{output[-6000:]}"
    assert report.exists(), output[-6000:]
    copy = tmp_path / report.name  # kept beside the test's other files, as before
    copy.write_text(report.read_text())
    return json.loads(copy.read_text())
