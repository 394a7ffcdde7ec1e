"""Every body the emulator sends validates against Google's discovery document schemas."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httplib2
import pytest
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from emulator import EmulatorServer
from tests.emulator.conftest import ACCOUNT_EMAIL, PushReceiver, all_day, make_service, timed
from tests.support.discovery_schema import validate_error, validate_response

ALL_METHODS = {
    "calendar.calendars.get",
    "calendar.calendarList.list",
    "calendar.calendarList.get",
    "calendar.events.list",
    "calendar.events.get",
    "calendar.events.insert",
    "calendar.events.patch",
    "calendar.events.update",
    "calendar.events.delete",
    "calendar.events.instances",
    "calendar.events.watch",
    "calendar.channels.stop",
    "calendar.freebusy.query",
}
ERROR_STATUSES = {400, 401, 403, 404, 409, 410, 429, 500, 503}


@pytest.fixture
def recording_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(seed=3, record_bodies=True) as server:
        yield server


def _expect_error(call: Callable[[], Any], status: int) -> None:
    with pytest.raises(HttpError) as raised:
        call()
    assert raised.value.status_code == status


def _broad_scenario(server: EmulatorServer, receiver: PushReceiver) -> None:
    control = server.control
    info = control.create_account(ACCOUNT_EMAIL)
    control.create_calendar(ACCOUNT_EMAIL, "Europe/Berlin", ACCOUNT_EMAIL, summary="Ann")
    control.create_calendar("wall@example.com", "UTC", ACCOUNT_EMAIL, watchable=False)
    control.set_faults(push_retry_base_seconds=0.05)
    api = make_service(server, info)
    events = api.events()

    api.calendars().get(calendarId="primary").execute()
    api.calendarList().list().execute()
    api.calendarList().get(calendarId="primary").execute()

    rich = events.insert(
        calendarId="primary",
        body=timed(
            "2026-12-01T10:00:00+01:00",
            "2026-12-01T11:00:00+01:00",
            summary="rich",
            description="d",
            location="room",
            colorId="5",
            visibility="private",
            transparency="opaque",
            attendees=[
                {"email": ACCOUNT_EMAIL, "responseStatus": "declined"},
                {"email": "bob@example.com", "optional": True},
            ],
            reminders={"useDefault": False, "overrides": [{"method": "popup", "minutes": 10}]},
            extendedProperties={"private": {"k": "v"}, "shared": {"s": "t"}},
        ),
    ).execute()
    events.insert(
        calendarId="primary", body=all_day("2026-12-24", "2026-12-26", transparency="transparent")
    ).execute()
    events.insert(
        calendarId="primary",
        body=timed(
            "2026-12-02T00:00:00+01:00",
            "2026-12-03T00:00:00+01:00",
            summary="away",
            eventType="outOfOffice",
        ),
    ).execute()
    series = events.insert(
        calendarId="primary",
        body=timed(
            "2026-12-07T09:00:00+01:00",
            "2026-12-07T09:30:00+01:00",
            summary="daily",
            recurrence=["RRULE:FREQ=DAILY;COUNT=5", "EXDATE;TZID=Europe/Berlin:20261209T090000"],
        ),
    ).execute()
    weekly = events.insert(
        calendarId="primary",
        body=all_day("2026-12-04", "2026-12-05", recurrence=["RRULE:FREQ=WEEKLY;COUNT=3"]),
    ).execute()

    first = events.list(calendarId="primary", maxResults=2).execute()
    events.list(calendarId="primary", maxResults=2, pageToken=first["nextPageToken"]).execute()
    _, token = _drain(events, singleEvents=True, maxResults=3)
    events.list(
        calendarId="primary",
        singleEvents=True,
        orderBy="startTime",
        timeMin="2026-12-01T00:00:00Z",
        timeMax="2026-12-31T00:00:00Z",
    ).execute()
    events.instances(calendarId="primary", eventId=series["id"]).execute()
    events.instances(calendarId="primary", eventId=weekly["id"], showDeleted=True).execute()

    instance_id = f"{series['id']}_20261208T080000Z"
    events.get(calendarId="primary", eventId=rich["id"]).execute()
    events.get(calendarId="primary", eventId=instance_id).execute()
    events.patch(calendarId="primary", eventId=rich["id"], body={"summary": "p"}).execute()
    events.patch(
        calendarId="primary",
        eventId=instance_id,
        body={
            "start": {"dateTime": "2026-12-08T15:00:00+01:00"},
            "end": {"dateTime": "2026-12-08T15:30:00+01:00"},
        },
    ).execute()
    events.update(
        calendarId="primary",
        eventId=rich["id"],
        body=timed("2026-12-01T12:00:00+01:00", "2026-12-01T13:00:00+01:00", summary="u"),
    ).execute()
    events.delete(calendarId="primary", eventId=f"{series['id']}_20261210T080000Z").execute()
    events.patch(
        calendarId="primary",
        eventId=series["id"],
        body={"recurrence": ["RRULE:FREQ=DAILY;COUNT=4"]},
    ).execute()

    watch = events.watch(
        calendarId="primary",
        body={
            "id": "schema-chan",
            "token": "t",
            "type": "web_hook",
            "address": receiver.url,
            "params": {"ttl": "600"},
        },
    ).execute()
    events.delete(calendarId="primary", eventId=rich["id"]).execute()
    _drain(events, singleEvents=True, maxResults=2, syncToken=token)
    _drain(events, showDeleted=True)
    events.list(calendarId="primary", showDeleted=True, singleEvents=True).execute()
    api.freebusy().query(
        body={
            "timeMin": "2026-12-01T00:00:00Z",
            "timeMax": "2026-12-31T00:00:00Z",
            "items": [{"id": "primary"}, {"id": "nobody@example.com"}],
        }
    ).execute()
    receiver.wait_for(2)
    api.channels().stop(body={"id": watch["id"], "resourceId": watch["resourceId"]}).execute()

    # ----- errors ----------------------------------------------------------------------
    _expect_error(lambda: api.calendars().get(calendarId="nobody@example.com").execute(), 404)
    _expect_error(lambda: events.get(calendarId="primary", eventId="missing1").execute(), 404)
    _expect_error(lambda: events.delete(calendarId="primary", eventId=rich["id"]).execute(), 410)
    _expect_error(lambda: events.list(calendarId="primary", syncToken=token, q="x").execute(), 400)
    _expect_error(lambda: events.insert(calendarId="primary", body={"summary": "x"}).execute(), 400)
    _expect_error(
        lambda: events.insert(
            calendarId="primary",
            body=timed("2026-12-01T11:00:00+01:00", "2026-12-01T10:00:00+01:00"),
        ).execute(),
        400,
    )
    _expect_error(
        lambda: events.insert(
            calendarId="primary",
            body={
                **timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00"),
                "id": weekly["id"],
            },
        ).execute(),
        409,
    )
    _expect_error(
        lambda: events.watch(
            calendarId="primary",
            body={"id": "schema-chan", "type": "web_hook", "address": receiver.url},
        ).execute(),
        400,
    )
    _expect_error(
        lambda: events.watch(
            calendarId="wall@example.com",
            body={"id": "w", "type": "web_hook", "address": receiver.url},
        ).execute(),
        400,
    )
    _expect_error(
        lambda: api.channels().stop(body={"id": "nope", "resourceId": "r"}).execute(), 404
    )
    _expect_error(lambda: api.freebusy().query(body={"items": []}).execute(), 400)
    control.invalidate_sync_tokens(ACCOUNT_EMAIL)
    _expect_error(
        lambda: events.list(calendarId="primary", singleEvents=True, syncToken=token).execute(), 410
    )
    anonymous = build(
        "calendar",
        "v3",
        http=httplib2.Http(),
        static_discovery=True,
        client_options={"api_endpoint": server.api_endpoint},
        cache_discovery=False,
    )
    _expect_error(lambda: anonymous.calendars().get(calendarId="primary").execute(), 401)
    for status in (429, 403, 500, 503):
        control.set_faults(error_rates={str(status): 1.0})
        _expect_error(lambda: events.list(calendarId="primary").execute(), status)
    control.set_faults(error_rates={})


def _drain(events: Any, **params: Any) -> tuple[list[dict[str, Any]], str]:
    items: list[dict[str, Any]] = []
    page_token = None
    while True:
        page = events.list(calendarId="primary", pageToken=page_token, **params).execute()
        items.extend(page["items"])
        page_token = page.get("nextPageToken")
        if page_token is None:
            return items, page["nextSyncToken"]


def test_every_recorded_body_matches_the_discovery_schema(
    recording_server: EmulatorServer, push_receiver: PushReceiver
) -> None:
    _broad_scenario(recording_server, push_receiver)
    recorded = list(recording_server.responses)
    problems = []
    for method_id, status, body in recorded:
        found = validate_response(method_id, body) if status < 400 else validate_error(body, status)
        problems.extend(f"{method_id} {status}: {problem}" for problem in found)
    assert problems == []
    assert {m for m, status, _ in recorded if status < 300} == ALL_METHODS
    assert {status for _, status, _ in recorded if status >= 400} == ERROR_STATUSES
