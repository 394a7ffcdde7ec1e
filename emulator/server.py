"""Run the emulator on a real port: EmulatorServer (background thread) and serve() (CLI)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from emulator.app import EmulatorState, create_app
from emulator.control import EmulatorControl
from emulator.scenario import load_scenario, read_scenario_file

log = logging.getLogger("emulator")


class _QuietHandler(WSGIRequestHandler):
    """No per-request access log lines (they would carry tokens in query strings)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class EmulatorServer:
    """The emulator on a free port in a daemon thread; a context manager for tests."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        record_bodies: bool = False,
        push_workers: int = 8,
    ) -> None:
        self.host = host
        self.state = EmulatorState(
            seed=seed, record_bodies=record_bodies, push_workers=push_workers
        )
        self.app = create_app(self.state)
        self._requested_port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._control: EmulatorControl | None = None
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_endpoint(self) -> str:
        return f"{self.url}/calendar/v3/"

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def control(self) -> EmulatorControl:
        """One shared client (thread-safe: a session per calling thread); closed by stop()."""
        if self._control is None:
            self._control = EmulatorControl(self.url)
        return self._control

    @property
    def responses(self) -> list[tuple[str, int, Any]]:
        return self.state.responses

    def start(self) -> Self:
        self._server = make_server(
            self.host, self._requested_port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self.port = self._server.server_port
        self.state.base_url = self.url
        self.state.push.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="emulator-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.state.push.shutdown()

    def load_scenario_file(self, path: str | Path) -> dict[str, Any]:
        return load_scenario(self.state, read_scenario_file(path), self.token_uri)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    seed: int = 0,
    scenario_path: str | Path | None = None,
) -> None:
    """Run in the foreground until interrupted (the `calsync emulator` command)."""
    server = EmulatorServer(host=host, port=port, seed=seed).start()
    try:
        if scenario_path is not None:
            loaded = server.load_scenario_file(scenario_path)
            print(
                f"loaded scenario {scenario_path}: accounts "
                f"{', '.join(loaded['accounts']) or '-'}, {loaded['eventsCreated']} events",
                flush=True,
            )
        print(
            f"Google Calendar emulator on {server.url}  (API {server.api_endpoint}, "
            f"token URI {server.token_uri}, seed {server.state.seed})",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
