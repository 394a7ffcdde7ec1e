"""Fixtures for the emulator's acceptance tests.

One emulator server runs for the whole session; `emulator` resets it before each test (much
faster than a new server per test). API calls go through the real google-api-python-client
and google-auth; setup and faults through the control API.

Interface (reusable by other suites):
- `emulator_server` (session): a started EmulatorServer.
- `emulator` (function): the same server after control.reset().
- `account`: authorized-user dict of ACCOUNT_EMAIL, who owns the calendar ACCOUNT_EMAIL
  (time zone CALENDAR_TZ), so "primary" works.
- `service`: a calendar v3 client for `account`; `make_service(emulator, info)` builds more.
- `calendar`: a CalendarHelper over `service` for the primary calendar.
- `push_receiver`: a PushReceiver (threaded HTTP server recording every POST).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build

from emulator import EmulatorControl, EmulatorServer

ACCOUNT_EMAIL = "ann@example.com"
CALENDAR_TZ = "Europe/Berlin"


def make_credentials(info: dict[str, Any]) -> Credentials:
    """google-auth credentials from an authorized-user dict.

    Not Credentials.from_authorized_user_info: that always uses Google's token URI.
    """
    return Credentials(
        None,
        refresh_token=info["refresh_token"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        token_uri=info["token_uri"],
    )


def make_service(server: EmulatorServer, info: dict[str, Any]) -> Any:
    """The real calendar v3 client, pointed at the emulator."""
    return build(
        "calendar",
        "v3",
        credentials=make_credentials(info),
        static_discovery=True,
        client_options={"api_endpoint": server.api_endpoint},
        cache_discovery=False,
    )


def timed(start: str, end: str, time_zone: str = CALENDAR_TZ, **extra: Any) -> dict[str, Any]:
    """A timed event body; start/end are RFC 3339 strings with offsets."""
    return {
        "summary": extra.pop("summary", "event"),
        "start": {"dateTime": start, "timeZone": time_zone},
        "end": {"dateTime": end, "timeZone": time_zone},
        **extra,
    }


def all_day(start: str, end: str, **extra: Any) -> dict[str, Any]:
    """An all-day event body; end date exclusive."""
    return {
        "summary": extra.pop("summary", "all day"),
        "start": {"date": start},
        "end": {"date": end},
        **extra,
    }


@dataclass
class CalendarHelper:
    """Thin conveniences over the client for one calendar."""

    service: Any
    control: EmulatorControl
    calendar_id: str
    time_zone: str

    def insert(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.service.events().insert(calendarId=self.calendar_id, body=body).execute()

    def get(self, event_id: str) -> dict[str, Any]:
        return self.service.events().get(calendarId=self.calendar_id, eventId=event_id).execute()

    def patch(self, event_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return (
            self.service.events()
            .patch(calendarId=self.calendar_id, eventId=event_id, body=body)
            .execute()
        )

    def update(self, event_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return (
            self.service.events()
            .update(calendarId=self.calendar_id, eventId=event_id, body=body)
            .execute()
        )

    def delete(self, event_id: str) -> None:
        self.service.events().delete(calendarId=self.calendar_id, eventId=event_id).execute()

    def pages(self, **params: Any) -> list[dict[str, Any]]:
        """Every page of events.list, checking nextPageToken XOR nextSyncToken on each."""
        pages: list[dict[str, Any]] = []
        page_token = params.pop("pageToken", None)
        while True:
            page = (
                self.service.events()
                .list(calendarId=self.calendar_id, pageToken=page_token, **params)
                .execute()
            )
            pages.append(page)
            page_token = page.get("nextPageToken")
            assert (page_token is None) == ("nextSyncToken" in page), page.keys()
            if page_token is None:
                return pages
            assert len(pages) < 1000, "endless paging"

    def list_all(self, **params: Any) -> tuple[list[dict[str, Any]], str]:
        """(all items over all pages, nextSyncToken)."""
        pages = self.pages(**params)
        return [item for page in pages for item in page["items"]], pages[-1]["nextSyncToken"]

    def instances(self, event_id: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        page_token = None
        while True:
            page = (
                self.service.events()
                .instances(
                    calendarId=self.calendar_id, eventId=event_id, pageToken=page_token, **params
                )
                .execute()
            )
            items.extend(page["items"])
            page_token = page.get("nextPageToken")
            if page_token is None:
                return items


@dataclass
class ReceivedPush:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    monotonic: float


@dataclass
class PushReceiver:
    """A local webhook: records every request; answers with scripted statuses, then default."""

    url: str
    received: list[ReceivedPush] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    default_status: int = 204
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else self.default_status

    def record(self, push: ReceivedPush) -> None:
        with self.lock:
            self.received.append(push)

    def snapshot(self) -> list[ReceivedPush]:
        with self.lock:
            return list(self.received)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedPush]:
        """Poll until at least `count` requests arrived (deadline, no fixed sleep)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.snapshot()
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} pushes, got {len(got)}")
            time.sleep(0.01)


def _start_receiver() -> tuple[PushReceiver, ThreadingHTTPServer]:
    receiver = PushReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            receiver.record(
                ReceivedPush("POST", self.path, dict(self.headers.items()), body, time.monotonic())
            )
            self.send_response(receiver.next_status())
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_port}/hook"
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return receiver, server


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(seed=0) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer) -> EmulatorServer:
    emulator_server.control.reset(seed=0)
    return emulator_server


@pytest.fixture
def account(emulator: EmulatorServer) -> dict[str, Any]:
    info = emulator.control.create_account(ACCOUNT_EMAIL)
    emulator.control.create_calendar(ACCOUNT_EMAIL, CALENDAR_TZ, ACCOUNT_EMAIL, summary="Ann")
    return info


@pytest.fixture
def service(emulator: EmulatorServer, account: dict[str, Any]) -> Any:
    return make_service(emulator, account)


@pytest.fixture
def calendar(emulator: EmulatorServer, service: Any) -> CalendarHelper:
    return CalendarHelper(service, emulator.control, ACCOUNT_EMAIL, CALENDAR_TZ)


@pytest.fixture
def push_receiver() -> Iterator[PushReceiver]:
    receiver, server = _start_receiver()
    yield receiver
    server.shutdown()
    server.server_close()
