"""Recurrence expansion of the emulator.

Expected local/UTC times were checked against GNU date's tz handling and weekday tables
(DST 2026: Europe/Berlin Mar 29 / Oct 25, America/New_York Mar 8 / Nov 1), not computed
with the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.recurrence import expand_series, instance_id, original_starts

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


WIDE = {"window_start": utc(2026, 1, 1), "window_end": utc(2028, 1, 1)}


def timed_master(
    recurrence: list[str],
    start: str = "2026-11-02T09:00:00+01:00",
    end: str = "2026-11-02T10:00:00+01:00",
    zone: str = BERLIN,
    **fields: Any,
) -> dict[str, Any]:
    master: dict[str, Any] = {
        "id": "m1",
        "status": "confirmed",
        "summary": "Standup",
        "start": {"dateTime": start, "timeZone": zone},
        "end": {"dateTime": end, "timeZone": zone},
        "recurrence": recurrence,
    }
    master.update(fields)
    return master


def all_day_master(
    recurrence: list[str], start: str = "2026-11-02", end: str = "2026-11-03", **fields: Any
) -> dict[str, Any]:
    master: dict[str, Any] = {
        "id": "ad",
        "start": {"date": start},
        "end": {"date": end},
        "recurrence": recurrence,
        "_calendarTimeZone": BERLIN,
    }
    master.update(fields)
    return master


def starts(instances: list[dict[str, Any]]) -> list[str]:
    return [i["start"].get("dateTime") or i["start"]["date"] for i in instances]


def ids(instances: list[dict[str, Any]]) -> list[str]:
    return [i["id"] for i in instances]


# --- rule shapes -------------------------------------------------------------------------

RULE_CASES = [
    pytest.param(
        ["RRULE:FREQ=DAILY;COUNT=3"],
        ["2026-11-02T09:00:00+01:00", "2026-11-03T09:00:00+01:00", "2026-11-04T09:00:00+01:00"],
        id="daily-count",
    ),
    pytest.param(
        ["RRULE:FREQ=DAILY;INTERVAL=2;COUNT=3"],
        ["2026-11-02T09:00:00+01:00", "2026-11-04T09:00:00+01:00", "2026-11-06T09:00:00+01:00"],
        id="daily-interval",
    ),
    pytest.param(
        # UNTIL is inclusive: 2026-11-04 08:00Z is exactly the third start.
        ["RRULE:FREQ=DAILY;UNTIL=20261104T080000Z"],
        ["2026-11-02T09:00:00+01:00", "2026-11-03T09:00:00+01:00", "2026-11-04T09:00:00+01:00"],
        id="daily-until-inclusive",
    ),
    pytest.param(
        ["RRULE:FREQ=DAILY;UNTIL=20261104T075959Z"],
        ["2026-11-02T09:00:00+01:00", "2026-11-03T09:00:00+01:00"],
        id="daily-until-one-second-early",
    ),
    pytest.param(
        ["RRULE:FREQ=WEEKLY;BYDAY=MO,WE,FR;UNTIL=20261109T225959Z"],
        [
            "2026-11-02T09:00:00+01:00",
            "2026-11-04T09:00:00+01:00",
            "2026-11-06T09:00:00+01:00",
            "2026-11-09T09:00:00+01:00",
        ],
        id="weekly-byday-until",
    ),
    pytest.param(
        ["RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=3"],
        ["2026-11-02T09:00:00+01:00", "2026-11-16T09:00:00+01:00", "2026-11-30T09:00:00+01:00"],
        id="biweekly",
    ),
    pytest.param(
        ["RRULE:FREQ=MONTHLY;BYDAY=2TU;COUNT=4"],
        [
            "2026-11-10T09:00:00+01:00",
            "2026-12-08T09:00:00+01:00",
            "2027-01-12T09:00:00+01:00",
            "2027-02-09T09:00:00+01:00",
        ],
        id="monthly-second-tuesday",
    ),
    pytest.param(
        ["RRULE:FREQ=MONTHLY;BYDAY=-1FR;COUNT=4"],
        [
            "2026-11-27T09:00:00+01:00",
            "2026-12-25T09:00:00+01:00",
            "2027-01-29T09:00:00+01:00",
            "2027-02-26T09:00:00+01:00",
        ],
        id="monthly-last-friday",
    ),
    pytest.param(
        # Months without a 31st are skipped, as RFC 5545 says.
        ["RRULE:FREQ=MONTHLY;BYMONTHDAY=31;COUNT=3"],
        ["2026-12-31T09:00:00+01:00", "2027-01-31T09:00:00+01:00", "2027-03-31T09:00:00+02:00"],
        id="monthly-31st",
    ),
    pytest.param(
        ["RRULE:FREQ=YEARLY;COUNT=2"],
        ["2026-11-02T09:00:00+01:00", "2027-11-02T09:00:00+01:00"],
        id="yearly",
    ),
]


@pytest.mark.parametrize(("recurrence", "expected"), RULE_CASES)
def test_rule_shapes(recurrence: list[str], expected: list[str]) -> None:
    assert starts(expand_series(timed_master(recurrence), {}, **WIDE)) == expected


EXCLUSION_CASES = [
    pytest.param(["EXDATE;TZID=Europe/Berlin:20261103T090000"], id="exdate-tzid"),
    pytest.param(["EXDATE:20261103T080000Z"], id="exdate-utc"),
    pytest.param(["EXDATE;VALUE=DATE:20261103"], id="exdate-date"),
    pytest.param(["EXRULE:FREQ=WEEKLY;BYDAY=TU"], id="exrule"),
]


@pytest.mark.parametrize("extra", EXCLUSION_CASES)
def test_exclusions_remove_the_tuesday(extra: list[str]) -> None:
    master = timed_master(["RRULE:FREQ=DAILY;COUNT=4", *extra])
    assert starts(expand_series(master, {}, **WIDE)) == [
        "2026-11-02T09:00:00+01:00",
        "2026-11-04T09:00:00+01:00",
        "2026-11-05T09:00:00+01:00",
    ]


def test_exdate_comma_list_and_several_lines() -> None:
    master = timed_master(
        [
            "RRULE:FREQ=DAILY;COUNT=5",
            "EXDATE;TZID=Europe/Berlin:20261103T090000,20261105T090000",
            "EXDATE:20261106T080000Z",
        ]
    )
    assert starts(expand_series(master, {}, **WIDE)) == [
        "2026-11-02T09:00:00+01:00",
        "2026-11-04T09:00:00+01:00",
    ]


def test_exdate_that_is_no_occurrence_changes_nothing() -> None:
    master = timed_master(["RRULE:FREQ=DAILY;COUNT=2", "EXDATE:20261103T090000Z"])
    assert len(expand_series(master, {}, **WIDE)) == 2


@pytest.mark.parametrize(
    ("rdate", "expected_extra"),
    [
        ("RDATE;TZID=Europe/Berlin:20261120T140000", "2026-11-20T14:00:00+01:00"),
        ("RDATE:20261120T130000Z", "2026-11-20T14:00:00+01:00"),
        ("RDATE;VALUE=DATE:20261120", "2026-11-20T09:00:00+01:00"),
    ],
)
def test_rdate_adds_an_instance(rdate: str, expected_extra: str) -> None:
    master = timed_master(["RRULE:FREQ=DAILY;COUNT=2", rdate])
    instances = expand_series(master, {}, **WIDE)
    assert starts(instances) == [
        "2026-11-02T09:00:00+01:00",
        "2026-11-03T09:00:00+01:00",
        expected_extra,
    ]
    extra = instances[-1]
    assert extra["end"]["dateTime"] == expected_extra.replace("T14", "T15").replace("T09", "T10")
    assert extra["originalStartTime"]["dateTime"] == expected_extra


def test_rdate_only_series_and_comma_list() -> None:
    master = timed_master(["RDATE:20261110T080000Z,20261112T080000Z"])
    assert ids(expand_series(master, {}, **WIDE)) == ["m1_20261110T080000Z", "m1_20261112T080000Z"]


# --- instance shape ----------------------------------------------------------------------


def test_instance_fields() -> None:
    master = timed_master(["RRULE:FREQ=DAILY;COUNT=2"], attendees=[{"email": "a@x", "self": True}])
    first, second = expand_series(master, {}, **WIDE)
    assert second == {
        "id": "m1_20261103T080000Z",
        "status": "confirmed",
        "summary": "Standup",
        "recurringEventId": "m1",
        "originalStartTime": {"dateTime": "2026-11-03T09:00:00+01:00", "timeZone": BERLIN},
        "start": {"dateTime": "2026-11-03T09:00:00+01:00", "timeZone": BERLIN},
        "end": {"dateTime": "2026-11-03T10:00:00+01:00", "timeZone": BERLIN},
        "attendees": [{"email": "a@x", "self": True}],
    }
    # Instances are independent copies: editing one leaves master and siblings alone.
    first["attendees"][0]["responseStatus"] = "declined"
    assert "responseStatus" not in master["attendees"][0]
    assert "responseStatus" not in second["attendees"][0]
    assert "recurrence" in master


def test_master_start_written_in_utc_expands_in_its_time_zone() -> None:
    master = timed_master(
        ["RRULE:FREQ=DAILY;COUNT=2"],
        start="2026-11-02T08:00:00Z",
        end="2026-11-02T08:30:00Z",
    )
    instances = expand_series(master, {}, **WIDE)
    assert [(i["start"]["dateTime"], i["end"]["dateTime"]) for i in instances] == [
        ("2026-11-02T09:00:00+01:00", "2026-11-02T09:30:00+01:00"),
        ("2026-11-03T09:00:00+01:00", "2026-11-03T09:30:00+01:00"),
    ]


def test_offsetless_start_is_read_in_the_time_zone() -> None:
    master = timed_master(
        ["RRULE:FREQ=DAILY;COUNT=1"], start="2026-11-02T09:00:00", end="2026-11-02T10:00:00"
    )
    assert ids(expand_series(master, {}, **WIDE)) == ["m1_20261102T080000Z"]


def test_calendar_time_zone_is_the_fallback_zone() -> None:
    master = timed_master(
        ["RRULE:FREQ=DAILY;COUNT=1"],
        start="2026-11-02T09:00:00",
        end="2026-11-02T10:00:00",
        _calendarTimeZone=NEW_YORK,
    )
    del master["start"]["timeZone"], master["end"]["timeZone"]
    (instance,) = expand_series(master, {}, **WIDE)
    assert instance["start"] == {"dateTime": "2026-11-02T09:00:00-05:00", "timeZone": NEW_YORK}
    assert instance["id"] == "m1_20261102T140000Z"


def test_multi_day_timed_duration() -> None:
    master = timed_master(["RRULE:FREQ=WEEKLY;COUNT=2"], end="2026-11-03T11:30:00+01:00")
    assert [i["end"]["dateTime"] for i in expand_series(master, {}, **WIDE)] == [
        "2026-11-03T11:30:00+01:00",
        "2026-11-10T11:30:00+01:00",
    ]


# --- DST -----------------------------------------------------------------------------------

DST_CASES = [
    pytest.param(
        BERLIN,
        "2026-10-24T09:00:00+02:00",
        "2026-10-24T09:30:00+02:00",
        [
            ("m1_20261024T070000Z", "2026-10-24T09:00:00+02:00", "2026-10-24T09:30:00+02:00"),
            ("m1_20261025T080000Z", "2026-10-25T09:00:00+01:00", "2026-10-25T09:30:00+01:00"),
            ("m1_20261026T080000Z", "2026-10-26T09:00:00+01:00", "2026-10-26T09:30:00+01:00"),
        ],
        id="berlin-autumn",
    ),
    pytest.param(
        BERLIN,
        "2026-03-28T09:00:00+01:00",
        "2026-03-28T09:30:00+01:00",
        [
            ("m1_20260328T080000Z", "2026-03-28T09:00:00+01:00", "2026-03-28T09:30:00+01:00"),
            ("m1_20260329T070000Z", "2026-03-29T09:00:00+02:00", "2026-03-29T09:30:00+02:00"),
            ("m1_20260330T070000Z", "2026-03-30T09:00:00+02:00", "2026-03-30T09:30:00+02:00"),
        ],
        id="berlin-spring",
    ),
    pytest.param(
        NEW_YORK,
        "2026-10-31T09:00:00-04:00",
        "2026-10-31T09:30:00-04:00",
        [
            ("m1_20261031T130000Z", "2026-10-31T09:00:00-04:00", "2026-10-31T09:30:00-04:00"),
            ("m1_20261101T140000Z", "2026-11-01T09:00:00-05:00", "2026-11-01T09:30:00-05:00"),
            ("m1_20261102T140000Z", "2026-11-02T09:00:00-05:00", "2026-11-02T09:30:00-05:00"),
        ],
        id="new-york-autumn",
    ),
    pytest.param(
        NEW_YORK,
        "2026-03-07T09:00:00-05:00",
        "2026-03-07T09:30:00-05:00",
        [
            ("m1_20260307T140000Z", "2026-03-07T09:00:00-05:00", "2026-03-07T09:30:00-05:00"),
            ("m1_20260308T130000Z", "2026-03-08T09:00:00-04:00", "2026-03-08T09:30:00-04:00"),
            ("m1_20260309T130000Z", "2026-03-09T09:00:00-04:00", "2026-03-09T09:30:00-04:00"),
        ],
        id="new-york-spring",
    ),
]


@pytest.mark.parametrize(("zone", "start", "end", "expected"), DST_CASES)
def test_daily_series_keeps_local_time_across_dst(
    zone: str, start: str, end: str, expected: list[tuple[str, str, str]]
) -> None:
    master = timed_master(["RRULE:FREQ=DAILY;COUNT=3"], start=start, end=end, zone=zone)
    instances = expand_series(master, {}, **WIDE)
    assert [(i["id"], i["start"]["dateTime"], i["end"]["dateTime"]) for i in instances] == expected
    assert all(i["start"]["timeZone"] == zone for i in instances)


def test_duration_is_wall_clock_on_the_dst_night() -> None:
    # 01:00-04:00 local: on 2026-10-25 (Berlin) that is four real hours, still ending at 04:00.
    master = timed_master(
        ["RRULE:FREQ=DAILY;COUNT=2"],
        start="2026-10-24T01:00:00+02:00",
        end="2026-10-24T04:00:00+02:00",
    )
    assert [
        (i["start"]["dateTime"], i["end"]["dateTime"]) for i in expand_series(master, {}, **WIDE)
    ] == [
        ("2026-10-24T01:00:00+02:00", "2026-10-24T04:00:00+02:00"),
        ("2026-10-25T01:00:00+02:00", "2026-10-25T04:00:00+01:00"),
    ]


def test_exdate_in_utc_after_dst_change_uses_the_new_offset() -> None:
    master = timed_master(
        ["RRULE:FREQ=DAILY;COUNT=3", "EXDATE:20261025T080000Z"],
        start="2026-10-24T09:00:00+02:00",
        end="2026-10-24T10:00:00+02:00",
    )
    assert ids(expand_series(master, {}, **WIDE)) == ["m1_20261024T070000Z", "m1_20261026T080000Z"]


def test_until_in_utc_across_dst() -> None:
    # 2026-10-26 09:00 Berlin is 08:00Z; an UNTIL of 07:30Z (still before it) stops the day before.
    master = timed_master(
        ["RRULE:FREQ=DAILY;UNTIL=20261026T073000Z"],
        start="2026-10-24T09:00:00+02:00",
        end="2026-10-24T10:00:00+02:00",
    )
    assert ids(expand_series(master, {}, **WIDE)) == ["m1_20261024T070000Z", "m1_20261025T080000Z"]


# --- windows -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window_start", "window_end", "expected"),
    [
        # Instance 2026-11-03 08:00Z-09:00Z.
        (utc(2026, 11, 3, 8, 30), utc(2026, 11, 3, 8, 45), ["m1_20261103T080000Z"]),
        (utc(2026, 11, 3, 9), utc(2026, 11, 4), []),  # ends exactly at window start
        (utc(2026, 11, 2, 12), utc(2026, 11, 3, 8), []),  # starts exactly at window end
        (utc(2026, 11, 2, 12), utc(2026, 11, 3, 8, 0, 1), ["m1_20261103T080000Z"]),
        (utc(2026, 11, 1), utc(2026, 11, 4), ["m1_20261102T080000Z", "m1_20261103T080000Z"]),
    ],
)
def test_window_overlap(window_start: datetime, window_end: datetime, expected: list[str]) -> None:
    master = timed_master(["RRULE:FREQ=DAILY;COUNT=5"])
    window = {"window_start": window_start, "window_end": window_end}
    assert ids(expand_series(master, {}, **window)) == expected


def test_endless_series_far_in_the_future_is_bounded_by_the_window() -> None:
    master = timed_master(["RRULE:FREQ=DAILY"])
    instances = expand_series(master, {}, window_start=utc(2040, 1, 1), window_end=utc(2040, 1, 8))
    assert ids(instances)[0] == "m1_20400101T080000Z"
    assert len(instances) == 7


def test_naive_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        expand_series(
            timed_master(["RRULE:FREQ=DAILY"]),
            {},
            window_start=datetime(2026, 1, 1),
            window_end=utc(2026, 2, 1),
        )


def test_original_starts() -> None:
    master = timed_master(["RRULE:FREQ=DAILY;COUNT=5", "EXDATE:20261103T080000Z"])
    assert original_starts(master, utc(2026, 11, 2, 8, 30), utc(2026, 11, 4, 8, 30)) == [
        {"dateTime": "2026-11-02T09:00:00+01:00", "timeZone": BERLIN},
        {"dateTime": "2026-11-04T09:00:00+01:00", "timeZone": BERLIN},
    ]


# --- exceptions ----------------------------------------------------------------------------


def moved(instance_key: str, original: str, start: str, end: str, **fields: Any) -> dict[str, Any]:
    exception: dict[str, Any] = {
        "id": instance_key,
        "recurringEventId": "m1",
        "originalStartTime": {"dateTime": original, "timeZone": BERLIN},
        "start": {"dateTime": start, "timeZone": BERLIN},
        "end": {"dateTime": end, "timeZone": BERLIN},
        "summary": "Moved standup",
    }
    exception.update(fields)
    return exception


def test_exception_replaces_generated_instance_in_place() -> None:
    key = "m1_20261103T080000Z"
    exception = moved(
        key, "2026-11-03T09:00:00+01:00", "2026-11-03T13:00:00+01:00", "2026-11-03T14:00:00+01:00"
    )
    instances = expand_series(timed_master(["RRULE:FREQ=DAILY;COUNT=3"]), {key: exception}, **WIDE)
    assert ids(instances) == ["m1_20261102T080000Z", key, "m1_20261104T080000Z"]
    assert instances[1]["summary"] == "Moved standup"
    assert instances[1]["start"]["dateTime"] == "2026-11-03T13:00:00+01:00"
    assert instances[1]["originalStartTime"]["dateTime"] == "2026-11-03T09:00:00+01:00"


def test_exception_moved_into_the_window_is_included() -> None:
    key = "m1_20261110T080000Z"  # original start far outside the window
    exception = moved(
        key, "2026-11-10T09:00:00+01:00", "2026-11-03T15:00:00+01:00", "2026-11-03T16:00:00+01:00"
    )
    window = {"window_start": utc(2026, 11, 3), "window_end": utc(2026, 11, 4)}
    master = timed_master(["RRULE:FREQ=DAILY;COUNT=20"])
    instances = expand_series(master, {key: exception}, **window)
    assert ids(instances) == ["m1_20261103T080000Z", key]


def test_exception_moved_out_of_the_window_is_left_out() -> None:
    key = "m1_20261103T080000Z"
    exception = moved(
        key, "2026-11-03T09:00:00+01:00", "2026-11-20T09:00:00+01:00", "2026-11-20T10:00:00+01:00"
    )
    window = {"window_start": utc(2026, 11, 3), "window_end": utc(2026, 11, 4)}
    master = timed_master(["RRULE:FREQ=DAILY;COUNT=20"])
    instances = expand_series(master, {key: exception}, **window)
    assert instances == []


def test_cancelled_exception_yields_cancelled_instance_at_its_original_time() -> None:
    key = "m1_20261103T080000Z"
    tombstone = {
        "id": key,
        "status": "cancelled",
        "recurringEventId": "m1",
        "originalStartTime": {"dateTime": "2026-11-03T09:00:00+01:00", "timeZone": BERLIN},
    }
    instances = expand_series(timed_master(["RRULE:FREQ=DAILY;COUNT=3"]), {key: tombstone}, **WIDE)
    assert [(i["id"], i.get("status")) for i in instances] == [
        ("m1_20261102T080000Z", "confirmed"),
        (key, "cancelled"),
        ("m1_20261104T080000Z", "confirmed"),
    ]
    assert instances[1]["start"]["dateTime"] == "2026-11-03T09:00:00+01:00"
    outside = expand_series(
        timed_master(["RRULE:FREQ=DAILY;COUNT=3"]),
        {key: tombstone},
        window_start=utc(2026, 11, 4),
        window_end=utc(2026, 11, 5),
    )
    assert ids(outside) == ["m1_20261104T080000Z"]


def test_tombstone_without_original_start_is_matched_by_its_key() -> None:
    key = "m1_20261103T080000Z"
    instances = expand_series(
        timed_master(["RRULE:FREQ=DAILY;COUNT=3"]),
        {key: {"id": key, "status": "cancelled"}},
        **WIDE,
    )
    assert instances[1]["status"] == "cancelled"
    assert instances[1]["recurringEventId"] == "m1"


def test_exception_of_an_occurrence_the_series_no_longer_has_is_ignored() -> None:
    key = "m1_20261110T080000Z"  # the series was shortened to three days since
    exception = moved(
        key, "2026-11-10T09:00:00+01:00", "2026-11-10T11:00:00+01:00", "2026-11-10T12:00:00+01:00"
    )
    instances = expand_series(timed_master(["RRULE:FREQ=DAILY;COUNT=3"]), {key: exception}, **WIDE)
    assert key not in ids(instances)
    assert len(instances) == 3


def test_series_split_has_no_gap_and_no_duplicate() -> None:
    # "This and following" from 2026-11-05: A ends the day before, B starts that day at 10:00.
    master_a = timed_master(["RRULE:FREQ=DAILY;UNTIL=20261104T225959Z"])
    master_b = timed_master(
        ["RRULE:FREQ=DAILY"],
        start="2026-11-05T10:00:00+01:00",
        end="2026-11-05T11:00:00+01:00",
    )
    master_b["id"] = "m2"
    window = {"window_start": utc(2026, 11, 1), "window_end": utc(2026, 11, 9)}
    union = expand_series(master_a, {}, **window) + expand_series(master_b, {}, **window)
    days = [i["start"]["dateTime"][:10] for i in union]
    assert days == [f"2026-11-0{day}" for day in range(2, 9)]
    assert ids(union)[2:4] == ["m1_20261104T080000Z", "m2_20261105T090000Z"]


# --- all-day ------------------------------------------------------------------------------


def test_all_day_daily_until_date() -> None:
    master = all_day_master(["RRULE:FREQ=DAILY;UNTIL=20261104"])
    instances = expand_series(master, {}, **WIDE)
    assert [(i["id"], i["start"], i["end"], i["originalStartTime"]) for i in instances] == [
        ("ad_20261102", {"date": "2026-11-02"}, {"date": "2026-11-03"}, {"date": "2026-11-02"}),
        ("ad_20261103", {"date": "2026-11-03"}, {"date": "2026-11-04"}, {"date": "2026-11-03"}),
        ("ad_20261104", {"date": "2026-11-04"}, {"date": "2026-11-05"}, {"date": "2026-11-04"}),
    ]


def test_all_day_until_in_utc_form() -> None:
    # 2026-11-03T23:00Z is midnight starting Nov 4 in Berlin: Nov 4 is still included.
    master = all_day_master(["RRULE:FREQ=DAILY;UNTIL=20261103T230000Z"])
    assert ids(expand_series(master, {}, **WIDE))[-1] == "ad_20261104"


def test_all_day_multi_day_weekly_with_exdate_and_rdate() -> None:
    master = all_day_master(
        ["RRULE:FREQ=WEEKLY;COUNT=3", "EXDATE;VALUE=DATE:20261109", "RDATE;VALUE=DATE:20261111"],
        end="2026-11-04",
    )
    instances = expand_series(master, {}, **WIDE)
    assert [(i["start"]["date"], i["end"]["date"]) for i in instances] == [
        ("2026-11-02", "2026-11-04"),
        ("2026-11-11", "2026-11-13"),
        ("2026-11-16", "2026-11-18"),
    ]


@pytest.mark.parametrize(
    ("window_start", "window_end", "expected"),
    [
        # Berlin day 2026-11-03 is 2026-11-02T23:00Z .. 2026-11-03T23:00Z.
        (utc(2026, 11, 2, 23), utc(2026, 11, 2, 23, 30), ["ad_20261103"]),
        (utc(2026, 11, 2, 22, 30), utc(2026, 11, 2, 23), ["ad_20261102"]),
        (utc(2026, 11, 3, 22, 59), utc(2026, 11, 3, 23), ["ad_20261103"]),
    ],
)
def test_all_day_window_uses_the_calendar_day(
    window_start: datetime, window_end: datetime, expected: list[str]
) -> None:
    master = all_day_master(["RRULE:FREQ=DAILY;COUNT=5"])
    window = {"window_start": window_start, "window_end": window_end}
    assert ids(expand_series(master, {}, **window)) == expected


def test_all_day_cancelled_exception() -> None:
    master = all_day_master(["RRULE:FREQ=DAILY;COUNT=3"])
    key = "ad_20261103"
    tombstone = {"id": key, "status": "cancelled", "originalStartTime": {"date": "2026-11-03"}}
    instances = expand_series(master, {key: tombstone}, **WIDE)
    assert [i.get("status") for i in instances] == [None, "cancelled", None]
    assert instances[1]["start"] == {"date": "2026-11-03"}


def test_yearly_all_day_birthday() -> None:
    master = all_day_master(
        ["RRULE:FREQ=YEARLY"], start="2024-02-29", end="2024-03-01", eventType="birthday"
    )
    # Feb 29 exists only in leap years (RFC 5545 skips invalid dates).
    instances = expand_series(master, {}, window_start=utc(2024, 1, 1), window_end=utc(2029, 1, 1))
    assert ids(instances) == ["ad_20240229", "ad_20280229"]


# --- instance_id -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        ({"dateTime": "2026-11-03T09:00:00+01:00", "timeZone": BERLIN}, "m_20261103T080000Z"),
        ({"dateTime": "2026-11-03T08:00:00Z"}, "m_20261103T080000Z"),
        ({"dateTime": "2026-11-03T09:00:00", "timeZone": BERLIN}, "m_20261103T080000Z"),
        ({"date": "2026-11-03"}, "m_20261103"),
    ],
)
def test_instance_id(original: dict[str, str], expected: str) -> None:
    assert instance_id("m", original) == expected


# --- properties -----------------------------------------------------------------------------

RULES = st.sampled_from(
    [
        "RRULE:FREQ=DAILY",
        "RRULE:FREQ=DAILY;INTERVAL=3",
        "RRULE:FREQ=WEEKLY;BYDAY=MO,TH",
        "RRULE:FREQ=MONTHLY;BYDAY=-1FR",
        "RRULE:FREQ=MONTHLY;BYMONTHDAY=15",
    ]
)
ZONES = st.sampled_from([BERLIN, NEW_YORK, "UTC", "Asia/Kolkata"])
HOURS = st.integers(min_value=0, max_value=24 * 400)


@settings(max_examples=60, deadline=None)
@given(
    rule=RULES,
    zone=ZONES,
    length_minutes=st.integers(1, 600),
    a=HOURS,
    b=HOURS,
    c=HOURS,
)
def test_windows_split_cleanly(
    rule: str, zone: str, length_minutes: int, a: int, b: int, c: int
) -> None:
    """Expanding [t0,t2) equals expanding [t0,t1) and [t1,t2) combined (instances spanning t1
    appear in both halves), and every instance really overlaps its window."""
    t0, t1, t2 = (utc(2026, 1, 1) + timedelta(hours=h) for h in sorted((a, b, c)))
    start = datetime(2026, 1, 5, 22, 30).isoformat()  # offset-less: read in zone
    end = (datetime(2026, 1, 5, 22, 30) + timedelta(minutes=length_minutes)).isoformat()
    master = timed_master([rule], start=start, end=end, zone=zone)
    whole = ids(expand_series(master, {}, window_start=t0, window_end=t2))
    left = ids(expand_series(master, {}, window_start=t0, window_end=t1))
    right = ids(expand_series(master, {}, window_start=t1, window_end=t2))
    assert whole == sorted(whole) and len(set(whole)) == len(whole)
    assert whole == sorted(set(left) | set(right))
    for instance in expand_series(master, {}, window_start=t0, window_end=t2):
        instance_start = datetime.fromisoformat(instance["start"]["dateTime"])
        instance_end = datetime.fromisoformat(instance["end"]["dateTime"])
        assert instance_start < t2 and instance_end > t0
        assert instance_start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ") == instance["id"][3:]
