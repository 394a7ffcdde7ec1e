"""A benchmark stopped with SIGTERM stops its stack too: its private Redis and the emulator
(children of the driver) must not outlive it and run beside the next benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.harness import stopped_by_sigterm
from tests.bench.conftest import REPO, require_services


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def test_sigterm_stops_the_benchmarks_children(tmp_path: Path) -> None:
    require_services()
    driver = subprocess.Popen(
        [sys.executable, "-m", "bench.sync_cpu", "--changes", "100000"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(children) < 2:  # the private redis-server and the emulator
            assert driver.poll() is None, driver.stdout.read() if driver.stdout else ""
            assert time.monotonic() < deadline, "the benchmark's stack did not start"
            time.sleep(0.2)
            children = _children(driver.pid)
        time.sleep(1)  # into the run proper
        children |= _children(driver.pid)
        driver.send_signal(signal.SIGTERM)
        output, _ = driver.communicate(timeout=60)
        assert driver.returncode == 128 + signal.SIGTERM, output[-3000:]
        survivors = [pid for pid in children if _alive(pid)]
        assert not survivors, f"still running after SIGTERM: {survivors}"
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(10)
        for pid in children:  # whatever survived: never left beside the next test
            if _alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


class _SignalledWhileFinalized:
    """An object whose finalizer is where SIGTERM's handler runs (as the garbage collector
    or a dropped connection's `__del__` can be): an exception raised there is dropped."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGTERM)  # the handler runs inside this finalizer


def test_a_sigterm_landing_in_a_finalizer_still_stops_the_run() -> None:
    started = time.monotonic()
    with pytest.raises(SystemExit) as stopped, stopped_by_sigterm():
        _SignalledWhileFinalized()  # finalized at once
        time.sleep(5)  # the run going on: interrupted by the signal delivered again
    assert stopped.value.code == 128 + signal.SIGTERM
    assert time.monotonic() - started < 4


def test_an_error_from_a_cleanup_the_signal_interrupted_still_exits_as_sigterm() -> None:
    # The exit lands inside a database call; the rollback on the way out then fails with
    # an error of its own, which would have replaced it (exit status 1, the suite saw it).
    with pytest.raises(SystemExit) as stopped, stopped_by_sigterm():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        finally:
            raise RuntimeError("another command is already in progress")
    assert stopped.value.code == 128 + signal.SIGTERM


def test_an_error_without_a_sigterm_is_left_as_it_is() -> None:
    with pytest.raises(RuntimeError), stopped_by_sigterm():
        raise RuntimeError("a benchmark's own failure")
