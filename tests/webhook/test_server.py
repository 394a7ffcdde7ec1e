"""The app behind real HTTP servers: chunked and lying request bodies over a socket, and the
Procfile's gunicorn command with webhook/gunicorn_conf.py."""

from __future__ import annotations

import contextlib
import http.client
import json
import runpy
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from calsync.processes import ServiceProcess, child_env, free_port, settings_vars, wait_http
from core.settings import Settings
from webhook import create_app
from webhook.app_factory import MAX_CONTENT_LENGTH

from .conftest import Watched, push_headers, watch_calendar

REPO = Path(__file__).resolve().parents[2]
GUNICORN_CONF = REPO / "webhook" / "gunicorn_conf.py"


@pytest.fixture
def server_url(settings: Settings, db: None) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


def _post_chunked(base_url: str, headers: dict, chunks: list[bytes]) -> tuple[int, dict]:
    host, port = base_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        # The server may answer and close before reading everything.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request(
                "POST", "/webhooks/google", body=iter(chunks), headers=headers, encode_chunked=True
            )
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def _raw_request(base_url: str, head: bytes, body: bytes) -> bytes:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(body)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            if b"\r\n\r\n" in received:
                break
        return received


def test_huge_chunked_body_over_http_is_413_json(server_url: str) -> None:
    chunks = [b"x" * 16384] * (MAX_CONTENT_LENGTH // 16384 + 4)
    status, body = _post_chunked(server_url, {"X-Goog-Channel-ID": "c"}, chunks)
    assert status == 413
    assert body["error"]["code"] == "body_too_large"


def test_small_chunked_body_over_http_is_400_json(server_url: str) -> None:
    status, body = _post_chunked(server_url, {"X-Goog-Channel-ID": "c"}, [b"hello"])
    assert status == 400
    assert body["error"]["code"] == "body_not_allowed"


def test_content_length_that_lies_low_is_400_and_the_server_keeps_serving(
    server_url: str,
) -> None:
    head = (
        b"POST /webhooks/google HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
        b"X-Goog-Channel-ID: c\r\nConnection: close\r\n\r\n"
    )
    answer = _raw_request(server_url, head, b"x" * (MAX_CONTENT_LENGTH * 2))
    assert answer.startswith(b"HTTP/1.1 400")
    wait_http(server_url + "/healthz", timeout=5)


@pytest.mark.parametrize("app_spec", ["webhook:create_app()", "webhook.wsgi:app"])
def test_gunicorn_serves_the_app_with_the_project_config(
    settings: Settings, session, tmp_path: Path, app_spec: str
) -> None:
    watched: Watched = watch_calendar(session)
    port = free_port()
    env = {**child_env(settings_vars(settings)), "PORT": str(port), "WEB_CONCURRENCY": "1"}
    argv = [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), app_spec]
    web = ServiceProcess("web", argv, env, tmp_path / "web.log").start()
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/readyz")
        ready = conn.getresponse()
        assert ready.status == 200, ready.read()
        ready.read()
        # A `sync` message goes through the database without touching the broker.
        conn.request("POST", "/webhooks/google", headers=push_headers(watched, "sync", 1))
        ack = conn.getresponse()
        assert ack.status == 204 and ack.read() == b""
        conn.close()
        chunks = [b"x" * 16384] * (MAX_CONTENT_LENGTH // 16384 + 4)
        status, body = _post_chunked(f"http://127.0.0.1:{port}", push_headers(watched), chunks)
        assert status == 413 and body["error"]["code"] == "body_too_large"
    finally:
        web.stop()
    assert "Booting worker" in web.log_tail(200)


def test_gunicorn_config_reads_port_and_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "5123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.delenv("GUNICORN_ACCESS_LOG", raising=False)
    conf = runpy.run_path(str(GUNICORN_CONF))
    assert conf["bind"] == "0.0.0.0:5123"
    assert (conf["workers"], conf["threads"], conf["timeout"]) == (3, 4, 30)
    assert conf["accesslog"] is None


def test_gunicorn_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORT", "WEB_CONCURRENCY", "GUNICORN_ACCESS_LOG"):
        monkeypatch.delenv(name, raising=False)
    conf = runpy.run_path(str(GUNICORN_CONF))
    assert (conf["bind"], conf["workers"]) == ("0.0.0.0:8000", 2)


def test_gunicorn_config_refuses_a_bad_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(SystemExit, match="PORT"):
        runpy.run_path(str(GUNICORN_CONF))
