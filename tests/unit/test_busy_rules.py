"""Busy rules: event JSON → EventFacts → busy or the reason it is not.

Expected UTC instants for all-day events were checked against GNU date's own tz handling,
not computed with the code under test.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.busy_rules import (
    EXPLANATIONS,
    BusyPolicy,
    EventFacts,
    Reason,
    decide,
    parse_event,
)

CALENDAR_ZONE = "Europe/Berlin"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def timed_event(**fields: Any) -> dict[str, Any]:
    """A plain accepted-by-default timed event; keyword arguments override or add fields."""
    event: dict[str, Any] = {
        "id": "evt1",
        "start": {"dateTime": "2024-05-06T10:00:00+02:00"},
        "end": {"dateTime": "2024-05-06T11:00:00+02:00"},
    }
    event.update(fields)
    return event


def all_day_event(start: str, end: str, **fields: Any) -> dict[str, Any]:
    return timed_event(start={"date": start}, end={"date": end}, **fields)


def invitation(response_status: str, **fields: Any) -> dict[str, Any]:
    attendees = [
        {"email": "organizer@example.com", "organizer": True, "responseStatus": "accepted"},
        {"email": "host@example.com", "self": True, "responseStatus": response_status},
    ]
    return timed_event(attendees=attendees, **fields)


def reason_of(event: dict[str, Any], policy: BusyPolicy | None = None) -> Reason:
    facts = parse_event(event, CALENDAR_ZONE)
    return decide(facts) if policy is None else decide(facts, policy)


# --- decisions: every row of DESIGN.md's busy-rules table, with defaults and each flag -------

EVERYTHING_BUSY = BusyPolicy(
    declined_busy=True,
    tentative_busy=True,
    out_of_office_busy=True,
    focus_time_busy=True,
    all_day_busy=True,
)
NOTHING_OPTIONAL_BUSY = BusyPolicy(
    declined_busy=False,
    tentative_busy=False,
    out_of_office_busy=False,
    focus_time_busy=False,
    all_day_busy=False,
)

DECISION_CASES: list[tuple[str, dict[str, Any], BusyPolicy, Reason]] = [
    # status
    ("cancelled", timed_event(status="cancelled"), BusyPolicy(), Reason.CANCELLED),
    ("confirmed", timed_event(status="confirmed"), BusyPolicy(), Reason.BUSY),
    ("organizer-tentative status", timed_event(status="tentative"), BusyPolicy(), Reason.BUSY),
    (
        "organizer-tentative status, tentative invitations free",
        timed_event(status="tentative"),
        NOTHING_OPTIONAL_BUSY,
        Reason.BUSY,
    ),
    ("unknown status", timed_event(status="weird"), BusyPolicy(), Reason.BUSY),
    # transparency
    ("transparent", timed_event(transparency="transparent"), BusyPolicy(), Reason.FREE),
    (
        "transparent, everything busy",
        timed_event(transparency="transparent"),
        EVERYTHING_BUSY,
        Reason.FREE,
    ),
    ("opaque", timed_event(transparency="opaque"), BusyPolicy(), Reason.BUSY),
    ("transparency missing", timed_event(), BusyPolicy(), Reason.BUSY),
    # the host's own response
    ("declined", invitation("declined"), BusyPolicy(), Reason.DECLINED),
    (
        "declined, declined_busy",
        invitation("declined"),
        BusyPolicy(declined_busy=True),
        Reason.BUSY,
    ),
    ("accepted", invitation("accepted"), NOTHING_OPTIONAL_BUSY, Reason.BUSY),
    ("tentative", invitation("tentative"), BusyPolicy(), Reason.BUSY),
    (
        "tentative, tentative free",
        invitation("tentative"),
        BusyPolicy(tentative_busy=False),
        Reason.TENTATIVE,
    ),
    ("needsAction", invitation("needsAction"), BusyPolicy(), Reason.BUSY),
    (
        "needsAction, tentative free",
        invitation("needsAction"),
        BusyPolicy(tentative_busy=False),
        Reason.NEEDS_ACTION,
    ),
    (
        "declined by someone else only",
        timed_event(
            attendees=[
                {"email": "x@example.com", "responseStatus": "declined"},
                {"email": "me@example.com", "self": True, "responseStatus": "accepted"},
            ]
        ),
        BusyPolicy(),
        Reason.BUSY,
    ),
    (
        "self must be literally true",
        timed_event(attendees=[{"self": "true", "responseStatus": "declined"}]),
        BusyPolicy(),
        Reason.BUSY,
    ),
    (
        "self entry without responseStatus",
        timed_event(attendees=[{"self": True}]),
        NOTHING_OPTIONAL_BUSY,
        Reason.BUSY,
    ),
    # event types
    (
        "workingLocation",
        timed_event(eventType="workingLocation"),
        EVERYTHING_BUSY,
        Reason.WORKING_LOCATION,
    ),
    (
        "birthday",
        all_day_event("2024-05-06", "2024-05-07", eventType="birthday"),
        EVERYTHING_BUSY,
        Reason.BIRTHDAY,
    ),
    ("outOfOffice", timed_event(eventType="outOfOffice"), BusyPolicy(), Reason.BUSY),
    (
        "outOfOffice, OOO free",
        timed_event(eventType="outOfOffice"),
        BusyPolicy(out_of_office_busy=False),
        Reason.OUT_OF_OFFICE,
    ),
    ("focusTime", timed_event(eventType="focusTime"), BusyPolicy(), Reason.BUSY),
    (
        "focusTime, focus free",
        timed_event(eventType="focusTime"),
        BusyPolicy(focus_time_busy=False),
        Reason.FOCUS_TIME,
    ),
    ("fromGmail", timed_event(eventType="fromGmail"), NOTHING_OPTIONAL_BUSY, Reason.BUSY),
    ("default type", timed_event(eventType="default"), NOTHING_OPTIONAL_BUSY, Reason.BUSY),
    (
        "unknown type blocks",
        timed_event(eventType="somethingNew"),
        NOTHING_OPTIONAL_BUSY,
        Reason.BUSY,
    ),
    # all-day and timed
    ("all-day", all_day_event("2024-05-06", "2024-05-07"), BusyPolicy(), Reason.BUSY),
    (
        "all-day, all-day free",
        all_day_event("2024-05-06", "2024-05-07"),
        BusyPolicy(all_day_busy=False),
        Reason.ALL_DAY,
    ),
    ("timed, all-day free", timed_event(), BusyPolicy(all_day_busy=False), Reason.BUSY),
    # recurring instances decide like any other event
    (
        "recurring instance",
        timed_event(id="series_20240506T080000Z", recurringEventId="series"),
        BusyPolicy(),
        Reason.BUSY,
    ),
    # length
    (
        "zero length",
        timed_event(end={"dateTime": "2024-05-06T10:00:00+02:00"}),
        BusyPolicy(),
        Reason.ZERO_LENGTH,
    ),
    (
        "negative length",
        timed_event(end={"dateTime": "2024-05-06T09:00:00+02:00"}),
        BusyPolicy(),
        Reason.ZERO_LENGTH,
    ),
    (
        "zero length all-day",
        all_day_event("2024-05-06", "2024-05-06"),
        BusyPolicy(),
        Reason.ZERO_LENGTH,
    ),
    (
        "negative length all-day",
        all_day_event("2024-05-07", "2024-05-06"),
        BusyPolicy(),
        Reason.ZERO_LENGTH,
    ),
    (
        "one microsecond",
        timed_event(
            start={"dateTime": "2024-05-06T10:00:00Z"},
            end={"dateTime": "2024-05-06T10:00:00.000001Z"},
        ),
        BusyPolicy(),
        Reason.BUSY,
    ),
    # malformed
    ("no start", timed_event(start=None), BusyPolicy(), Reason.MALFORMED),
    (
        "no end",
        {"id": "e", "start": {"dateTime": "2024-05-06T10:00:00Z"}},
        BusyPolicy(),
        Reason.MALFORMED,
    ),
    # precedence: the first matching rule wins, in DESIGN.md's order
    (
        "cancelled beats malformed",
        {"id": "e", "status": "cancelled", "start": "garbage"},
        BusyPolicy(),
        Reason.CANCELLED,
    ),
    (
        "cancelled beats zero length",
        timed_event(status="cancelled", end={"dateTime": "2024-05-06T10:00:00+02:00"}),
        BusyPolicy(),
        Reason.CANCELLED,
    ),
    (
        "zero length beats free",
        timed_event(transparency="transparent", end={"dateTime": "2024-05-06T10:00:00+02:00"}),
        BusyPolicy(),
        Reason.ZERO_LENGTH,
    ),
    (
        "workingLocation beats free",
        timed_event(eventType="workingLocation", transparency="transparent"),
        BusyPolicy(),
        Reason.WORKING_LOCATION,
    ),
    (
        "birthday beats free",
        timed_event(eventType="birthday", transparency="transparent"),
        BusyPolicy(),
        Reason.BIRTHDAY,
    ),
    (
        "free beats declined",
        invitation("declined", transparency="transparent"),
        BusyPolicy(),
        Reason.FREE,
    ),
    (
        "declined beats OOO",
        invitation("declined", eventType="outOfOffice"),
        NOTHING_OPTIONAL_BUSY,
        Reason.DECLINED,
    ),
    (
        "tentative beats focus",
        invitation("tentative", eventType="focusTime"),
        NOTHING_OPTIONAL_BUSY,
        Reason.TENTATIVE,
    ),
    (
        "OOO beats all-day",
        all_day_event("2024-05-06", "2024-05-08", eventType="outOfOffice"),
        NOTHING_OPTIONAL_BUSY,
        Reason.OUT_OF_OFFICE,
    ),
    (
        "all-day OOO, only all-day free",
        all_day_event("2024-05-06", "2024-05-08", eventType="outOfOffice"),
        BusyPolicy(all_day_busy=False),
        Reason.ALL_DAY,
    ),
    (
        "all-day invitation declined but declined busy, all-day free",
        all_day_event(
            "2024-05-06", "2024-05-07", attendees=[{"self": True, "responseStatus": "declined"}]
        ),
        BusyPolicy(declined_busy=True, all_day_busy=False),
        Reason.ALL_DAY,
    ),
]


@pytest.mark.parametrize(
    ("event", "policy", "expected"),
    [case[1:] for case in DECISION_CASES],
    ids=[case[0] for case in DECISION_CASES],
)
def test_decision(event: dict[str, Any], policy: BusyPolicy, expected: Reason) -> None:
    assert reason_of(event, policy) is expected


def test_default_policy_is_used_when_none_is_given() -> None:
    assert decide(parse_event(invitation("declined"), CALENDAR_ZONE)) is Reason.DECLINED
    assert decide(parse_event(invitation("needsAction"), CALENDAR_ZONE)) is Reason.BUSY


@pytest.mark.parametrize(
    ("flag", "event", "reason_when_not_busy"),
    [
        ("declined_busy", invitation("declined"), Reason.DECLINED),
        ("tentative_busy", invitation("tentative"), Reason.TENTATIVE),
        ("tentative_busy", invitation("needsAction"), Reason.NEEDS_ACTION),
        ("out_of_office_busy", timed_event(eventType="outOfOffice"), Reason.OUT_OF_OFFICE),
        ("focus_time_busy", timed_event(eventType="focusTime"), Reason.FOCUS_TIME),
        ("all_day_busy", all_day_event("2024-05-06", "2024-05-07"), Reason.ALL_DAY),
    ],
)
def test_each_policy_flag_alone_decides_its_case(
    flag: str, event: dict[str, Any], reason_when_not_busy: Reason
) -> None:
    # Every other flag is set the "not busy" way, so only `flag` can make the difference.
    facts = parse_event(event, CALENDAR_ZONE)
    assert decide(facts, dataclasses.replace(NOTHING_OPTIONAL_BUSY, **{flag: True})) is (
        Reason.BUSY
    )
    assert decide(facts, dataclasses.replace(EVERYTHING_BUSY, **{flag: False})) is (
        reason_when_not_busy
    )


def test_every_reason_has_a_plain_explanation() -> None:
    assert set(EXPLANATIONS) == set(Reason)
    for reason, sentence in EXPLANATIONS.items():
        assert sentence.strip() and sentence.endswith("."), reason
    assert "Free" in EXPLANATIONS[Reason.FREE]


def test_reason_values_are_the_stored_strings() -> None:
    assert [reason.value for reason in Reason] == [
        "busy", "cancelled", "free", "declined", "tentative", "needs_action",
        "working_location", "birthday", "out_of_office", "focus_time", "all_day",
        "zero_length", "malformed",
    ]  # fmt: skip
    assert Reason("needs_action") is Reason.NEEDS_ACTION
    assert f"{Reason.FREE}" == "free"


# --- all-day events: whole days in the calendar's zone, DST-correct ---------------------------

ALL_DAY_CASES = [
    # zone, start date, end date (exclusive), UTC start, UTC end, hours
    ("Europe/Berlin", "2024-05-06", "2024-05-07", "2024-05-05T22:00Z", "2024-05-06T22:00Z", 24),
    ("Europe/Berlin", "2024-03-31", "2024-04-01", "2024-03-30T23:00Z", "2024-03-31T22:00Z", 23),
    ("Europe/Berlin", "2024-10-27", "2024-10-28", "2024-10-26T22:00Z", "2024-10-27T23:00Z", 25),
    ("Europe/Berlin", "2024-03-30", "2024-04-02", "2024-03-29T23:00Z", "2024-04-01T22:00Z", 71),
    ("Europe/Berlin", "2024-10-26", "2024-10-29", "2024-10-25T22:00Z", "2024-10-28T23:00Z", 73),
    ("America/New_York", "2024-03-10", "2024-03-11", "2024-03-10T05:00Z", "2024-03-11T04:00Z", 23),
    ("America/New_York", "2024-11-03", "2024-11-04", "2024-11-03T04:00Z", "2024-11-04T05:00Z", 25),
    ("America/New_York", "2024-11-02", "2024-11-05", "2024-11-02T04:00Z", "2024-11-05T05:00Z", 73),
    ("America/New_York", "2024-03-09", "2024-03-12", "2024-03-09T05:00Z", "2024-03-12T04:00Z", 71),
    ("Pacific/Auckland", "2024-01-15", "2024-01-16", "2024-01-14T11:00Z", "2024-01-15T11:00Z", 24),
    ("Pacific/Auckland", "2024-04-07", "2024-04-08", "2024-04-06T11:00Z", "2024-04-07T12:00Z", 25),
    ("Pacific/Auckland", "2024-09-29", "2024-09-30", "2024-09-28T12:00Z", "2024-09-29T11:00Z", 23),
    ("Asia/Kolkata", "2024-05-01", "2024-05-02", "2024-04-30T18:30Z", "2024-05-01T18:30Z", 24),
    ("UTC", "2024-05-06", "2024-05-07", "2024-05-06T00:00Z", "2024-05-07T00:00Z", 24),
    # Chile springs forward at midnight: the day starts at 01:00 local, the transition instant.
    ("America/Santiago", "2024-09-08", "2024-09-09", "2024-09-08T04:00Z", "2024-09-09T03:00Z", 23),
    # Samoa skipped 30 December 2011 entirely: that day has no time to block.
    ("Pacific/Apia", "2011-12-30", "2011-12-31", "2011-12-30T10:00Z", "2011-12-30T10:00Z", 0),
]


@pytest.mark.parametrize(
    ("zone", "start_date", "end_date", "start", "end", "hours"),
    ALL_DAY_CASES,
    ids=[f"{case[0]}-{case[1]}-{case[5]}h" for case in ALL_DAY_CASES],
)
def test_all_day_event_spans_whole_days_in_calendar_zone(
    zone: str,
    start_date: str,
    end_date: str,
    start: str,
    end: str,
    hours: int,
) -> None:
    facts = parse_event(all_day_event(start_date, end_date), zone)
    assert facts.all_day is True
    assert (facts.start, facts.end) == (datetime.fromisoformat(start), datetime.fromisoformat(end))
    assert facts.start.tzinfo is UTC and facts.end.tzinfo is UTC
    assert facts.end - facts.start == timedelta(hours=hours)
    assert decide(facts) is (Reason.BUSY if hours else Reason.ZERO_LENGTH)


def test_all_day_event_ignores_any_zone_but_the_calendars() -> None:
    # Google gives all-day events no zone; a stray timeZone on start/end must not move them.
    event = timed_event(
        start={"date": "2024-01-15", "timeZone": "America/Los_Angeles"},
        end={"date": "2024-01-16", "timeZone": "America/Los_Angeles"},
    )
    auckland = parse_event(event, "Pacific/Auckland")
    in_utc = parse_event(event, "UTC")
    assert (auckland.start, auckland.end) == (utc(2024, 1, 14, 11), utc(2024, 1, 15, 11))
    assert (in_utc.start, in_utc.end) == (utc(2024, 1, 15), utc(2024, 1, 16))


ZONES_FOR_PROPERTIES = [
    "Europe/Berlin",
    "America/New_York",
    "Pacific/Auckland",
    "UTC",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
]


@settings(max_examples=200)
@given(
    zone_name=st.sampled_from(ZONES_FOR_PROPERTIES),
    day=st.dates(min_value=date(1980, 1, 1), max_value=date(2090, 12, 30)),
)
def test_all_day_event_starts_at_local_midnight_and_lasts_one_local_day(
    zone_name: str, day: date
) -> None:
    following = day + timedelta(days=1)
    facts = parse_event(all_day_event(day.isoformat(), following.isoformat()), zone_name)
    assert facts.start is not None and facts.end is not None
    zone = ZoneInfo(zone_name)
    for instant, expected_day in ((facts.start, day), (facts.end, following)):
        local = instant.astimezone(zone)
        assert (local.date(), local.hour, local.minute, local.second) == (expected_day, 0, 0, 0)
    # Lord Howe shifts by half an hour; no zone in this list shifts by more than an hour.
    assert timedelta(hours=23) <= facts.end - facts.start <= timedelta(hours=25)


# --- timed events ------------------------------------------------------------------------

TIMED_CASES = [
    ({"dateTime": "2024-05-06T10:00:00Z"}, utc(2024, 5, 6, 10)),
    ({"dateTime": "2024-05-06T10:00:00z"}, utc(2024, 5, 6, 10)),
    ({"dateTime": "2024-05-06t10:00:00Z"}, utc(2024, 5, 6, 10)),
    ({"dateTime": "2024-05-06T10:00:00+00:00"}, utc(2024, 5, 6, 10)),
    ({"dateTime": "2024-05-06T10:00:00-00:00"}, utc(2024, 5, 6, 10)),
    ({"dateTime": "2024-05-06T10:00:00+02:00"}, utc(2024, 5, 6, 8)),
    ({"dateTime": "2024-05-06T10:00:00-07:00"}, utc(2024, 5, 6, 17)),
    ({"dateTime": "2024-05-06T10:00:00+05:30"}, utc(2024, 5, 6, 4, 30)),
    ({"dateTime": "2024-05-06T10:00:00+13:45"}, utc(2024, 5, 5, 20, 15)),
    ({"dateTime": "2024-05-06T00:30:00+02:00"}, utc(2024, 5, 5, 22, 30)),
    ({"dateTime": "2024-12-31T23:30:00-05:00"}, utc(2025, 1, 1, 4, 30)),
    ({"dateTime": "2024-05-06T10:00:00.5Z"}, utc(2024, 5, 6, 10, 0, 0, 500000)),
    ({"dateTime": "2024-05-06T10:00:00.000+01:00"}, utc(2024, 5, 6, 9)),
    ({"dateTime": "2024-05-06T10:00:00.123456Z"}, utc(2024, 5, 6, 10, 0, 0, 123456)),
    ({"dateTime": "2024-05-06T10:00:00.123456789Z"}, utc(2024, 5, 6, 10, 0, 0, 123456)),
    # an explicit offset wins over a timeZone field
    ({"dateTime": "2024-05-06T10:00:00+02:00", "timeZone": "America/New_York"}, utc(2024, 5, 6, 8)),
    # a zone-less dateTime is read in its timeZone (Google's input rule) ...
    ({"dateTime": "2024-05-06T10:00:00", "timeZone": "America/New_York"}, utc(2024, 5, 6, 14)),
    ({"dateTime": "2024-01-15T10:00:00", "timeZone": "America/New_York"}, utc(2024, 1, 15, 15)),
    # ... else in the calendar's zone (Europe/Berlin here), also when timeZone is unknown
    ({"dateTime": "2024-05-06T10:00:00"}, utc(2024, 5, 6, 8)),
    ({"dateTime": "2024-05-06T10:00:00", "timeZone": "Mars/Olympus_Mons"}, utc(2024, 5, 6, 8)),
]


@pytest.mark.parametrize(
    ("start_field", "expected"),
    TIMED_CASES,
    ids=[
        c[0]["dateTime"] + ("@" + c[0]["timeZone"] if "timeZone" in c[0] else "")
        for c in TIMED_CASES
    ],
)
def test_timed_start_converted_to_utc(start_field: dict[str, str], expected: datetime) -> None:
    event = timed_event(start=start_field, end={"dateTime": "2030-01-01T00:00:00Z"})
    facts = parse_event(event, CALENDAR_ZONE)
    assert facts.start == expected
    assert facts.start is not None and facts.start.tzinfo is UTC
    assert facts.all_day is False
    assert decide(facts) is Reason.BUSY


def test_timed_event_keeps_exact_half_open_bounds() -> None:
    facts = parse_event(
        timed_event(
            start={"dateTime": "2024-03-31T01:30:00+01:00"},  # across Berlin's spring forward
            end={"dateTime": "2024-03-31T03:30:00+02:00"},
        ),
        CALENDAR_ZONE,
    )
    assert (facts.start, facts.end) == (utc(2024, 3, 31, 0, 30), utc(2024, 3, 31, 1, 30))
    assert facts.end - facts.start == timedelta(hours=1)


# --- other fields, defaults, tombstones, recurring -----------------------------------------


def test_full_event_facts() -> None:
    event = {
        "kind": "calendar#event",
        "id": "abc_20240506T080000Z",
        "status": "confirmed",
        "summary": "Design review",
        "updated": "2024-05-01T12:34:56.789Z",
        "start": {"dateTime": "2024-05-06T10:00:00+02:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2024-05-06T11:00:00+02:00", "timeZone": "Europe/Berlin"},
        "transparency": "opaque",
        "eventType": "default",
        "recurringEventId": "abc",
        "originalStartTime": {"dateTime": "2024-05-06T10:00:00+02:00"},
        "attendees": [{"email": "me@example.com", "self": True, "responseStatus": "accepted"}],
    }
    assert parse_event(event, "America/New_York") == EventFacts(
        google_event_id="abc_20240506T080000Z",
        status="confirmed",
        start=utc(2024, 5, 6, 8),
        end=utc(2024, 5, 6, 9),
        all_day=False,
        transparency="opaque",
        event_type="default",
        response_status="accepted",
        summary="Design review",
        updated=utc(2024, 5, 1, 12, 34, 56, 789000),
        recurring_event_id="abc",
    )


def test_missing_fields_take_googles_defaults() -> None:
    facts = parse_event(
        {
            "id": "e",
            "start": {"dateTime": "2024-05-06T10:00:00Z"},
            "end": {"dateTime": "2024-05-06T11:00:00Z"},
        },
        CALENDAR_ZONE,
    )
    assert facts.status == "confirmed"
    assert facts.transparency == "opaque"
    assert facts.event_type == "default"
    assert facts.response_status is None
    assert facts.summary is None
    assert facts.updated is None
    assert facts.recurring_event_id is None
    assert decide(facts, NOTHING_OPTIONAL_BUSY) is Reason.BUSY


def test_fields_of_the_wrong_type_count_as_missing() -> None:
    facts = parse_event(
        timed_event(
            status=7,
            transparency=["transparent"],
            eventType=None,
            summary={"a": 1},
            updated=1714000000,
            recurringEventId=3,
            attendees={"self": True},
        ),
        CALENDAR_ZONE,
    )
    assert (facts.status, facts.transparency, facts.event_type) == (
        "confirmed",
        "opaque",
        "default",
    )
    assert (facts.summary, facts.updated, facts.recurring_event_id, facts.response_status) == (
        None,
        None,
        None,
        None,
    )
    assert decide(facts) is Reason.BUSY


def test_attendee_list_with_junk_entries_still_finds_self() -> None:
    event = timed_event(
        attendees=[
            None,
            "me",
            5,
            {"email": "o@example.com"},
            {"self": True, "responseStatus": "declined"},
        ]
    )
    assert parse_event(event, CALENDAR_ZONE).response_status == "declined"


@pytest.mark.parametrize(
    "tombstone",
    [
        {"id": "gone", "status": "cancelled"},
        {
            "id": "gone_20240506T080000Z",
            "status": "cancelled",
            "recurringEventId": "gone",
            "originalStartTime": {"dateTime": "2024-05-06T10:00:00+02:00"},
        },
    ],
)
def test_cancelled_tombstone_with_only_an_id(tombstone: dict[str, Any]) -> None:
    facts = parse_event(tombstone, CALENDAR_ZONE)
    assert facts.google_event_id == tombstone["id"]
    assert facts.status == "cancelled"
    assert (facts.start, facts.end, facts.all_day) == (None, None, False)
    assert facts.recurring_event_id == tombstone.get("recurringEventId")
    assert decide(facts, EVERYTHING_BUSY) is Reason.CANCELLED


def test_event_with_only_an_id_is_malformed_not_an_error() -> None:
    facts = parse_event({"id": "bare"}, CALENDAR_ZONE)
    assert (facts.status, facts.start, facts.end) == ("confirmed", None, None)
    assert decide(facts) is Reason.MALFORMED


def test_cancelled_event_with_times_keeps_them_for_explain() -> None:
    facts = parse_event(timed_event(status="cancelled"), CALENDAR_ZONE)
    assert (facts.start, facts.end) == (utc(2024, 5, 6, 8), utc(2024, 5, 6, 9))
    assert decide(facts) is Reason.CANCELLED


def test_recurring_instances_are_separate_facts_keyed_by_their_ids() -> None:
    instances = [
        timed_event(
            id=f"series_202405{day:02d}T080000Z",
            recurringEventId="series",
            start={"dateTime": f"2024-05-{day:02d}T10:00:00+02:00"},
            end={"dateTime": f"2024-05-{day:02d}T11:00:00+02:00"},
        )
        for day in (6, 7, 8)
    ]
    facts = [parse_event(instance, CALENDAR_ZONE) for instance in instances]
    assert [f.google_event_id for f in facts] == [
        "series_20240506T080000Z",
        "series_20240507T080000Z",
        "series_20240508T080000Z",
    ]
    assert {f.recurring_event_id for f in facts} == {"series"}
    assert [f.start for f in facts] == [utc(2024, 5, day, 8) for day in (6, 7, 8)]
    assert all(decide(f) is Reason.BUSY for f in facts)


def test_event_facts_are_immutable() -> None:
    facts = parse_event(timed_event(), CALENDAR_ZONE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.status = "cancelled"  # type: ignore[misc]


# --- malformed input never raises ----------------------------------------------------------

MALFORMED_TIMES: list[tuple[str, Any, Any]] = [
    ("start missing", None, {"dateTime": "2024-05-06T11:00:00Z"}),
    ("end missing", {"dateTime": "2024-05-06T10:00:00Z"}, None),
    ("start is a string", "2024-05-06T10:00:00Z", {"dateTime": "2024-05-06T11:00:00Z"}),
    ("start is a list", [], {"dateTime": "2024-05-06T11:00:00Z"}),
    ("start is empty", {}, {"dateTime": "2024-05-06T11:00:00Z"}),
    ("dateTime is a number", {"dateTime": 1714989600}, {"dateTime": "2024-05-06T11:00:00Z"}),
    ("dateTime is null", {"dateTime": None}, {"dateTime": "2024-05-06T11:00:00Z"}),
    ("month 13", {"dateTime": "2024-13-06T10:00:00Z"}, {"dateTime": "2024-05-06T11:00:00Z"}),
    ("30 February", {"dateTime": "2024-02-30T10:00:00Z"}, {"dateTime": "2024-05-06T11:00:00Z"}),
    ("hour 24", {"dateTime": "2024-05-06T24:00:00Z"}, {"dateTime": "2024-05-07T11:00:00Z"}),
    ("leap second", {"dateTime": "2016-12-31T23:59:60Z"}, {"dateTime": "2017-01-01T11:00:00Z"}),
    (
        "offset 24 h",
        {"dateTime": "2024-05-06T10:00:00+24:00"},
        {"dateTime": "2024-05-06T11:00:00Z"},
    ),
    ("no seconds", {"dateTime": "2024-05-06T10:00Z"}, {"dateTime": "2024-05-06T11:00:00Z"}),
    ("compact form", {"dateTime": "20240506T100000Z"}, {"dateTime": "2024-05-06T11:00:00Z"}),
    ("date only in dateTime", {"dateTime": "2024-05-06"}, {"dateTime": "2024-05-06T11:00:00Z"}),
    (
        "trailing newline",
        {"dateTime": "2024-05-06T10:00:00Z\n"},
        {"dateTime": "2024-05-06T11:00:00Z"},
    ),
    (
        "non-ASCII digits",
        {"dateTime": "\uff12\uff10\uff12\uff14-05-06T10:00:00Z"},
        {"dateTime": "2024-05-06T11:00:00Z"},
    ),
    (
        "before year 1 in UTC",
        {"dateTime": "0001-01-01T00:30:00+01:00"},
        {"dateTime": "2024-05-06T11:00:00Z"},
    ),
    (
        "after year 9999 in UTC",
        {"dateTime": "2024-05-06T10:00:00Z"},
        {"dateTime": "9999-12-31T23:30:00-01:00"},
    ),
    ("all-day date with a time", {"date": "2024-05-06T00:00:00"}, {"date": "2024-05-07"}),
    ("all-day compact date", {"date": "20240506"}, {"date": "2024-05-07"}),
    ("all-day invalid date", {"date": "2024-02-30"}, {"date": "2024-03-01"}),
    ("all-day date is a number", {"date": 20240506}, {"date": "2024-05-07"}),
    ("all-day start, timed end", {"date": "2024-05-06"}, {"dateTime": "2024-05-07T00:00:00Z"}),
    ("timed start, all-day end", {"dateTime": "2024-05-06T10:00:00Z"}, {"date": "2024-05-07"}),
    ("all-day start before year 1 in UTC", {"date": "0001-01-01"}, {"date": "0001-01-02"}),
]


@pytest.mark.parametrize(
    ("start_field", "end_field"),
    [case[1:] for case in MALFORMED_TIMES],
    ids=[case[0] for case in MALFORMED_TIMES],
)
def test_unusable_times_give_malformed(start_field: Any, end_field: Any) -> None:
    event = timed_event(start=start_field, end=end_field)
    # Auckland's midnight of 0001-01-01 lies before datetime.min in UTC.
    facts = parse_event(event, "Pacific/Auckland")
    assert (facts.start, facts.end) == (None, None)
    assert decide(facts, EVERYTHING_BUSY) is Reason.MALFORMED


@pytest.mark.parametrize("event", [{}, {"id": None}, {"id": 42}, {"id": ""}, {"summary": "x"}])
def test_event_without_a_usable_id_is_rejected(event: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="id"):
        parse_event(event, CALENDAR_ZONE)


@pytest.mark.parametrize("not_an_object", [None, [], "event", 3])
def test_non_object_event_is_rejected(not_an_object: Any) -> None:
    with pytest.raises(ValueError, match="id"):
        parse_event(not_an_object, CALENDAR_ZONE)


@pytest.mark.parametrize("zone", ["", "Mars/Olympus_Mons", "../etc/passwd", "Europe", None])
def test_unknown_calendar_zone_is_an_error_not_utc(zone: Any) -> None:
    # Falling back to UTC would put all-day events at UTC midnight: the bug calsync must avoid.
    with pytest.raises(ValueError, match="calendar time zone"):
        parse_event(all_day_event("2024-05-06", "2024-05-07"), zone)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
TIMESTAMPISH = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.dates().map(date.isoformat),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,12})?"
        r"([Zz]|[+-][0-9]{2}:[0-9]{2})?)?",
        fullmatch=True,
    ),
    st.text(max_size=30),
    JSON,
)
TIME_FIELD = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "date": TIMESTAMPISH,
            "dateTime": TIMESTAMPISH,
            "timeZone": st.sampled_from(["Europe/Berlin", "Nope/Nope", "", "UTC"]) | JSON,
        },
    ),
    JSON,
)
EVENT_LIKE = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=20)},
    optional={
        "status": st.sampled_from(["confirmed", "tentative", "cancelled"]) | JSON,
        "start": TIME_FIELD,
        "end": TIME_FIELD,
        "transparency": st.sampled_from(["opaque", "transparent"]) | JSON,
        "eventType": st.sampled_from(
            ["default", "outOfOffice", "focusTime", "workingLocation", "birthday", "fromGmail"]
        )
        | JSON,
        "attendees": st.lists(
            st.fixed_dictionaries(
                {}, optional={"self": st.booleans() | JSON, "responseStatus": JSON}
            )
            | JSON,
            max_size=3,
        )
        | JSON,
        "updated": TIMESTAMPISH,
        "summary": JSON,
        "recurringEventId": JSON,
        "originalStartTime": TIME_FIELD,
    },
)


def _check_facts(facts: EventFacts) -> None:
    assert (facts.start is None) == (facts.end is None)
    for instant in (facts.start, facts.end, facts.updated):
        assert instant is None or instant.utcoffset() == timedelta(0)
    reason = decide(facts)
    assert reason in set(Reason)
    if reason is Reason.BUSY:
        assert facts.start is not None and facts.end is not None and facts.start < facts.end


@settings(max_examples=300)
@given(
    event=st.dictionaries(st.text(max_size=12), JSON, max_size=8),
    event_id=st.text(min_size=1, max_size=20),
    zone=st.sampled_from(ZONES_FOR_PROPERTIES),
)
def test_parse_event_never_raises_on_arbitrary_objects(
    event: dict[str, Any], event_id: str, zone: str
) -> None:
    event["id"] = event_id
    facts = parse_event(event, zone)
    assert facts.google_event_id == event_id
    _check_facts(facts)


@settings(max_examples=300)
@given(event=EVENT_LIKE, zone=st.sampled_from(ZONES_FOR_PROPERTIES))
def test_parse_event_never_raises_on_event_shaped_objects(event: dict[str, Any], zone: str) -> None:
    facts = parse_event(event, zone)
    _check_facts(facts)
    for policy in (EVERYTHING_BUSY, NOTHING_OPTIONAL_BUSY):
        decide(facts, policy)


@given(
    moment=st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.timezones()
    )
)
def test_any_isoformat_timestamp_round_trips(moment: datetime) -> None:
    end = moment + timedelta(minutes=1)
    facts = parse_event(
        timed_event(start={"dateTime": moment.isoformat()}, end={"dateTime": end.isoformat()}),
        CALENDAR_ZONE,
    )
    # isoformat writes offsets with seconds for some historic zones (LMT); RFC 3339 cannot.
    if moment.utcoffset() is not None and moment.utcoffset() % timedelta(minutes=1):
        assert facts.start is None
        return
    # Compare in UTC: `==` across zones is always False for times whose offset depends on fold.
    assert facts.start == moment.astimezone(UTC)
    assert facts.end == end.astimezone(UTC)


# --- BusyPolicy JSON ----------------------------------------------------------------------


def test_policy_defaults_follow_design() -> None:
    assert BusyPolicy() == BusyPolicy(
        declined_busy=False,
        tentative_busy=True,
        out_of_office_busy=True,
        focus_time_busy=True,
        all_day_busy=True,
    )
    assert BusyPolicy.from_json(None) == BusyPolicy()
    assert BusyPolicy.from_json({}) == BusyPolicy()


def test_policy_to_json_uses_camel_case() -> None:
    assert BusyPolicy().to_json() == {
        "declinedBusy": False,
        "tentativeBusy": True,
        "outOfOfficeBusy": True,
        "focusTimeBusy": True,
        "allDayBusy": True,
    }


@pytest.mark.parametrize(
    ("key", "attribute"),
    [
        ("declinedBusy", "declined_busy"),
        ("tentativeBusy", "tentative_busy"),
        ("outOfOfficeBusy", "out_of_office_busy"),
        ("focusTimeBusy", "focus_time_busy"),
        ("allDayBusy", "all_day_busy"),
    ],
)
def test_policy_from_json_sets_one_key(key: str, attribute: str) -> None:
    default = getattr(BusyPolicy(), attribute)
    policy = BusyPolicy.from_json({key: not default})
    assert getattr(policy, attribute) is (not default)
    assert dataclasses.replace(policy, **{attribute: default}) == BusyPolicy()


@given(st.builds(BusyPolicy, *[st.booleans()] * 5))
def test_policy_json_round_trip(policy: BusyPolicy) -> None:
    assert BusyPolicy.from_json(policy.to_json()) == policy


@pytest.mark.parametrize("key", ["declined_busy", "declineBusy", "DeclinedBusy", "", "extra"])
def test_policy_unknown_key_is_named(key: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(key))):
        BusyPolicy.from_json({"tentativeBusy": True, key: True})


@pytest.mark.parametrize("value", [1, 0, "true", "false", None, [], {}, 1.0])
def test_policy_non_bool_value_is_rejected(value: Any) -> None:
    with pytest.raises(ValueError, match="allDayBusy"):
        BusyPolicy.from_json({"allDayBusy": value})


@pytest.mark.parametrize("data", [[], "declinedBusy", 3, [("declinedBusy", True)]])
def test_policy_must_be_an_object(data: Any) -> None:
    with pytest.raises(ValueError, match="object"):
        BusyPolicy.from_json(data)


def test_policy_is_immutable_and_hashable() -> None:
    policy = BusyPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.declined_busy = True  # type: ignore[misc]
    assert hash(policy) == hash(BusyPolicy())
