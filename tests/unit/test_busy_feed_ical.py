"""The fast VEVENT writer of the feeds (`busy_event_ical`) against icalendar, the reference:
the same bytes for any busy source, and so the same feeds and CalDAV resources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from icalendar import Calendar

from rules.busy_feed import (
    PRODID,
    BusySource,
    StaleCalendar,
    _calendar_shell,
    busy_calendar,
    busy_event,
    busy_event_ical,
    single_event_calendar,
)

# Names and categories with what TEXT escaping and line folding care about: backslashes,
# `\N`, separators, line breaks, carets, multi-byte characters, and lengths around 75 octets.
_tricky = st.sampled_from(["\\", "\\N", ";", ",", "\r\n", "\n", "\r", "^", "é", "€", "😀", "a"])
_text = st.lists(st.one_of(_tricky, st.text(max_size=3)), max_size=60).map("".join)
_zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
_moments = st.builds(
    lambda moment, zone: moment.replace(tzinfo=UTC).astimezone(zone),
    st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1)),
    _zones,
)
# The shell (icalendar's own) names stale calendars: Google ids and health states.
_stale = st.builds(StaleCalendar, st.emails(), st.sampled_from(["failing", "lagging"]))


@st.composite
def sources(draw: st.DrawFn) -> BusySource:
    start = draw(_moments)
    return BusySource(
        name=draw(st.one_of(_text, st.text(min_size=60, max_size=200))),
        start=start,
        end=start + draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=40))),
        category=draw(st.one_of(_text, st.just("manual"), st.emails())),
        changed_at=draw(_moments),
        stale=draw(st.booleans()),
    )


@given(sources())
def test_a_vevent_is_byte_identical_to_icalendar(source: BusySource) -> None:
    assert busy_event_ical(source) == busy_event(source).to_ical()


@given(st.lists(sources(), max_size=8), st.lists(_stale, max_size=3))
def test_the_feed_is_byte_identical_to_icalendar(
    feed: list[BusySource], stale: list[StaleCalendar]
) -> None:
    reference = _calendar_shell(stale)
    for source in sorted(feed, key=lambda s: (s.start, s.end, s.name)):
        reference.add_component(busy_event(source))
    assert busy_calendar(feed, stale) == reference.to_ical()


@given(sources())
def test_a_resource_is_byte_identical_to_icalendar(source: BusySource) -> None:
    reference = Calendar()
    reference.add("prodid", PRODID)
    reference.add("version", "2.0")
    reference.add_component(busy_event(source))
    assert single_event_calendar(source) == reference.to_ical()


def test_long_values_are_folded_as_icalendar_folds_them() -> None:
    moment = datetime(2026, 3, 1, 9, 30, 0, 250, tzinfo=UTC)
    source = BusySource("7-" + "\\" * 80 + "é" * 40, moment, moment, "x;y," * 30, moment, True)
    written = busy_event_ical(source)
    assert b"\r\n " in written
    assert written == busy_event(source).to_ical()
