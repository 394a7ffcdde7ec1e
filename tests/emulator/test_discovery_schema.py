"""The discovery-schema validator used to hold emulator responses to Google's schema."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.support.discovery_schema import (
    discovery_document,
    is_rfc3339,
    method,
    validate_error,
    validate_response,
)

EVENT: dict[str, Any] = {
    "kind": "calendar#event",
    "etag": '"3391212345678000"',
    "id": "m1_20261103T080000Z",
    "status": "confirmed",
    "summary": "Standup",
    "created": "2026-10-01T10:00:00.000Z",
    "updated": "2026-10-01T10:00:00.000Z",
    "start": {"dateTime": "2026-11-03T09:00:00+01:00", "timeZone": "Europe/Berlin"},
    "end": {"dateTime": "2026-11-03T10:00:00+01:00", "timeZone": "Europe/Berlin"},
    "recurringEventId": "m1",
    "originalStartTime": {"dateTime": "2026-11-03T09:00:00+01:00", "timeZone": "Europe/Berlin"},
    "attendees": [{"email": "me@x", "self": True, "responseStatus": "accepted"}],
    "transparency": "opaque",
    "eventType": "default",
    "sequence": 0,
    "extendedProperties": {"private": {"k": "v"}},
    "reminders": {"useDefault": True},
}

EVENTS_PAGE: dict[str, Any] = {
    "kind": "calendar#events",
    "etag": '"p1"',
    "summary": "me@x",
    "updated": "2026-10-01T10:00:00.000Z",
    "timeZone": "Europe/Berlin",
    "accessRole": "owner",
    "defaultReminders": [],
    "items": [EVENT, {"id": "gone", "status": "cancelled"}],
    "nextSyncToken": "CPDAlvWDx70CEPDAlvWDx70CGAU=",
}

CHANNEL = {
    "kind": "api#channel",
    "id": "chan-1",
    "resourceId": "res-1",
    "resourceUri": "https://www.googleapis.com/calendar/v3/calendars/primary/events",
    "token": "tok",
    "expiration": "1793000000000",
}

FREEBUSY = {
    "kind": "calendar#freeBusy",
    "timeMin": "2026-11-02T00:00:00.000Z",
    "timeMax": "2026-11-03T00:00:00.000Z",
    "calendars": {
        "me@x": {"busy": [{"start": "2026-11-02T09:00:00Z", "end": "2026-11-02T10:00:00Z"}]},
        "other@x": {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []},
    },
}

NOT_FOUND = {
    "error": {
        "code": 404,
        "message": "Not Found",
        "errors": [{"domain": "global", "reason": "notFound", "message": "Not Found"}],
    }
}


@pytest.mark.parametrize(
    ("method_id", "body"),
    [
        ("calendar.events.list", EVENTS_PAGE),
        (
            "calendar.events.instances",
            {"kind": "calendar#events", "items": [], "nextPageToken": "p2"},
        ),
        ("calendar.events.get", EVENT),
        ("calendar.events.insert", EVENT),
        (
            "calendar.events.patch",
            {"id": "a", "start": {"date": "2026-11-03"}, "end": {"date": "2026-11-04"}},
        ),
        ("calendar.events.watch", CHANNEL),
        ("calendar.freebusy.query", FREEBUSY),
        (
            "calendar.calendars.get",
            {
                "kind": "calendar#calendar",
                "id": "me@x",
                "summary": "me",
                "timeZone": "Europe/Berlin",
            },
        ),
        (
            "calendar.calendarList.list",
            {
                "kind": "calendar#calendarList",
                "items": [
                    {"id": "me@x", "primary": True, "accessRole": "owner", "timeZone": "UTC"}
                ],
            },
        ),
        ("calendar.channels.stop", None),
        ("calendar.events.delete", {}),
    ],
)
def test_valid_bodies(method_id: str, body: Any) -> None:
    assert validate_response(method_id, body) == []


def with_change(body: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


@pytest.mark.parametrize(
    ("method_id", "body", "problem"),
    [
        (
            "calendar.events.get",
            with_change(EVENT, ["_calendarTimeZone"], "UTC"),
            "Event._calendarTimeZone: unknown field",
        ),
        (
            "calendar.events.get",
            with_change(EVENT, ["start", "tz"], "UTC"),
            "Event.start.tz: unknown field",
        ),
        (
            "calendar.events.get",
            with_change(EVENT, ["sequence"], "0"),
            "Event.sequence: expected integer",
        ),
        (
            "calendar.events.get",
            with_change(EVENT, ["sequence"], True),
            "Event.sequence: expected integer",
        ),
        (
            "calendar.events.get",
            with_change(EVENT, ["attendees", 0, "self"], "true"),
            "Event.attendees[0].self: expected boolean",
        ),
        (
            "calendar.events.get",
            with_change(EVENT, ["attendees"], {"email": "x"}),
            "Event.attendees: expected array",
        ),
        (
            "calendar.events.get",
            with_change(EVENT, ["start"], "2026-11-03"),
            "Event.start: expected object",
        ),
        (
            "calendar.events.get",
            with_change(EVENT, ["updated"], "2026-10-01 10:00:00"),
            "Event.updated: not an RFC 3339 date-time",
        ),
        (
            "calendar.events.get",
            with_change(EVENT, ["start", "dateTime"], "2026-11-03T09:00:00"),
            "Event.start.dateTime: not an RFC 3339 date-time",
        ),
        (
            "calendar.events.get",
            with_change(EVENT, ["start", "date"], "2026-11-31"),
            "Event.start.date: not a YYYY-MM-DD date",
        ),
        (
            "calendar.events.get",
            with_change(EVENT, ["extendedProperties", "private", "k"], 1),
            "Event.extendedProperties.private['k']: expected string",
        ),
        (
            "calendar.events.get",
            with_change(EVENT, ["summary"], None),
            "Event.summary: expected string",
        ),
        (
            "calendar.events.list",
            with_change(EVENTS_PAGE, ["items", 1, "bogus"], 1),
            "Events.items[1].bogus: unknown field",
        ),
        (
            "calendar.events.watch",
            with_change(CHANNEL, ["expiration"], 1793000000000),
            "Channel.expiration: expected string",
        ),
        (
            "calendar.events.watch",
            with_change(CHANNEL, ["expiration"], "soon"),
            "Channel.expiration: not an int64 string",
        ),
        (
            "calendar.freebusy.query",
            with_change(FREEBUSY, ["calendars", "me@x", "busy", 0, "start"], "2026-11-02"),
            "FreeBusyResponse.calendars['me@x'].busy[0].start: not an RFC 3339 date-time",
        ),
        (
            "calendar.freebusy.query",
            with_change(FREEBUSY, ["calendars", "me@x"], []),
            "FreeBusyResponse.calendars['me@x']: expected object",
        ),
        ("calendar.channels.stop", {"ok": True}, "calendar.channels.stop: expected no body"),
    ],
)
def test_problems_are_reported(method_id: str, body: Any, problem: str) -> None:
    problems = validate_response(method_id, body)
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem), problems


def test_several_problems_are_all_reported() -> None:
    body = with_change(with_change(EVENT, ["x"], 1), ["y"], 2)
    assert sorted(validate_response("calendar.events.get", body)) == [
        "Event.x: unknown field",
        "Event.y: unknown field",
    ]


def test_unknown_method_id() -> None:
    with pytest.raises(KeyError, match=r"calendar\.events\.nope"):
        validate_response("calendar.events.nope", {})


def test_document_is_googles() -> None:
    assert discovery_document()["id"] == "calendar:v3"
    assert method("calendar.events.watch")["response"] == {"$ref": "Channel"}


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2026-11-02T09:00:00Z", True),
        ("2026-11-02T09:00:00.123+05:30", True),
        ("2026-11-02T09:00:00", False),
        ("2026-11-02T24:00:00Z", False),
        ("2026-11-02T09:00:00+24:00", False),
        ("2026-11-02", False),
    ],
)
def test_is_rfc3339(text: str, valid: bool) -> None:
    assert is_rfc3339(text) is valid


# --- error bodies ------------------------------------------------------------------------------


def test_valid_errors() -> None:
    assert validate_error(NOT_FOUND) == []
    assert validate_error(NOT_FOUND, status=404) == []
    gone = {
        "error": {
            "code": 410,
            "message": "Sync token is no longer valid.",
            "status": "GONE",
            "errors": [
                {
                    "domain": "calendar",
                    "reason": "fullSyncRequired",
                    "message": "Sync token is no longer valid.",
                    "location": "syncToken",
                    "locationType": "parameter",
                }
            ],
        }
    }
    assert validate_error(gone, status=410) == []


def error_with(change: dict[str, Any], item_change: dict[str, Any] | None = None) -> dict[str, Any]:
    body = copy.deepcopy(NOT_FOUND)
    body["error"].update(change)
    if item_change is not None:
        body["error"]["errors"][0].update(item_change)
    return body


@pytest.mark.parametrize(
    ("body", "status", "problem"),
    [
        (NOT_FOUND, 401, "error.code 404 differs from HTTP status 401"),
        (error_with({"code": "404"}), None, "error.code: expected integer"),
        (error_with({"code": 200}), None, "error.code: 200 is not an HTTP error status"),
        (error_with({"message": None}), None, "error.message: expected string"),
        (error_with({"errors": []}), None, "error.errors: expected a non-empty array"),
        (error_with({"details": []}), None, "error.details: unknown field"),
        (error_with({}, {"reason": 1}), None, "error.errors[0].reason: expected string"),
        (error_with({}, {"hint": "x"}), None, "error.errors[0].hint: unknown field"),
        (error_with({}, {"location": 3}), None, "error.errors[0].location: expected string"),
        ({"error": "invalid_grant"}, None, "error: expected object"),
        ({"code": 404}, None, "expected exactly {'error': ...}"),
    ],
)
def test_error_problems(body: Any, status: int | None, problem: str) -> None:
    problems = validate_error(body, status=status)
    assert len(problems) == 1, problems
    assert problems[0].startswith(problem), problems


def test_error_missing_item_fields() -> None:
    body = error_with({"errors": [{"reason": "notFound"}]})
    assert sorted(validate_error(body)) == [
        "error.errors[0].domain: expected string, got None",
        "error.errors[0].message: expected string, got None",
    ]
