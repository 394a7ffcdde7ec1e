"""Error answers: forbidden sync parameters, Google's error shape, injected faults."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from emulator import EmulatorControlError, EmulatorServer
from tests.emulator.conftest import CalendarHelper, timed
from tests.support.discovery_schema import validate_error

FORBIDDEN_WITH_SYNC_TOKEN = {
    "timeMin": "2026-12-01T00:00:00Z",
    "timeMax": "2027-12-01T00:00:00Z",
    "q": "standup",
    "orderBy": "updated",
    "updatedMin": "2026-01-01T00:00:00Z",
    "iCalUID": "abc@google.com",
    "privateExtendedProperty": "team=a",
    "sharedExtendedProperty": "team=a",
}


def _body(error: HttpError) -> dict[str, Any]:
    return json.loads(error.content)


@pytest.mark.parametrize("name", sorted(FORBIDDEN_WITH_SYNC_TOKEN))
def test_parameter_forbidden_with_sync_token(calendar: CalendarHelper, name: str) -> None:
    value = FORBIDDEN_WITH_SYNC_TOKEN[name]
    calendar.list_all(**{name: value})  # allowed in a full sync
    _, token = calendar.list_all()
    with pytest.raises(HttpError) as refused:
        calendar.list_all(syncToken=token, **{name: value})
    assert refused.value.status_code == 400
    assert validate_error(_body(refused.value), 400) == []
    calendar.list_all(syncToken=token)  # the token itself is still good


def test_error_body_shape_for_not_found(calendar: CalendarHelper) -> None:
    with pytest.raises(HttpError) as missing:
        calendar.get("nosuchevent1")
    body = _body(missing.value)
    assert validate_error(body, 404) == []
    assert body["error"]["code"] == 404
    assert body["error"]["errors"][0]["reason"] == "notFound"
    assert body["error"]["errors"][0]["domain"] == "global"


def test_invalid_page_token(calendar: CalendarHelper) -> None:
    with pytest.raises(HttpError) as refused:
        calendar.service.events().list(calendarId="primary", pageToken="bogus").execute()
    assert refused.value.status_code == 400
    assert validate_error(_body(refused.value), 400) == []


def test_invalid_time_parameters(calendar: CalendarHelper) -> None:
    for params in (
        {"timeMin": "yesterday"},
        {"timeMin": "2026-12-02T00:00:00Z", "timeMax": "2026-12-01T00:00:00Z"},
    ):
        with pytest.raises(HttpError) as refused:
            calendar.list_all(**params)
        assert refused.value.status_code == 400


EXPECTED_INJECTED = {
    "429": ("rateLimitExceeded", "usageLimits"),
    "403": ("rateLimitExceeded", "usageLimits"),
    "500": ("backendError", "global"),
    "503": ("backendError", "global"),
}


@pytest.mark.parametrize("status", sorted(EXPECTED_INJECTED))
def test_injected_errors_are_google_shaped(
    calendar: CalendarHelper, emulator: EmulatorServer, status: str
) -> None:
    emulator.control.set_faults(error_rates={status: 1.0})
    for call in (
        calendar.service.events().list(calendarId="primary"),
        calendar.service.calendars().get(calendarId="primary"),
        calendar.service.events().insert(
            calendarId="primary",
            body=timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00"),
        ),
    ):
        with pytest.raises(HttpError) as injected:
            call.execute()
        assert injected.value.status_code == int(status)
        body = _body(injected.value)
        assert validate_error(body, int(status)) == []
        reason, domain = EXPECTED_INJECTED[status]
        assert body["error"]["errors"][0]["reason"] == reason
        assert body["error"]["errors"][0]["domain"] == domain
    emulator.control.set_faults(error_rates={})
    assert calendar.list_all()[0] == []  # the refused insert stored nothing


def _outcomes(calendar: CalendarHelper, count: int) -> list[int]:
    result = []
    for _ in range(count):
        try:
            calendar.service.calendars().get(calendarId="primary").execute()
            result.append(200)
        except HttpError as error:
            result.append(error.status_code)
    return result


def test_error_rates_are_reproducible_by_seed(
    calendar: CalendarHelper, emulator: EmulatorServer
) -> None:
    rates = {"429": 0.2, "500": 0.2, "503": 0.2}
    emulator.control.set_faults(seed=5, error_rates=rates)
    first = _outcomes(calendar, 30)
    emulator.control.set_faults(seed=5, error_rates=rates)
    assert _outcomes(calendar, 30) == first
    assert {200, 429, 500, 503} <= set(first)
    emulator.control.set_faults(seed=6, error_rates=rates)
    assert _outcomes(calendar, 30) != first


def test_error_methods_restrict_injection(
    calendar: CalendarHelper, emulator: EmulatorServer
) -> None:
    emulator.control.set_faults(error_rates={"503": 1.0}, error_methods=["calendar.events.list"])
    calendar.service.calendars().get(calendarId="primary").execute()
    with pytest.raises(HttpError) as injected:
        calendar.service.events().list(calendarId="primary").execute()
    assert injected.value.status_code == 503


@pytest.mark.parametrize("status", ["500", "503", "429", "403"])
def test_client_retries_injected_errors_with_num_retries(
    calendar: CalendarHelper, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    """google-api-python-client's own retry logic recognizes the injected bodies as retryable
    (for 403 it must parse reason rateLimitExceeded out of the body)."""
    monkeypatch.setattr("googleapiclient.http.time.sleep", lambda seconds: None)
    emulator.control.set_faults(seed=3, error_rates={status: 0.5})
    for _ in range(5):
        calendar.service.events().list(calendarId="primary").execute(num_retries=20)
    statuses = [
        r["status"] for r in emulator.control.requests() if r["methodId"] == "calendar.events.list"
    ]
    assert statuses.count(200) == 5 and int(status) in statuses


def test_latency_is_observable_and_reset_clears_faults(
    calendar: CalendarHelper, emulator: EmulatorServer
) -> None:
    calendar.service.calendars().get(calendarId="primary").execute()  # token fetched
    emulator.control.set_faults(latency_ms=300)
    started = time.monotonic()
    calendar.service.calendars().get(calendarId="primary").execute()
    assert time.monotonic() - started >= 0.3
    emulator.control.set_faults(error_rates={"500": 1.0})
    emulator.control.reset()
    faults = emulator.control.faults()
    assert faults["latency_ms"] == 0 and faults["error_rates"] == {}
    assert emulator.control.requests() == []


def test_fault_config_rejects_bad_values(emulator: EmulatorServer) -> None:
    for bad in (
        {"nope": 1},
        {"error_rates": {"404": 0.5}},
        {"drop_rate": 2},
        {"error_rates": {"500": 0.7, "503": 0.7}},
    ):
        with pytest.raises(EmulatorControlError) as refused:
            emulator.control.set_faults(**bad)
        assert refused.value.status == 400
    assert emulator.control.faults()["error_rates"] == {}
