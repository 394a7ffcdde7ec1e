"""Recurring events through events.list(singleEvents=true) and events.instances."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from googleapiclient.errors import HttpError

from tests.emulator.conftest import CalendarHelper, all_day, timed

BERLIN = ZoneInfo("Europe/Berlin")


def _utc(value: dict[str, Any]) -> str:
    """An EventDateTime as a compact UTC stamp (as in instance ids)."""
    return datetime.fromisoformat(value["dateTime"]).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _local_hour(value: dict[str, Any], zone: ZoneInfo = BERLIN) -> str:
    return datetime.fromisoformat(value["dateTime"]).astimezone(zone).strftime("%Y-%m-%d %H:%M")


def _both_views(calendar: CalendarHelper, master_id: str, **params: Any) -> list[dict[str, Any]]:
    """Instances of one series via events.list(singleEvents) and events.instances; equal."""
    listed = [
        e
        for e in calendar.list_all(singleEvents=True, **params)[0]
        if e.get("recurringEventId") == master_id
    ]
    instances = calendar.instances(master_id, **params)
    assert [e["id"] for e in instances] == [e["id"] for e in listed]
    assert [(e["start"], e["end"], e["status"]) for e in instances] == [
        (e["start"], e["end"], e["status"]) for e in listed
    ]
    return instances


def _series(
    calendar: CalendarHelper,
    start: str,
    end: str,
    *rules: str,
    time_zone: str = "Europe/Berlin",
    **extra: Any,
) -> dict[str, Any]:
    return calendar.insert(timed(start, end, time_zone=time_zone, recurrence=list(rules), **extra))


def test_daily_count_across_spring_dst_keeps_local_time(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2027-03-26T09:00:00+01:00",
        "2027-03-26T09:30:00+01:00",
        "RRULE:FREQ=DAILY;COUNT=4",
    )
    instances = _both_views(calendar, master["id"])
    stamps = ["20270326T080000Z", "20270327T080000Z", "20270328T070000Z", "20270329T070000Z"]
    assert [e["id"] for e in instances] == [f"{master['id']}_{s}" for s in stamps]
    assert [_utc(e["start"]) for e in instances] == stamps
    assert {_local_hour(e["start"])[-5:] for e in instances} == {"09:00"}
    assert {_local_hour(e["end"])[-5:] for e in instances} == {"09:30"}
    for instance in instances:
        assert instance["recurringEventId"] == master["id"]
        assert _utc(instance["originalStartTime"]) == _utc(instance["start"])
        assert "recurrence" not in instance


def test_daily_across_autumn_dst(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2026-10-23T09:00:00+02:00",
        "2026-10-23T10:00:00+02:00",
        "RRULE:FREQ=DAILY;COUNT=4",
    )
    instances = _both_views(calendar, master["id"])
    assert [_utc(e["start"]) for e in instances] == [
        "20261023T070000Z",
        "20261024T070000Z",
        "20261025T080000Z",
        "20261026T080000Z",
    ]


def test_expansion_uses_the_masters_time_zone(calendar: CalendarHelper) -> None:
    new_york = ZoneInfo("America/New_York")
    master = _series(
        calendar,
        "2027-03-12T09:00:00-05:00",
        "2027-03-12T10:00:00-05:00",
        "RRULE:FREQ=DAILY;COUNT=4",
        time_zone="America/New_York",
    )
    instances = _both_views(calendar, master["id"])
    assert [_utc(e["start"]) for e in instances] == [
        "20270312T140000Z",
        "20270313T140000Z",
        "20270314T130000Z",
        "20270315T130000Z",
    ]
    assert {_local_hour(e["start"], new_york)[-5:] for e in instances} == {"09:00"}


def test_weekly_byday_until_is_inclusive(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2026-11-30T10:00:00+01:00",
        "2026-11-30T11:00:00+01:00",
        "RRULE:FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20261216T090000Z",
    )
    instances = _both_views(calendar, master["id"])
    assert [_local_hour(e["start"]) for e in instances] == [
        "2026-11-30 10:00",
        "2026-12-02 10:00",
        "2026-12-07 10:00",
        "2026-12-09 10:00",
        "2026-12-14 10:00",
        "2026-12-16 10:00",
    ]


def test_monthly_on_day_31_skips_short_months(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2026-12-31T10:00:00+01:00",
        "2026-12-31T11:00:00+01:00",
        "RRULE:FREQ=MONTHLY;BYMONTHDAY=31;COUNT=3",
    )
    instances = _both_views(calendar, master["id"])
    assert [_local_hour(e["start"])[:10] for e in instances] == [
        "2026-12-31",
        "2027-01-31",
        "2027-03-31",
    ]


def test_exdate_in_local_and_utc_form(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2026-12-07T10:00:00+01:00",
        "2026-12-07T11:00:00+01:00",
        "RRULE:FREQ=DAILY;COUNT=5",
        "EXDATE;TZID=Europe/Berlin:20261209T100000",
        "EXDATE:20261210T090000Z",
    )
    instances = _both_views(calendar, master["id"])
    assert [_local_hour(e["start"])[:10] for e in instances] == [
        "2026-12-07",
        "2026-12-08",
        "2026-12-11",
    ]


def test_all_day_weekly_series_uses_date_ids(calendar: CalendarHelper) -> None:
    master = calendar.insert(
        all_day("2026-12-04", "2026-12-05", recurrence=["RRULE:FREQ=WEEKLY;COUNT=3"])
    )
    instances = _both_views(calendar, master["id"])
    assert [e["id"] for e in instances] == [
        f"{master['id']}_20261204",
        f"{master['id']}_20261211",
        f"{master['id']}_20261218",
    ]
    assert [e["start"] for e in instances] == [
        {"date": "2026-12-04"},
        {"date": "2026-12-11"},
        {"date": "2026-12-18"},
    ]
    assert instances[1]["originalStartTime"] == {"date": "2026-12-11"}


def test_moved_instance_keeps_id_and_original_start(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2026-12-07T10:00:00+01:00",
        "2026-12-07T11:00:00+01:00",
        "RRULE:FREQ=DAILY;COUNT=3",
    )
    moved_id = f"{master['id']}_20261208T090000Z"
    calendar.patch(
        moved_id,
        {
            "start": {"dateTime": "2026-12-08T15:00:00+01:00"},
            "end": {"dateTime": "2026-12-08T16:00:00+01:00"},
            "summary": "moved",
        },
    )
    instances = _both_views(calendar, master["id"])
    moved = next(e for e in instances if e["id"] == moved_id)
    assert _local_hour(moved["start"]) == "2026-12-08 15:00"
    assert _utc(moved["originalStartTime"]) == "20261208T090000Z"
    assert moved["summary"] == "moved"
    assert calendar.get(moved_id)["summary"] == "moved"
    assert len(instances) == 3


def test_instance_moved_into_and_out_of_a_window(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2026-12-07T10:00:00+01:00",
        "2026-12-07T11:00:00+01:00",
        "RRULE:FREQ=DAILY;COUNT=3",
    )
    moved_id = f"{master['id']}_20261207T090000Z"
    calendar.patch(
        moved_id,
        {
            "start": {"dateTime": "2026-12-20T10:00:00+01:00"},
            "end": {"dateTime": "2026-12-20T11:00:00+01:00"},
        },
    )
    window = {"timeMin": "2026-12-19T00:00:00Z", "timeMax": "2026-12-21T00:00:00Z"}
    assert [e["id"] for e in _both_views(calendar, master["id"], **window)] == [moved_id]
    original_day = {"timeMin": "2026-12-07T00:00:00Z", "timeMax": "2026-12-08T00:00:00Z"}
    assert _both_views(calendar, master["id"], **original_day) == []


def test_cancelled_instance(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2026-12-07T10:00:00+01:00",
        "2026-12-07T11:00:00+01:00",
        "RRULE:FREQ=DAILY;COUNT=3",
    )
    cancelled_id = f"{master['id']}_20261208T090000Z"
    calendar.delete(cancelled_id)
    assert [e["id"] for e in _both_views(calendar, master["id"])] == [
        f"{master['id']}_20261207T090000Z",
        f"{master['id']}_20261209T090000Z",
    ]
    with_deleted = _both_views(calendar, master["id"], showDeleted=True)
    assert {e["id"]: e["status"] for e in with_deleted}[cancelled_id] == "cancelled"
    assert calendar.get(cancelled_id)["status"] == "cancelled"


def test_series_split_this_and_following(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2026-12-07T10:00:00+01:00",
        "2026-12-07T11:00:00+01:00",
        "RRULE:FREQ=DAILY;COUNT=6",
        summary="old",
    )
    _, token = calendar.list_all(singleEvents=True)
    calendar.patch(master["id"], {"recurrence": ["RRULE:FREQ=DAILY;UNTIL=20261209T225959Z"]})
    follower = _series(
        calendar,
        "2026-12-10T14:00:00+01:00",
        "2026-12-10T15:00:00+01:00",
        "RRULE:FREQ=DAILY;COUNT=3",
        summary="new",
    )
    listed, _ = calendar.list_all(singleEvents=True, orderBy="startTime")
    assert [(_local_hour(e["start"]), e["summary"]) for e in listed] == [
        ("2026-12-07 10:00", "old"),
        ("2026-12-08 10:00", "old"),
        ("2026-12-09 10:00", "old"),
        ("2026-12-10 14:00", "new"),
        ("2026-12-11 14:00", "new"),
        ("2026-12-12 14:00", "new"),
    ]
    changed, _ = calendar.list_all(singleEvents=True, syncToken=token)
    statuses = {e["id"]: e["status"] for e in changed}
    for stamp in ("20261210T090000Z", "20261211T090000Z", "20261212T090000Z"):
        assert statuses[f"{master['id']}_{stamp}"] == "cancelled"
    assert sum(1 for e in changed if e.get("recurringEventId") == follower["id"]) == 3


def test_rule_change_cancels_vanished_instances_incrementally(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2026-12-07T10:00:00+01:00",
        "2026-12-07T11:00:00+01:00",
        "RRULE:FREQ=DAILY;COUNT=4",
    )
    _, token = calendar.list_all(singleEvents=True)
    calendar.patch(master["id"], {"recurrence": ["RRULE:FREQ=DAILY;COUNT=2"]})
    changed, _ = calendar.list_all(singleEvents=True, syncToken=token)
    cancelled = sorted(e["id"] for e in changed if e["status"] == "cancelled")
    assert cancelled == [f"{master['id']}_20261209T090000Z", f"{master['id']}_20261210T090000Z"]
    for stub in changed:
        if stub["status"] == "cancelled":
            assert stub["recurringEventId"] == master["id"]
            assert "originalStartTime" in stub


def test_deleted_series_disappears_and_syncs_as_cancelled(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2026-12-07T10:00:00+01:00",
        "2026-12-07T11:00:00+01:00",
        "RRULE:FREQ=DAILY;COUNT=3",
    )
    items, token = calendar.list_all(singleEvents=True)
    assert len(items) == 3
    calendar.delete(master["id"])
    assert calendar.list_all(singleEvents=True)[0] == []
    changed, _ = calendar.list_all(singleEvents=True, syncToken=token)
    assert sorted((e["id"], e["status"]) for e in changed) == sorted(
        (e["id"], "cancelled") for e in items
    )


def test_master_view_lists_master_and_exceptions(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2026-12-07T10:00:00+01:00",
        "2026-12-07T11:00:00+01:00",
        "RRULE:FREQ=DAILY;COUNT=3",
    )
    moved_id = f"{master['id']}_20261208T090000Z"
    calendar.patch(moved_id, {"summary": "changed"})
    items, _ = calendar.list_all(singleEvents=False)
    by_id = {e["id"]: e for e in items}
    assert by_id[master["id"]]["recurrence"] == ["RRULE:FREQ=DAILY;COUNT=3"]
    assert by_id[moved_id]["recurringEventId"] == master["id"]
    assert _utc(by_id[moved_id]["originalStartTime"]) == "20261208T090000Z"
    assert set(by_id) == {master["id"], moved_id}


def test_endless_series_is_bounded_and_windowed(calendar: CalendarHelper) -> None:
    master = _series(
        calendar, "2026-12-07T10:00:00+01:00", "2026-12-07T11:00:00+01:00", "RRULE:FREQ=DAILY"
    )
    window = {"timeMin": "2027-01-01T00:00:00Z", "timeMax": "2027-01-08T00:00:00Z"}
    assert len(_both_views(calendar, master["id"], **window)) == 7
    everything, _ = calendar.list_all(singleEvents=True, maxResults=2500)
    assert 300 < len(everything) < 2000  # a finite horizon, not endless


@pytest.mark.parametrize("instance_suffix", ["20261208T100000Z", "20261208", "garbage"])
def test_unknown_instance_id_is_not_found(calendar: CalendarHelper, instance_suffix: str) -> None:
    master = _series(
        calendar,
        "2026-12-07T10:00:00+01:00",
        "2026-12-07T11:00:00+01:00",
        "RRULE:FREQ=DAILY;COUNT=3",
    )
    with pytest.raises(HttpError) as missing:
        calendar.get(f"{master['id']}_{instance_suffix}")
    assert missing.value.status_code == 404


def test_instances_are_paged(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2026-12-07T10:00:00+01:00",
        "2026-12-07T11:00:00+01:00",
        "RRULE:FREQ=DAILY;COUNT=5",
    )
    sizes, ids = [], []
    page_token = None
    while True:
        page = (
            calendar.service.events()
            .instances(
                calendarId="primary", eventId=master["id"], maxResults=2, pageToken=page_token
            )
            .execute()
        )
        sizes.append(len(page["items"]))
        ids.extend(item["id"] for item in page["items"])
        page_token = page.get("nextPageToken")
        if page_token is None:
            break
    assert sizes == [2, 2, 1]
    assert ids == [e["id"] for e in calendar.instances(master["id"])]


def test_update_of_an_instance_makes_an_exception(calendar: CalendarHelper) -> None:
    master = _series(
        calendar,
        "2026-12-07T10:00:00+01:00",
        "2026-12-07T11:00:00+01:00",
        "RRULE:FREQ=DAILY;COUNT=3",
        summary="daily",
    )
    instance_id = f"{master['id']}_20261209T090000Z"
    updated = calendar.update(
        instance_id,
        timed(
            "2026-12-09T12:00:00+01:00",
            "2026-12-09T12:30:00+01:00",
            summary="replaced",
            transparency="transparent",
        ),
    )
    assert updated["id"] == instance_id and updated["recurringEventId"] == master["id"]
    instances = {e["id"]: e for e in _both_views(calendar, master["id"])}
    assert instances[instance_id]["summary"] == "replaced"
    assert instances[instance_id]["transparency"] == "transparent"
    assert _local_hour(instances[instance_id]["end"]) == "2026-12-09 12:30"
    others = [e for i, e in instances.items() if i != instance_id]
    assert {e["summary"] for e in others} == {"daily"}
