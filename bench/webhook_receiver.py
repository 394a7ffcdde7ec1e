"""Benchmark 7's webhook receivers, in a process of their own: a Node HTTP/1.1 server
(bench/webhook_receiver.mjs) on which every endpoint is a path, keeping connections alive
(as production receivers do), answering 204 after a fixed delay and recording each
delivery with the moment its answer was sent.

They stand in for the customers' servers, which run on other machines: in a process of
their own they share no interpreter lock with the benchmark's load driver, they run at the
lowest CPU priority, so on this machine they take only the CPU calsync leaves (their own
slowness can only add to the delivery lag measured, never hide any), and Node's server
costs a fraction of Python's `http.server` per request (RESULTS §7, session 10).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import requests

Record = tuple[str, str, float, str]  # path, event id, answered (epoch s), occurredAt
SERVER = Path(__file__).with_name("webhook_receiver.mjs")


class Receivers:
    """The receiver process, started and stopped as a context manager."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def records(self) -> list[Record]:
        answer = requests.get(self.base + "/records", timeout=60)
        answer.raise_for_status()
        return [tuple(row) for row in answer.json()]  # type: ignore[misc]

    def __enter__(self) -> Receivers:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("benchmark 7's receivers need Node.js (`node` on PATH)")
        self.process = subprocess.Popen(
            [node, str(SERVER), str(self.delay)],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: os.nice(19),
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        return self

    def __exit__(self, *_exc: Any) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
