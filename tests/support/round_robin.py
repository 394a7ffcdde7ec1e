"""A round-robin HTTP front for several web hosts, as a load balancer puts before them: each
request goes to the next host in turn; a host that refuses the connection (it is gone) is
skipped for the next one. `pin` sends everything to one host (to know exactly which host
accepted a notification). Records which host answered what."""

from __future__ import annotations

import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

HOP_HEADERS = {"host", "connection", "content-length", "transfer-encoding", "keep-alive"}


class RoundRobinFront:
    def __init__(self, upstreams: list[str]) -> None:
        self.upstreams = upstreams
        self.answered: list[tuple[int, int]] = []  # (upstream index, status), in order
        self.pinned: int | None = None
        self._turn = itertools.count()
        self._lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                status, content = front.forward(self.path, headers, body)
                self.send_response(status)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> RoundRobinFront:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def pin(self, index: int | None) -> None:
        self.pinned = index

    def accepted_by(self, index: int) -> int:
        with self._lock:
            return sum(1 for host, status in self.answered if host == index and status < 300)

    def forward(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        first = self.pinned if self.pinned is not None else next(self._turn)
        tries = [first] if self.pinned is not None else range(first, first + len(self.upstreams))
        for n in tries:
            index = n % len(self.upstreams)
            try:
                answer = requests.post(
                    self.upstreams[index] + path, data=body, headers=headers, timeout=10
                )
            except requests.ConnectionError:
                continue  # the host is gone: the next one
            with self._lock:
                self.answered.append((index, answer.status_code))
            return answer.status_code, answer.content
        return 502, b"no web host answered"
