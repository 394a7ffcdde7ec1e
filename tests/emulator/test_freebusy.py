"""Reference busy intervals of the emulator and the RFC 3339 helpers.

All-day UTC instants were checked against GNU date's tz handling (Berlin DST ends
2026-10-25, New York 2026-11-01), not computed with the code under test.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.freebusy import busy_intervals, is_busy, render_busy
from emulator.timefmt import format_rfc3339, parse_event_time, parse_rfc3339

BERLIN = "Europe/Berlin"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


DAY_MIN, DAY_MAX = utc(2026, 11, 2), utc(2026, 11, 3)


def timed(start: str, end: str, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"id": "e", "start": {"dateTime": start}, "end": {"dateTime": end}}
    event.update(fields)
    return event


def all_day(start: str, end: str, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"id": "d", "start": {"date": start}, "end": {"date": end}}
    event.update(fields)
    return event


TEN_TO_ELEVEN = ("2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z")
ME_DECLINED = [{"email": "me@x", "self": True, "responseStatus": "declined"}]

FREE_CASES = [
    pytest.param({"status": "cancelled"}, id="cancelled"),
    pytest.param({"transparency": "transparent"}, id="transparent"),
    pytest.param({"eventType": "workingLocation"}, id="working-location"),
    pytest.param({"eventType": "birthday"}, id="birthday"),
    pytest.param({"attendees": ME_DECLINED}, id="declined-by-me"),
]

BUSY_CASES = [
    pytest.param({}, id="plain"),
    pytest.param({"status": "tentative"}, id="tentative"),
    pytest.param({"transparency": "opaque"}, id="opaque"),
    pytest.param({"eventType": "outOfOffice"}, id="out-of-office"),
    pytest.param({"eventType": "focusTime"}, id="focus-time"),
    pytest.param({"eventType": "fromGmail"}, id="from-gmail"),
    pytest.param(
        {
            "attendees": [
                {"email": "o@x", "responseStatus": "declined"},
                {"email": "me@x", "self": True, "responseStatus": "accepted"},
            ]
        },
        id="someone-else-declined",
    ),
    pytest.param(
        {"attendees": [{"email": "me@x", "self": True, "responseStatus": "needsAction"}]},
        id="unanswered",
    ),
    pytest.param(
        {"attendees": [{"email": "me@x", "self": True, "responseStatus": "tentative"}]},
        id="tentative-answer",
    ),
]


@pytest.mark.parametrize("fields", FREE_CASES)
def test_free_events(fields: dict[str, Any]) -> None:
    event = timed(*TEN_TO_ELEVEN, **fields)
    assert not is_busy(event)
    assert busy_intervals([event], BERLIN, DAY_MIN, DAY_MAX) == []


@pytest.mark.parametrize("fields", BUSY_CASES)
def test_busy_events(fields: dict[str, Any]) -> None:
    event = timed(*TEN_TO_ELEVEN, **fields)
    assert is_busy(event)
    assert busy_intervals([event], BERLIN, DAY_MIN, DAY_MAX) == [
        (utc(2026, 11, 2, 10), utc(2026, 11, 2, 11)),
    ]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-11-02T10:00:00Z", "2026-11-02T10:00:00Z"),
        ("2026-11-02T10:00:00Z", "2026-11-02T09:00:00Z"),
    ],
    ids=["zero-length", "inverted"],
)
def test_zero_and_negative_length_are_not_busy(start: str, end: str) -> None:
    assert busy_intervals([timed(start, end)], BERLIN, DAY_MIN, DAY_MAX) == []


def test_offsets_and_offsetless_times() -> None:
    events = [
        timed("2026-11-02T10:00:00+01:00", "2026-11-02T10:30:00+01:00"),
        {
            "start": {"dateTime": "2026-11-02T15:00:00", "timeZone": "America/New_York"},
            "end": {"dateTime": "2026-11-02T15:30:00", "timeZone": "America/New_York"},
        },
        {"start": {"dateTime": "2026-11-02T18:00:00"}, "end": {"dateTime": "2026-11-02T18:30:00"}},
    ]
    assert busy_intervals(events, BERLIN, DAY_MIN, DAY_MAX) == [
        (utc(2026, 11, 2, 9), utc(2026, 11, 2, 9, 30)),
        (utc(2026, 11, 2, 17), utc(2026, 11, 2, 17, 30)),  # offset-less: the calendar zone
        (utc(2026, 11, 2, 20), utc(2026, 11, 2, 20, 30)),
    ]


ALL_DAY_CASES = [
    pytest.param(
        BERLIN,
        "2026-11-02",
        "2026-11-03",
        (utc(2026, 11, 1, 23), utc(2026, 11, 2, 23)),
        id="berlin-winter",
    ),
    pytest.param(
        BERLIN,
        "2026-07-01",
        "2026-07-02",
        (utc(2026, 6, 30, 22), utc(2026, 7, 1, 22)),
        id="berlin-summer",
    ),
    # Across the DST end the "day" range is 25 hours long.
    pytest.param(
        BERLIN,
        "2026-10-25",
        "2026-10-26",
        (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23)),
        id="berlin-dst-day",
    ),
    pytest.param(
        BERLIN,
        "2026-10-24",
        "2026-10-27",
        (utc(2026, 10, 23, 22), utc(2026, 10, 26, 23)),
        id="berlin-across-dst",
    ),
    pytest.param(
        "America/New_York",
        "2026-11-01",
        "2026-11-02",
        (utc(2026, 11, 1, 4), utc(2026, 11, 2, 5)),
        id="new-york-dst-day",
    ),
    pytest.param(
        "America/New_York",
        "2026-03-08",
        "2026-03-09",
        (utc(2026, 3, 8, 5), utc(2026, 3, 9, 4)),
        id="new-york-spring-day",
    ),
    pytest.param("UTC", "2026-11-02", "2026-11-03", (utc(2026, 11, 2), utc(2026, 11, 3)), id="utc"),
]


@pytest.mark.parametrize(("zone", "start", "end", "expected"), ALL_DAY_CASES)
def test_all_day_events_cover_the_calendar_day(
    zone: str, start: str, end: str, expected: tuple[datetime, datetime]
) -> None:
    intervals = busy_intervals([all_day(start, end)], zone, utc(2026, 1, 1), utc(2027, 1, 1))
    assert intervals == [expected]


def test_transparent_all_day_event_is_free() -> None:
    assert (
        busy_intervals(
            [all_day("2026-11-02", "2026-11-03", transparency="transparent")],
            BERLIN,
            utc(2026, 1, 1),
            utc(2027, 1, 1),
        )
        == []
    )


def test_merge_overlapping_and_adjacent_and_keep_gaps() -> None:
    events = [
        timed("2026-11-02T12:00:00Z", "2026-11-02T13:00:00Z"),
        timed("2026-11-02T09:00:00Z", "2026-11-02T10:00:00Z"),
        timed("2026-11-02T10:00:00Z", "2026-11-02T10:30:00Z"),  # adjacent
        timed("2026-11-02T09:30:00Z", "2026-11-02T09:45:00Z"),  # contained
        timed("2026-11-02T12:30:00Z", "2026-11-02T14:00:00Z"),  # overlapping
        timed("2026-11-02T14:00:01Z", "2026-11-02T15:00:00Z"),  # one second gap
        timed("2026-11-02T16:00:00Z", "2026-11-02T17:00:00Z", transparency="transparent"),
    ]
    assert busy_intervals(events, "UTC", DAY_MIN, DAY_MAX) == [
        (utc(2026, 11, 2, 9), utc(2026, 11, 2, 10, 30)),
        (utc(2026, 11, 2, 12), utc(2026, 11, 2, 14)),
        (utc(2026, 11, 2, 14, 0, 1), utc(2026, 11, 2, 15)),
    ]


def test_free_event_does_not_bridge_a_gap() -> None:
    events = [
        timed("2026-11-02T09:00:00Z", "2026-11-02T10:00:00Z"),
        timed("2026-11-02T09:30:00Z", "2026-11-02T11:30:00Z", attendees=ME_DECLINED),
        timed("2026-11-02T11:00:00Z", "2026-11-02T12:00:00Z"),
    ]
    assert busy_intervals(events, "UTC", DAY_MIN, DAY_MAX) == [
        (utc(2026, 11, 2, 9), utc(2026, 11, 2, 10)),
        (utc(2026, 11, 2, 11), utc(2026, 11, 2, 12)),
    ]


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        ("2026-11-01T22:00:00Z", "2026-11-02T01:00:00Z", [(DAY_MIN, utc(2026, 11, 2, 1))]),
        ("2026-11-02T23:00:00Z", "2026-11-03T02:00:00Z", [(utc(2026, 11, 2, 23), DAY_MAX)]),
        ("2026-11-01T00:00:00Z", "2026-11-04T00:00:00Z", [(DAY_MIN, DAY_MAX)]),
        ("2026-11-01T22:00:00Z", "2026-11-02T00:00:00Z", []),  # ends at time_min
        ("2026-11-03T00:00:00Z", "2026-11-03T01:00:00Z", []),  # starts at time_max
    ],
)
def test_clipping(start: str, end: str, expected: list[tuple[datetime, datetime]]) -> None:
    assert busy_intervals([timed(start, end)], "UTC", DAY_MIN, DAY_MAX) == expected


def test_window_given_in_another_zone_is_returned_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    result = busy_intervals(
        [timed("2026-11-02T10:00:00Z", "2026-11-02T11:00:00Z")],
        "UTC",
        datetime(2026, 11, 2, 12, 30, tzinfo=plus_two),
        datetime(2026, 11, 2, 20, tzinfo=plus_two),
    )
    assert result == [(utc(2026, 11, 2, 10, 30), utc(2026, 11, 2, 11))]
    assert all(moment.tzinfo is UTC for interval in result for moment in interval)


def test_naive_window_and_missing_times_are_errors() -> None:
    with pytest.raises(ValueError, match="aware"):
        busy_intervals([], "UTC", datetime(2026, 11, 2), DAY_MAX)
    with pytest.raises(ValueError, match="start/end"):
        busy_intervals([{"id": "x"}], "UTC", DAY_MIN, DAY_MAX)
    # A cancelled tombstone without times is simply free.
    assert busy_intervals([{"id": "x", "status": "cancelled"}], "UTC", DAY_MIN, DAY_MAX) == []


def test_render_busy() -> None:
    assert render_busy([(utc(2026, 11, 2, 9), utc(2026, 11, 2, 10, 30))]) == [
        {"start": "2026-11-02T09:00:00Z", "end": "2026-11-02T10:30:00Z"},
    ]


# --- timefmt -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-02T09:00:00Z", utc(2026, 11, 2, 9)),
        ("2026-11-02t09:00:00z", utc(2026, 11, 2, 9)),
        ("2026-11-02T10:00:00+01:00", utc(2026, 11, 2, 9)),
        ("2026-11-02T04:30:00-04:30", utc(2026, 11, 2, 9)),
        ("2026-11-02T09:00:00.250Z", utc(2026, 11, 2, 9, 0, 0, 250000)),
        ("2026-11-02T09:00:00.123456789+00:00", utc(2026, 11, 2, 9, 0, 0, 123456)),
    ],
)
def test_parse_rfc3339(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-02T09:00:00",
        "2026-11-02",
        "2026-11-02 09:00:00Z",
        "2026-11-02T09:00Z",
        "2026-13-02T09:00:00Z",
        "2026-11-02T09:00:00+0100",
        "2026-11-02T09:00:00+25:00",
        "garbage",
        "",
        "2026-02-30T09:00:00Z",
    ],
)
def test_parse_rfc3339_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rfc3339(text)


def test_format_rfc3339() -> None:
    moment = datetime(2026, 11, 2, 10, 0, 0, 999999, tzinfo=timezone(timedelta(hours=1)))
    assert format_rfc3339(moment) == "2026-11-02T09:00:00Z"
    with pytest.raises(ValueError):
        format_rfc3339(datetime(2026, 11, 2))


def test_parse_event_time_all_day_uses_the_given_zone() -> None:
    assert parse_event_time({"date": "2026-10-25"}, BERLIN) == utc(2026, 10, 24, 22)
    with pytest.raises(ValueError):
        parse_event_time({}, BERLIN)


@settings(max_examples=100, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    )
)
def test_format_then_parse_round_trips_to_the_second(moment: datetime) -> None:
    assert parse_rfc3339(format_rfc3339(moment)) == moment.replace(microsecond=0)


# --- property: merge is exact ------------------------------------------------------------------

MINUTES = st.integers(min_value=0, max_value=180)
EVENT_SPECS = st.lists(
    st.tuples(MINUTES, MINUTES, st.booleans()), max_size=12
)  # (start minute, end minute, busy?)


@settings(max_examples=150, deadline=None)
@given(specs=EVENT_SPECS, window=st.tuples(MINUTES, MINUTES))
def test_merged_intervals_are_exactly_the_busy_union(
    specs: list[tuple[int, int, bool]], window: tuple[int, int]
) -> None:
    base = utc(2026, 11, 2, 8)

    def at(minute: int) -> datetime:
        return base + timedelta(minutes=minute)

    events = [
        timed(
            format_rfc3339(at(a)),
            format_rfc3339(at(b)),
            **({} if busy else {"transparency": "transparent"}),
        )
        for a, b, busy in specs
    ]
    low, high = sorted(window)
    result = busy_intervals(events, "UTC", at(low), at(high))
    # Sorted, non-empty, separated by real gaps (touching ones would have been merged), in window.
    for start, end in result:
        assert at(low) <= start < end <= at(high)
    for (_, end), (next_start, _) in itertools.pairwise(result):
        assert end < next_start
    # Minute by minute, an instant is inside the result iff a busy event covers it.
    for minute in range(low, high):
        covered = any(busy and a <= minute < b for a, b, busy in specs)
        inside = any(start <= at(minute) < end for start, end in result)
        assert covered == inside, minute
