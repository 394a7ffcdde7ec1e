"""The process launcher (calsync/processes.py): the Procfile's commands, readiness, stopping,
killing on purpose, restarting; and ServiceProcess.children(), the pool processes the soak
and the e2e tests SIGKILL."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from calsync.processes import (
    PROCFILE,
    ProcessExited,
    ProcessStack,
    ServiceProcess,
    beat_process,
    child_env,
    free_port,
    outbound_process,
    procfile_argv,
    settings_vars,
    web_process,
    worker_process,
)
from core.settings import Settings

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


# --- the launcher: commands, readiness, stopping, killing ------------------------------

REPO = Path(__file__).resolve().parents[2]
SERVE_HTTP = "import http.server, sys; http.server.test(port=int(sys.argv[1]), bind='127.0.0.1')"


def test_the_launcher_runs_the_procfile_commands() -> None:
    lines = [line for line in (REPO / "Procfile").read_text().splitlines() if line.strip()]
    assert dict(line.split(": ", 1) for line in lines) == PROCFILE


def test_command_lines_are_the_procfiles_with_the_launchers_settings(tmp_path: Path) -> None:
    env = {"CALSYNC_DATA_DIR": str(tmp_path)}
    web = web_process(8123, env, tmp_path / "web.log", workers=1)
    assert web.argv[1:] == [
        *("-m", "gunicorn", "-c", "python:webhook.gunicorn_conf"),
        *("--bind", "127.0.0.1:8123", "webhook:create_app()"),
    ]
    assert web.env["WEB_CONCURRENCY"] == "1"
    worker = worker_process("worker3", env, tmp_path / "w.log", concurrency=5)
    assert worker.argv[1:] == [
        *("-m", "celery", "-A", "worker.celery_app", "worker", "--loglevel=INFO"),
        *("-Q", "calsync"),
        *("--concurrency=5", "--without-gossip", "--without-mingle"),
        *("--hostname=worker3@%h", "--without-heartbeat"),
    ]
    outbound = outbound_process(env, tmp_path / "o.log", concurrency=3)
    assert outbound.argv[1:] == [
        *("-m", "celery", "-A", "worker.celery_app", "worker", "--loglevel=INFO"),
        *("-Q", "outbound", "--pool=threads", "--concurrency=3", "--hostname=outbound@%h"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]
    assert outbound.kind == "outbound"  # not among the stack's sync workers
    beat = beat_process(env, tmp_path / "beat.log")
    assert beat.argv[-1] == f"--schedule={tmp_path}/beat-schedule"
    # The Procfile's default where the variable is not set, as a shell would.
    assert "--concurrency=12" in procfile_argv("worker", {})


def test_child_env_carries_the_settings_and_none_of_ours(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CALSYNC_LEASE_SECONDS", "999")
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/db")
    settings = Settings(data_dir=tmp_path, lease_seconds=7)
    env = child_env(settings_vars(settings))
    assert "DATABASE_URL" not in env
    assert env["PATH"] == os.environ["PATH"]
    assert Settings.from_env(env) == settings


def test_a_stack_waits_for_readiness_stops_kills_and_restarts(tmp_path: Path) -> None:
    port = free_port()
    stack = ProcessStack(dict(os.environ), tmp_path / "logs")
    server = ServiceProcess(
        "server",
        [sys.executable, "-c", SERVE_HTTP, str(port)],
        dict(os.environ),
        tmp_path / "logs" / "server.log",
        kind="web",
        ready_url=f"http://127.0.0.1:{port}/",
    )
    says_ready = ServiceProcess(
        "worker0",
        [
            sys.executable,
            "-c",
            "import time; time.sleep(0.5); print(' ready.', flush=True); time.sleep(60)",
        ],
        dict(os.environ),
        tmp_path / "logs" / "worker0.log",
        kind="worker",
        ready_line=" ready.",
    )
    try:
        stack._start(server)
        stack._start(says_ready)
        assert not says_ready.ready()
        stack.wait_ready(timeout=20)
        assert server.ready() and says_ready.ready()
        assert stack.workers == [says_ready] and stack.web is server

        says_ready.kill()  # on purpose: no shutdown
        assert stack.dead() == [says_ready]
        revived = stack.restart(says_ready)
        assert stack.workers == [revived] and revived.alive
        assert not revived.ready()  # its earlier "ready." line does not count
        revived.wait_ready(timeout=20)
    finally:
        stack.stop()
    assert stack.processes == [] and not server.alive and not revived.alive


def test_waiting_for_a_process_that_exits_fails_at_once_with_its_log(tmp_path: Path) -> None:
    crashing = ServiceProcess(
        "web",
        [sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"],
        dict(os.environ),
        tmp_path / "web.log",
        ready_url=f"http://127.0.0.1:{free_port()}/",
    ).start()
    started = time.monotonic()
    with pytest.raises(ProcessExited, match="bad config"):
        crashing.wait_ready(timeout=30)
    assert time.monotonic() - started < 10


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    stubborn = ServiceProcess(
        "stubborn",
        [sys.executable, "-c", IGNORES_SIGTERM],
        dict(os.environ),
        tmp_path / "stubborn.log",
        ready_line="waiting",
    ).start()
    stubborn.wait_ready(timeout=20)
    started = time.monotonic()
    stubborn.stop(timeout=0.5)
    assert not stubborn.alive
    assert stubborn.popen is not None and stubborn.popen.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5


IGNORES_SIGTERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("waiting", flush=True)
time.sleep(60)
"""
