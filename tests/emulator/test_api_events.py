"""Events and calendars CRUD through the real client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from emulator import EmulatorServer
from tests.emulator.conftest import (
    ACCOUNT_EMAIL,
    CALENDAR_TZ,
    CalendarHelper,
    all_day,
    timed,
)


def _error_reason(error: HttpError) -> str:
    return error.error_details[0]["reason"]


def test_calendars_get_and_calendar_list(calendar: CalendarHelper) -> None:
    got = calendar.service.calendars().get(calendarId="primary").execute()
    assert got["id"] == ACCOUNT_EMAIL
    assert got["timeZone"] == CALENDAR_TZ
    assert got["summary"] == "Ann"
    by_id = calendar.service.calendars().get(calendarId=ACCOUNT_EMAIL).execute()
    assert by_id["id"] == ACCOUNT_EMAIL
    listed = calendar.service.calendarList().list().execute()
    entries = {entry["id"]: entry for entry in listed["items"]}
    assert entries[ACCOUNT_EMAIL].get("primary") is True
    assert entries[ACCOUNT_EMAIL]["timeZone"] == CALENDAR_TZ


def test_insert_get_patch_update_delete(calendar: CalendarHelper) -> None:
    body = timed(
        "2026-12-01T10:00:00+01:00",
        "2026-12-01T11:00:00+01:00",
        summary="planning",
        description="keep",
        location="room 1",
    )
    created = calendar.insert(body)
    assert created["kind"] == "calendar#event"
    assert created["status"] == "confirmed"
    assert created["summary"] == "planning"
    assert created["etag"] and created["iCalUID"] and created["created"] and created["updated"]
    assert calendar.get(created["id"]) == created

    patched = calendar.patch(created["id"], {"summary": "renamed"})
    assert patched["summary"] == "renamed"
    assert patched["description"] == "keep"  # patch keeps unnamed fields
    assert patched["etag"] != created["etag"]

    replaced = calendar.update(
        created["id"],
        timed("2026-12-01T12:00:00+01:00", "2026-12-01T13:00:00+01:00", summary="replaced"),
    )
    assert replaced["summary"] == "replaced"
    assert "description" not in replaced  # update replaces the whole resource
    assert replaced["start"]["dateTime"].startswith("2026-12-01T12:00:00")
    assert replaced["id"] == created["id"] and replaced["created"] == created["created"]

    calendar.delete(created["id"])
    assert calendar.get(created["id"])["status"] == "cancelled"
    assert calendar.list_all()[0] == []
    with pytest.raises(HttpError) as again:
        calendar.delete(created["id"])
    assert again.value.status_code == 410


def test_client_chosen_id_and_duplicate(calendar: CalendarHelper) -> None:
    body = timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00", id="abc12345")
    assert calendar.insert(body)["id"] == "abc12345"
    with pytest.raises(HttpError) as duplicate:
        calendar.insert(body)
    assert duplicate.value.status_code == 409
    assert _error_reason(duplicate.value) == "duplicate"


def test_all_day_event_and_transparency(calendar: CalendarHelper) -> None:
    created = calendar.insert(all_day("2026-12-24", "2026-12-27", transparency="transparent"))
    assert created["start"] == {"date": "2026-12-24"}
    assert created["end"] == {"date": "2026-12-27"}
    assert created["transparency"] == "transparent"


def test_show_deleted_and_incremental_deletion_stub(calendar: CalendarHelper) -> None:
    keep = calendar.insert(timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00"))
    gone = calendar.insert(timed("2026-12-02T10:00:00+01:00", "2026-12-02T11:00:00+01:00"))
    _, token = calendar.list_all()
    calendar.delete(gone["id"])
    assert [e["id"] for e in calendar.list_all()[0]] == [keep["id"]]
    with_deleted = {e["id"]: e["status"] for e in calendar.list_all(showDeleted=True)[0]}
    assert with_deleted == {keep["id"]: "confirmed", gone["id"]: "cancelled"}
    changed, _ = calendar.list_all(syncToken=token)
    assert [(e["id"], e["status"]) for e in changed] == [(gone["id"], "cancelled")]


def test_time_window_overlap_is_half_open(calendar: CalendarHelper) -> None:
    before = calendar.insert(timed("2026-12-01T08:00:00+01:00", "2026-12-01T09:00:00+01:00"))
    inside = calendar.insert(timed("2026-12-01T09:30:00+01:00", "2026-12-01T10:30:00+01:00"))
    spanning = calendar.insert(timed("2026-12-01T08:30:00+01:00", "2026-12-01T12:00:00+01:00"))
    after = calendar.insert(timed("2026-12-01T11:00:00+01:00", "2026-12-01T11:30:00+01:00"))
    items, _ = calendar.list_all(
        timeMin="2026-12-01T09:00:00+01:00", timeMax="2026-12-01T11:00:00+01:00"
    )
    ids = {e["id"] for e in items}
    assert ids == {inside["id"], spanning["id"]}
    assert before["id"] not in ids and after["id"] not in ids


def test_order_by_start_time_and_query_filter(calendar: CalendarHelper) -> None:
    late = calendar.insert(
        timed("2026-12-03T10:00:00+01:00", "2026-12-03T11:00:00+01:00", summary="Dentist")
    )
    early = calendar.insert(
        timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00", summary="Standup")
    )
    ordered, _ = calendar.list_all(singleEvents=True, orderBy="startTime")
    assert [e["id"] for e in ordered] == [early["id"], late["id"]]
    found, _ = calendar.list_all(q="dentist")
    assert [e["id"] for e in found] == [late["id"]]


def test_order_by_start_time_needs_single_events(calendar: CalendarHelper) -> None:
    with pytest.raises(HttpError) as refused:
        calendar.list_all(orderBy="startTime")
    assert refused.value.status_code == 400


def test_other_accounts_calendar_is_not_found(
    calendar: CalendarHelper, emulator: EmulatorServer
) -> None:
    emulator.control.create_calendar("bob@example.com", "UTC", "bob@example.com")
    for call in (
        calendar.service.calendars().get(calendarId="bob@example.com"),
        calendar.service.events().list(calendarId="bob@example.com"),
        calendar.service.events().insert(
            calendarId="bob@example.com",
            body=timed("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z", time_zone="UTC"),
        ),
    ):
        with pytest.raises(HttpError) as missing:
            call.execute()
        assert missing.value.status_code == 404
        assert _error_reason(missing.value) == "notFound"


def test_deleted_calendar_is_not_found(calendar: CalendarHelper, emulator: EmulatorServer) -> None:
    calendar.list_all()
    emulator.control.delete_calendar(ACCOUNT_EMAIL)
    with pytest.raises(HttpError) as missing:
        calendar.list_all()
    assert missing.value.status_code == 404


def test_control_writes_are_visible_through_the_api(
    calendar: CalendarHelper, emulator: EmulatorServer
) -> None:
    _, token = calendar.list_all()
    made = emulator.control.insert_event(
        ACCOUNT_EMAIL,
        timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00", summary="from control"),
    )
    emulator.control.patch_event(ACCOUNT_EMAIL, made["id"], {"summary": "patched"})
    changed, token = calendar.list_all(syncToken=token)
    assert [(e["id"], e["summary"]) for e in changed] == [(made["id"], "patched")]
    emulator.control.delete_event(ACCOUNT_EMAIL, made["id"])
    changed, _ = calendar.list_all(syncToken=token)
    assert [(e["id"], e["status"]) for e in changed] == [(made["id"], "cancelled")]


def test_free_busy_query_matches_reference(
    calendar: CalendarHelper, emulator: EmulatorServer
) -> None:
    calendar.insert(timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00"))
    calendar.insert(timed("2026-12-01T10:30:00+01:00", "2026-12-01T12:00:00+01:00"))
    calendar.insert(
        timed("2026-12-01T14:00:00+01:00", "2026-12-01T15:00:00+01:00", transparency="transparent")
    )
    calendar.insert(all_day("2026-12-02", "2026-12-03"))
    answer = (
        calendar.service.freebusy()
        .query(
            body={
                "timeMin": "2026-12-01T00:00:00Z",
                "timeMax": "2026-12-03T00:00:00Z",
                "items": [{"id": "primary"}, {"id": "nobody@example.com"}],
            }
        )
        .execute()
    )
    busy = answer["calendars"]["primary"]["busy"]
    assert busy == [
        {"start": "2026-12-01T09:00:00Z", "end": "2026-12-01T11:00:00Z"},
        {"start": "2026-12-01T23:00:00Z", "end": "2026-12-02T23:00:00Z"},
    ]
    reference = emulator.control.reference_busy(
        ACCOUNT_EMAIL, datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC)
    )
    assert [(s.isoformat(), e.isoformat()) for s, e in reference] == [
        ("2026-12-01T09:00:00+00:00", "2026-12-01T11:00:00+00:00"),
        ("2026-12-01T23:00:00+00:00", "2026-12-02T23:00:00+00:00"),
    ]
    assert answer["calendars"]["nobody@example.com"]["errors"][0]["reason"] == "notFound"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"summary": "no times"}, "required"),
        (timed("2026-12-01T11:00:00+01:00", "2026-12-01T10:00:00+01:00"), "timeRangeEmpty"),
        ({"start": {"date": "2026-12-01"}, "end": {"dateTime": "2026-12-01T10:00:00Z"}}, None),
        (timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00", id="UPPER"), None),
        (
            timed(
                "2026-12-01T10:00:00+01:00",
                "2026-12-01T11:00:00+01:00",
                recurrence=["RRULE:FREQ=SOMETIMES"],
            ),
            None,
        ),
    ],
)
def test_invalid_event_bodies(
    calendar: CalendarHelper, body: dict[str, Any], reason: str | None
) -> None:
    with pytest.raises(HttpError) as refused:
        calendar.insert(body)
    assert refused.value.status_code == 400
    if reason is not None:
        assert _error_reason(refused.value) == reason


def test_missing_event_is_not_found(calendar: CalendarHelper) -> None:
    for call in (
        calendar.get,
        calendar.delete,
        lambda event_id: calendar.patch(event_id, {"summary": "x"}),
    ):
        with pytest.raises(HttpError) as missing:
            call("doesnotexist1")
        assert missing.value.status_code == 404


def test_all_day_events_are_windowed_in_the_calendar_time_zone(calendar: CalendarHelper) -> None:
    day = calendar.insert(all_day("2026-12-02", "2026-12-03"))  # Berlin: 12-01 23:00Z..12-02 23:00Z
    assert [
        e["id"]
        for e in calendar.list_all(timeMin="2026-12-01T22:00:00Z", timeMax="2026-12-01T23:30:00Z")[
            0
        ]
    ] == [day["id"]]
    assert (
        calendar.list_all(timeMin="2026-12-02T23:00:00Z", timeMax="2026-12-03T12:00:00Z")[0] == []
    )
    assert (
        calendar.list_all(timeMin="2026-12-01T12:00:00Z", timeMax="2026-12-01T23:00:00Z")[0] == []
    )


def test_updated_min_includes_later_deletions_regardless_of_show_deleted(
    calendar: CalendarHelper, emulator: EmulatorServer
) -> None:
    old = calendar.insert(timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00"))
    doomed = calendar.insert(timed("2026-12-02T10:00:00+01:00", "2026-12-02T11:00:00+01:00"))
    emulator.control.advance_clock(3600)
    cutoff = emulator.control.clock()["now"]
    emulator.control.advance_clock(60)
    fresh = calendar.insert(timed("2026-12-03T10:00:00+01:00", "2026-12-03T11:00:00+01:00"))
    calendar.delete(doomed["id"])
    items, _ = calendar.list_all(updatedMin=cutoff)
    # Discovery doc: "entries deleted since this time will always be included regardless of
    # showDeleted".
    assert {e["id"]: e["status"] for e in items} == {
        fresh["id"]: "confirmed",
        doomed["id"]: "cancelled",
    }
    assert old["id"] not in {e["id"] for e in items}


def test_updated_min_with_single_events_returns_deleted_instances(
    calendar: CalendarHelper, emulator: EmulatorServer
) -> None:
    series = calendar.insert(
        timed(
            "2026-12-07T10:00:00+01:00",
            "2026-12-07T11:00:00+01:00",
            recurrence=["RRULE:FREQ=DAILY;COUNT=2"],
        )
    )
    emulator.control.advance_clock(60)
    cutoff = emulator.control.clock()["now"]
    emulator.control.advance_clock(60)
    calendar.delete(series["id"])
    items, _ = calendar.list_all(updatedMin=cutoff, singleEvents=True)
    assert sorted((e["id"], e["status"]) for e in items) == [
        (f"{series['id']}_20261207T090000Z", "cancelled"),
        (f"{series['id']}_20261208T090000Z", "cancelled"),
    ]


def test_ical_uid_filter(calendar: CalendarHelper) -> None:
    wanted = calendar.insert(timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00"))
    calendar.insert(timed("2026-12-02T10:00:00+01:00", "2026-12-02T11:00:00+01:00"))
    found, _ = calendar.list_all(iCalUID=wanted["iCalUID"])
    assert [e["id"] for e in found] == [wanted["id"]]


def test_extended_property_filters(calendar: CalendarHelper) -> None:
    tagged = calendar.insert(
        timed(
            "2026-12-01T10:00:00+01:00",
            "2026-12-01T11:00:00+01:00",
            extendedProperties={"private": {"team": "a"}, "shared": {"room": "x"}},
        )
    )
    calendar.insert(
        timed(
            "2026-12-02T10:00:00+01:00",
            "2026-12-02T11:00:00+01:00",
            extendedProperties={"private": {"team": "b"}},
        )
    )
    private, _ = calendar.list_all(privateExtendedProperty="team=a")
    assert [e["id"] for e in private] == [tagged["id"]]
    shared, _ = calendar.list_all(sharedExtendedProperty="room=x")
    assert [e["id"] for e in shared] == [tagged["id"]]
    both, _ = calendar.list_all(privateExtendedProperty=["team=a", "team=b"])
    assert both == []  # repeated constraints must all match
    with pytest.raises(HttpError) as malformed:
        calendar.list_all(privateExtendedProperty="no-equals-sign")
    assert malformed.value.status_code == 400


def test_optional_write_parameters_are_accepted(calendar: CalendarHelper) -> None:
    made = (
        calendar.service.events()
        .insert(
            calendarId="primary",
            sendUpdates="none",
            conferenceDataVersion=0,
            body=timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00"),
        )
        .execute()
    )
    calendar.service.events().patch(
        calendarId="primary", eventId=made["id"], sendUpdates="none", body={"summary": "x"}
    ).execute()
    calendar.service.events().delete(
        calendarId="primary", eventId=made["id"], sendUpdates="none"
    ).execute()


def test_calendar_ids_with_special_characters(
    calendar: CalendarHelper, emulator: EmulatorServer
) -> None:
    holiday = "en.german#holiday@group.v.calendar.google.com"
    emulator.control.create_calendar(holiday, "Europe/Berlin", ACCOUNT_EMAIL)
    emulator.control.insert_event(holiday, all_day("2026-12-25", "2026-12-26", summary="Christmas"))
    got = calendar.service.calendars().get(calendarId=holiday).execute()
    assert got["id"] == holiday
    items = calendar.service.events().list(calendarId=holiday).execute()["items"]
    assert [e["summary"] for e in items] == ["Christmas"]
