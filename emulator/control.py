"""EmulatorControl: a Python client for the emulator's /_emulator control API."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests


class EmulatorControlError(Exception):
    """The control API refused a call; carries the HTTP status and the JSON body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class EmulatorControl:
    """Same names as the control API; bypasses OAuth and fault injection."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout
        # One keep-alive session per calling thread (a Session is not thread-safe).
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()

    def close(self) -> None:
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()
        self._local = threading.local()

    def __enter__(self) -> EmulatorControl:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        response = self._session().request(
            method, f"{self.url}/_emulator{path}", json=body, params=params, timeout=self._timeout
        )
        payload = response.json() if response.content else None
        if response.status_code >= 400:
            raise EmulatorControlError(response.status_code, payload)
        return payload

    @staticmethod
    def _q(value: str) -> str:
        return quote(value, safe="@")

    def reset(self, seed: int | None = None) -> None:
        self._call("POST", "/reset", {} if seed is None else {"seed": seed})

    def create_account(self, email: str, refresh_token: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"email": email}
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return self._call("POST", "/accounts", body)

    def revoke_account(self, email: str) -> None:
        self._call("POST", f"/accounts/{self._q(email)}/revoke")

    def create_calendar(
        self,
        id: str,
        time_zone: str,
        owner: str,
        summary: str | None = None,
        watchable: bool = True,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": id,
            "timeZone": time_zone,
            "owner": owner,
            "watchable": watchable,
        }
        if summary is not None:
            body["summary"] = summary
        return self._call("POST", "/calendars", body)

    def delete_calendar(self, calendar_id: str) -> None:
        self._call("DELETE", f"/calendars/{self._q(calendar_id)}")

    def insert_event(
        self, calendar_id: str, body: dict[str, Any], silent: bool = False
    ) -> dict[str, Any]:
        path = f"/calendars/{self._q(calendar_id)}/events"
        return self._call("POST", path, body, params=self._silent(silent))

    def get_event(self, calendar_id: str, event_id: str) -> dict[str, Any]:
        return self._call("GET", f"/calendars/{self._q(calendar_id)}/events/{event_id}")

    def patch_event(
        self, calendar_id: str, event_id: str, body: dict[str, Any], silent: bool = False
    ) -> dict[str, Any]:
        path = f"/calendars/{self._q(calendar_id)}/events/{event_id}"
        return self._call("PATCH", path, body, params=self._silent(silent))

    def update_event(
        self, calendar_id: str, event_id: str, body: dict[str, Any], silent: bool = False
    ) -> dict[str, Any]:
        path = f"/calendars/{self._q(calendar_id)}/events/{event_id}"
        return self._call("PUT", path, body, params=self._silent(silent))

    def delete_event(self, calendar_id: str, event_id: str, silent: bool = False) -> None:
        path = f"/calendars/{self._q(calendar_id)}/events/{event_id}"
        self._call("DELETE", path, params=self._silent(silent))

    @staticmethod
    def _silent(silent: bool) -> dict[str, str] | None:
        """The silent-divergence fault: the change gets no sync-token position and no push."""
        return {"silent": "true"} if silent else None

    def invalidate_sync_tokens(self, calendar_id: str) -> None:
        self._call("POST", f"/calendars/{self._q(calendar_id)}/invalidate-sync-tokens")

    def reference_busy(
        self, calendar_id: str, time_min: datetime, time_max: datetime
    ) -> list[tuple[datetime, datetime]]:
        answer = self._call(
            "GET",
            f"/calendars/{self._q(calendar_id)}/busy",
            params={"timeMin": time_min.isoformat(), "timeMax": time_max.isoformat()},
        )
        return [(_parse_time(b["start"]), _parse_time(b["end"])) for b in answer["busy"]]

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return self._call("PUT", "/faults", faults)

    def faults(self) -> dict[str, Any]:
        return self._call("GET", "/faults")

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        return self._call("GET", "/requests", params={"since": since})

    def channels(self) -> list[dict[str, Any]]:
        return self._call("GET", "/channels")

    def deliveries(self, since: int = 0) -> list[dict[str, Any]]:
        return self._call("GET", "/deliveries", params={"since": since})

    def push_idle(self) -> bool:
        return bool(self._call("GET", "/push-idle")["idle"])

    def wait_push_idle(self, timeout: float = 10.0) -> None:
        """Block until every queued push message is delivered, failed or dropped."""
        deadline = time.monotonic() + timeout
        while not self.push_idle():
            if time.monotonic() > deadline:
                raise TimeoutError("push deliveries still pending")
            time.sleep(0.02)

    def clock(self) -> dict[str, Any]:
        return self._call("GET", "/clock")

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        return self._call("POST", "/clock", {"advance_seconds": seconds})

    def load_scenario(self, scenario: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/scenario", scenario)
