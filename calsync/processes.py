"""Starting calsync's processes (web, worker, beat) as child processes: used by `calsync demo`
and by the end-to-end tests, so both run exactly what the Procfile runs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def web_argv(port: int, workers: int = 2) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        # Hooks (metrics directory, dead-worker cleanup, logging); the options below win.
        "--config",
        "python:webhook.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        "4",
        "--timeout",
        "30",
        "webhook:create_app()",
    ]


def worker_argv(concurrency: int = 2, hostname: str = "worker") -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "--loglevel=INFO",
        f"--concurrency={concurrency}",
        f"--hostname={hostname}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]


def beat_argv(schedule_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "beat",
        "--loglevel=INFO",
        f"--schedule={schedule_file}",
    ]


@dataclass
class ServiceProcess:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        # Own process group, so stop() reaches the pool children too.
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        if not self.alive:
            return
        assert self.popen is not None
        self.signal_group(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.popen.wait(5)

    def children(self) -> list[int]:
        """Pids of this process's direct children (a Celery worker's pool processes).

        Linux lists a child under the thread that forked it, and Celery forks replacements
        for dead pool processes from another thread than the first ones: read every thread's.
        """
        if self.popen is None:
            return []
        pids: list[int] = []
        try:
            threads = list(Path(f"/proc/{self.popen.pid}/task").iterdir())
        except OSError:
            return []
        for thread in threads:
            with contextlib.suppress(OSError):
                pids.extend(int(pid) for pid in (thread / "children").read_text().split())
        return sorted(pids)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_http(url: str, timeout: float = 30) -> None:
    """Wait until `url` answers at all (any HTTP status)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urlopen(url, timeout=2):  # noqa: S310 - local address we started
                return
        except URLError as exc:
            if getattr(exc, "code", None) is not None:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s") from exc
        except OSError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout}s") from exc
        time.sleep(0.1)
