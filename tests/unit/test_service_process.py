"""ServiceProcess.children(): the pool processes the soak and the e2e tests SIGKILL."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from calsync.processes import ServiceProcess

# Forks one child from the main thread and one from another thread (as Celery does when it
# replaces a dead pool process from a thread that lives on), then waits to be stopped.
FORK_FROM_TWO_THREADS = """
import subprocess, sys, threading, time
sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
subprocess.Popen(sleeper)
def fork_and_stay():  # a thread that lives on, like Celery's pool supervisor
    subprocess.Popen(sleeper)
    time.sleep(60)
threading.Thread(target=fork_and_stay, daemon=True).start()
print("forked", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_children_include_those_forked_by_other_threads(tmp_path: Path) -> None:
    log = tmp_path / "parent.log"
    process = ServiceProcess(
        "parent", [sys.executable, "-c", FORK_FROM_TWO_THREADS], dict(os.environ), log
    ).start()
    try:
        deadline = time.monotonic() + 20
        while len(process.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(process.children()) == 2
    finally:
        process.stop()
    assert process.children() == []
