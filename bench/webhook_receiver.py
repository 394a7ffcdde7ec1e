"""Benchmark 7's webhook receivers, in a process of their own: every endpoint is a path on
one threaded HTTP/1.1 server (keep-alive, as production receivers are) that answers 204
after a fixed delay and records each delivery with the moment its answer was sent.

It stands in for the customers' servers, which run on other machines: in its own process
it shares no interpreter lock with the benchmark's load driver, and it runs at the lowest
CPU priority, so on this machine it takes only the CPU calsync leaves (its own slowness
can only add to the delivery lag measured, never hide any).

    python -m bench.webhook_receiver DELAY_SECONDS   # prints its port, serves until killed

`GET /records` answers every delivery so far: [[path, event id, answered, occurredAt], …].
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

Record = tuple[str, str, float, str]  # path, event id, answered (epoch s), occurredAt


def serve(delay: float) -> None:
    lock = threading.Lock()
    records: list[Record] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(delay)
            event = json.loads(body)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            with lock:
                records.append((self.path, event["id"], time.time(), event["occurredAt"]))

        def do_GET(self) -> None:
            with lock:
                body = json.dumps(records).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_port, flush=True)
    server.serve_forever()


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
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.webhook_receiver", str(self.delay)],
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


if __name__ == "__main__":
    serve(float(sys.argv[1]))
