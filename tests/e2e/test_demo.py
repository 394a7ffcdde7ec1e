"""`calsync demo`, the README's first command, run as a user would: it shows every change
applied with the right busy decision, and Ctrl-C stops every process it started."""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def _children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _stacks_of(pid: int) -> str:
    """What the process is doing, if py-spy is at hand (for a demo that hangs on stop)."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return "(py-spy not installed: no stacks)"
    done = subprocess.run(
        [str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
    )
    return done.stdout + done.stderr


def _kill_groups(pids: list[int]) -> None:
    """SIGKILL each process's group: the demo's children run in sessions of their own, so
    killing the demo's group alone leaves them running (and poisoning later tests)."""
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def test_demo_shows_each_change_and_stops_cleanly_on_ctrl_c(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALSYNC_")}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    calsync = Path(sys.executable).with_name("calsync")
    process = subprocess.Popen(
        [str(calsync), "demo", "--port", "0"],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = []
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 150
    children: list[int] = []
    survivors: list[int] = []
    try:
        while "All changes applied" not in "".join(output):
            assert time.monotonic() < deadline, "".join(output)
            assert process.poll() is None, "".join(output)
            if selector.select(timeout=1):
                output.append(process.stdout.readline())
        children = _children_of(process.pid)
        assert len(children) >= 3  # web, worker, beat
        process.send_signal(signal.SIGINT)
        # Each of the five processes gets up to 15 s to shut down cleanly before it is
        # killed (calsync/processes.ServiceProcess.stop): usually a few seconds in all, but
        # once past 60 s on a loaded CI machine (session 10).
        try:
            rest, _ = process.communicate(timeout=120)
        except subprocess.TimeoutExpired as exc:
            said = exc.output.decode() if isinstance(exc.output, bytes) else exc.output or ""
            raise AssertionError(
                "the demo did not stop within 120 s of Ctrl-C; it said:\n"
                + "".join(output)
                + said
                + "\nstacks (the demo, then its children):\n"
                + "\n".join(_stacks_of(pid) for pid in [process.pid, *children] if _alive(pid))
            ) from exc
    finally:
        if process.poll() is None:
            children = sorted({*children, *_children_of(process.pid)})
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        survivors = [pid for pid in children if _alive(pid)]
        _kill_groups(survivors)
        selector.close()
        process.stdout.close()
    text = "".join(output) + rest
    assert process.returncode == 0, text
    assert "stopped." in text
    for step in ("[1]", "[2]", "[3]", "[4]", "[5]", "[6]", "[7]"):
        assert step in text
    assert "Lunch (shown as Free): free" in text
    assert "Optional sync: declined" in text
    assert "notification→applied lag" in text
    assert re.search(r"sign in  http://127\.0\.0\.1:\d+/sign-in/csl_\S+", text), text
    assert re.search(r"CalDAV URL http://127\.0\.0\.1:\d+/dav/", text)
    assert re.search(r"password   csf_\S+", text)
    assert not survivors, f"processes {survivors} survived Ctrl-C"
