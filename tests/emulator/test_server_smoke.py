"""End-to-end smoke tests of the emulator through the real google-api-python-client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from google.auth.exceptions import RefreshError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from emulator import EmulatorServer
from tests.support.discovery_schema import validate_error, validate_response

CAL = "ann@example.com"


class _Hook:
    """A local push receiver answering with a scripted list of statuses (then 200)."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        self.statuses: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                hook.received.append({**dict(self.headers), "_body": body.decode()})
                self.send_response(hook.statuses.pop(0) if hook.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def smoke_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(seed=1, record_bodies=True) as server:
        server.control.set_faults(push_retry_base_seconds=0.05)
        yield server
        problems = []
        for method_id, status, body in server.responses:
            if status < 300:
                problems += validate_response(method_id, body)
            else:
                problems += validate_error(body, status)
        assert problems == []


@pytest.fixture
def hook() -> Iterator[_Hook]:
    receiver = _Hook()
    yield receiver
    receiver.close()


def _service(server: EmulatorServer, info: dict[str, Any]) -> Any:
    credentials = Credentials(
        None,
        refresh_token=info["refresh_token"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        token_uri=info["token_uri"],
    )
    return build(
        "calendar",
        "v3",
        credentials=credentials,
        static_discovery=True,
        client_options={"api_endpoint": server.api_endpoint},
        cache_discovery=False,
    )


@pytest.fixture
def service(smoke_server: EmulatorServer) -> Any:
    info = smoke_server.control.create_account(CAL)
    smoke_server.control.create_calendar(CAL, "Europe/Berlin", CAL)
    return _service(smoke_server, info)


def _timed(summary: str, start: str, end: str, **extra: Any) -> dict[str, Any]:
    body = {
        "summary": summary,
        "start": {"dateTime": start, "timeZone": "Europe/Berlin"},
        "end": {"dateTime": end, "timeZone": "Europe/Berlin"},
    }
    body.update({key: value for key, value in extra.items() if value is not None})
    return body


def _drain(service: Any, **params: Any) -> tuple[list[dict[str, Any]], str]:
    items: list[dict[str, Any]] = []
    page_token = None
    while True:
        page = service.events().list(calendarId="primary", pageToken=page_token, **params).execute()
        items.extend(page["items"])
        page_token = page.get("nextPageToken")
        assert (page_token is None) == ("nextSyncToken" in page)
        if page_token is None:
            return items, page["nextSyncToken"]


def _apply(state: dict[str, dict[str, Any]], items: list[dict[str, Any]]) -> None:
    for item in items:
        if item["status"] == "cancelled":
            state.pop(item["id"], None)
        else:
            state[item["id"]] = item


def test_incremental_replay_matches_full_listing(service: Any) -> None:
    first = (
        service.events()
        .insert(
            calendarId="primary",
            body=_timed("one", "2026-11-24T10:00:00+01:00", "2026-11-24T11:00:00+01:00"),
        )
        .execute()
    )
    items, token = _drain(service, singleEvents=True, maxResults=2)
    state = {item["id"]: item for item in items}
    series = (
        service.events()
        .insert(
            calendarId="primary",
            body=_timed(
                "daily",
                "2026-11-24T09:00:00+01:00",
                "2026-11-24T09:30:00+01:00",
                recurrence=["RRULE:FREQ=DAILY;COUNT=5"],
            ),
        )
        .execute()
    )
    service.events().delete(calendarId="primary", eventId=first["id"]).execute()
    changed, token = _drain(service, singleEvents=True, maxResults=2, syncToken=token)
    assert len({item["id"] for item in changed}) == len(changed) == 6
    _apply(state, changed)
    instance = f"{series['id']}_20261126T080000Z"
    service.events().patch(
        calendarId="primary", eventId=instance, body={"summary": "moved"}
    ).execute()
    service.events().patch(
        calendarId="primary",
        eventId=series["id"],
        body={"recurrence": ["RRULE:FREQ=DAILY;COUNT=3"]},
    ).execute()
    changed, token = _drain(service, singleEvents=True, maxResults=2, syncToken=token)
    _apply(state, changed)
    full, _ = _drain(service, singleEvents=True)
    assert state == {item["id"]: item for item in full}
    assert state[instance]["summary"] == "moved"
    assert len(state) == 3
    empty, _ = _drain(service, singleEvents=True, syncToken=token)
    assert empty == []


def test_sync_token_rules(service: Any, smoke_server: EmulatorServer) -> None:
    _, token = _drain(service)
    with pytest.raises(HttpError) as forbidden:
        service.events().list(
            calendarId="primary", syncToken=token, timeMin="2026-01-01T00:00:00Z"
        ).execute()
    assert forbidden.value.status_code == 400
    with pytest.raises(HttpError) as mismatch:
        service.events().list(calendarId="primary", syncToken=token, singleEvents=True).execute()
    assert mismatch.value.status_code == 400
    smoke_server.control.invalidate_sync_tokens(CAL)
    with pytest.raises(HttpError) as gone:
        service.events().list(calendarId="primary", syncToken=token).execute()
    assert gone.value.status_code == 410
    assert gone.value.error_details[0]["reason"] == "fullSyncRequired"


def test_validation_errors(service: Any) -> None:
    with pytest.raises(HttpError) as empty_range:
        service.events().insert(
            calendarId="primary",
            body=_timed("bad", "2026-11-24T11:00:00+01:00", "2026-11-24T10:00:00+01:00"),
        ).execute()
    assert empty_range.value.error_details[0]["reason"] == "timeRangeEmpty"
    with pytest.raises(HttpError) as bad_id:
        service.events().insert(
            calendarId="primary",
            body={
                **_timed("x", "2026-11-24T10:00:00+01:00", "2026-11-24T11:00:00+01:00"),
                "id": "XYZ",
            },
        ).execute()
    assert bad_id.value.status_code == 400
    with pytest.raises(HttpError) as missing:
        service.events().get(calendarId="primary", eventId="abcdef").execute()
    assert missing.value.status_code == 404
    with pytest.raises(HttpError) as other:
        service.calendars().get(calendarId="bob@example.com").execute()
    assert other.value.status_code == 404


def test_push_sync_then_exists_with_retry(
    service: Any, smoke_server: EmulatorServer, hook: _Hook
) -> None:
    hook.statuses = [200, 503]
    watch = (
        service.events()
        .watch(
            calendarId="primary",
            body={
                "id": "chan-1",
                "token": "secret-token",
                "type": "web_hook",
                "address": hook.url,
                "params": {"ttl": "3600"},
            },
        )
        .execute()
    )
    assert watch["resourceId"] and int(watch["expiration"]) > time.time() * 1000
    service.events().insert(
        calendarId="primary",
        body=_timed("x", "2026-11-24T10:00:00+01:00", "2026-11-24T11:00:00+01:00"),
    ).execute()
    smoke_server.control.wait_push_idle()
    states = [(h["X-Goog-Resource-State"], h["X-Goog-Message-Number"]) for h in hook.received]
    assert states == [("sync", "1"), ("exists", "2"), ("exists", "2")]
    first = hook.received[0]
    assert first["X-Goog-Channel-Token"] == "secret-token"
    assert first["X-Goog-Resource-ID"] == watch["resourceId"]
    assert first["User-Agent"].startswith("APIs-Google")
    assert first["_body"] == ""
    service.channels().stop(body={"id": "chan-1", "resourceId": watch["resourceId"]}).execute()
    service.events().insert(
        calendarId="primary",
        body=_timed("y", "2026-11-24T12:00:00+01:00", "2026-11-24T13:00:00+01:00"),
    ).execute()
    smoke_server.control.wait_push_idle()
    assert len(hook.received) == 3


def test_access_token_expiry_and_revocation(service: Any, smoke_server: EmulatorServer) -> None:
    service.calendars().get(calendarId="primary").execute()
    smoke_server.control.advance_clock(3601)
    service.calendars().get(calendarId="primary").execute()  # 401, refresh, retry
    statuses = [(r["methodId"], r["status"]) for r in smoke_server.control.requests()]
    assert ("calendar.calendars.get", 401) in statuses
    assert statuses.count(("oauth2.token", 200)) == 2
    smoke_server.control.revoke_account(CAL)
    with pytest.raises(RefreshError):
        service.calendars().get(calendarId="primary").execute()


def test_injected_errors_are_google_shaped(service: Any, smoke_server: EmulatorServer) -> None:
    smoke_server.control.set_faults(error_rates={"403": 1.0})
    with pytest.raises(HttpError) as limited:
        service.events().list(calendarId="primary").execute()
    assert limited.value.status_code == 403
    assert limited.value.error_details[0]["reason"] == "rateLimitExceeded"
    smoke_server.control.set_faults(error_rates={})
    service.events().list(calendarId="primary").execute()


def test_control_api_rejects_unknown_fault_keys(smoke_server: EmulatorServer) -> None:
    response = requests.put(f"{smoke_server.url}/_emulator/faults", json={"nope": 1}, timeout=5)
    assert response.status_code == 400


def test_concurrent_writers_and_incremental_reader(
    service: Any, smoke_server: EmulatorServer
) -> None:
    items, token = _drain(service, singleEvents=True, maxResults=7)
    state = {item["id"]: item for item in items}

    def writer(worker: int) -> None:
        control = smoke_server.control
        for index in range(15):
            event = control.insert_event(
                CAL,
                _timed(
                    f"w{worker}-{index}",
                    "2026-11-24T10:00:00+01:00",
                    "2026-11-24T11:00:00+01:00",
                    recurrence=["RRULE:FREQ=DAILY;COUNT=3"] if index % 5 == 0 else None,
                ),
            )
            if index % 3 == 0:
                control.patch_event(CAL, event["id"], {"summary": "patched"})
            if index % 4 == 0:
                control.delete_event(CAL, event["id"])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        changed, token = _drain(service, singleEvents=True, maxResults=7, syncToken=token)
        _apply(state, changed)
    for thread in threads:
        thread.join()
    changed, token = _drain(service, singleEvents=True, maxResults=7, syncToken=token)
    _apply(state, changed)
    full, _ = _drain(service, singleEvents=True)
    assert state == {item["id"]: item for item in full}
    assert len(full) == 4 * (15 - 4 + 2 * 2)  # 11 live events per writer, 2 live series x3


def test_scenario_file_preloads_accounts_and_events(tmp_path: Any) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(
        json.dumps(
            {
                "seed": 5,
                "accounts": [{"email": CAL, "refresh_token": "1//fixed"}],
                "calendars": [
                    {
                        "id": CAL,
                        "timeZone": "UTC",
                        "owner": CAL,
                        "events": [
                            {
                                "summary": "a",
                                "start": {"date": "2026-11-24"},
                                "end": {"date": "2026-11-25"},
                            }
                        ],
                    }
                ],
            }
        )
    )
    with EmulatorServer() as server:
        loaded = server.load_scenario_file(scenario)
        assert loaded["accounts"][CAL]["refresh_token"] == "1//fixed"
        assert server.state.seed == 5
        service = _service(server, loaded["accounts"][CAL])
        listing = service.events().list(calendarId="primary").execute()
        assert [item["summary"] for item in listing["items"]] == ["a"]


def test_token_endpoint_accepts_basic_client_auth(smoke_server: EmulatorServer) -> None:
    info = smoke_server.control.create_account(CAL)
    form = {"grant_type": "refresh_token", "refresh_token": info["refresh_token"]}
    basic = requests.post(
        smoke_server.token_uri,
        data=form,
        timeout=5,
        auth=(info["client_id"], info["client_secret"]),
    )
    assert basic.status_code == 200 and basic.json()["access_token"]
    wrong = requests.post(
        smoke_server.token_uri, data=form, timeout=5, auth=(info["client_id"], "not-the-secret")
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    neither = requests.post(smoke_server.token_uri, data=form, timeout=5)
    assert neither.status_code == 401


def test_updated_min_lists_later_series_deletions(
    service: Any, smoke_server: EmulatorServer
) -> None:
    series = (
        service.events()
        .insert(
            calendarId="primary",
            body=_timed(
                "daily",
                "2026-11-24T09:00:00+01:00",
                "2026-11-24T09:30:00+01:00",
                recurrence=["RRULE:FREQ=DAILY;COUNT=3"],
            ),
        )
        .execute()
    )
    kept = (
        service.events()
        .insert(
            calendarId="primary",
            body=_timed(
                "weekly",
                "2026-11-24T12:00:00+01:00",
                "2026-11-24T12:30:00+01:00",
                recurrence=["RRULE:FREQ=WEEKLY;COUNT=2"],
            ),
        )
        .execute()
    )
    smoke_server.control.advance_clock(60)
    cutoff = smoke_server.control.clock()["now"]
    smoke_server.control.advance_clock(60)
    service.events().delete(
        calendarId="primary", eventId=f"{kept['id']}_20261201T110000Z"
    ).execute()
    service.events().delete(calendarId="primary", eventId=series["id"]).execute()
    singles, _ = _drain(service, singleEvents=True, updatedMin=cutoff)
    assert {item["id"]: item["status"] for item in singles} == {
        f"{series['id']}_2026112{day}T080000Z": "cancelled" for day in (4, 5, 6)
    } | {f"{kept['id']}_20261201T110000Z": "cancelled"}
    masters, _ = _drain(service, updatedMin=cutoff)
    assert {item["id"]: item["status"] for item in masters} == {
        series["id"]: "cancelled",
        f"{kept['id']}_20261201T110000Z": "cancelled",
    }


def test_extended_property_constraints_all_apply(service: Any) -> None:
    both = (
        service.events()
        .insert(
            calendarId="primary",
            body=_timed(
                "both",
                "2026-11-24T10:00:00+01:00",
                "2026-11-24T11:00:00+01:00",
                extendedProperties={"private": {"team": "a", "kind": "x=y"}},
            ),
        )
        .execute()
    )
    service.events().insert(
        calendarId="primary",
        body=_timed(
            "one",
            "2026-11-24T10:00:00+01:00",
            "2026-11-24T11:00:00+01:00",
            extendedProperties={"private": {"team": "a"}, "shared": {"kind": "x=y"}},
        ),
    ).execute()
    found, _ = _drain(service, privateExtendedProperty=["team=a", "kind=x=y"], maxResults=1)
    assert [item["id"] for item in found] == [both["id"]]
    found, _ = _drain(service, sharedExtendedProperty="kind=x=y", privateExtendedProperty="team=b")
    assert found == []
    with pytest.raises(HttpError) as malformed:
        service.events().list(calendarId="primary", privateExtendedProperty="team").execute()
    assert malformed.value.status_code == 400
