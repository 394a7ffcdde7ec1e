"""The week view's pure rules (rules/week_grid.py) and the sync log's words
(rules/sync_log.py), as tables of cases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.sync_log import RunFacts, seconds_text, week_summary
from rules.week_grid import (
    MAX_REPEATS,
    Span,
    clock_choices,
    local_range,
    parse_clock,
    parse_week,
    week_grid,
    weekly_dates,
)

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("00:00", 0),
        ("09:15", 555),
        ("23:45", 1425),
        ("24:00", 1440),
        (" 14:30 ", 870),
        ("14:07", None),
        ("24:15", None),
        ("9:00", None),
        ("14:60", None),
        ("", None),
        ("ab:cd", None),
    ],
)
def test_parse_clock(text: str, minutes: int | None) -> None:
    assert parse_clock(text) == minutes


def test_clock_choices_are_every_quarter_then_midnight() -> None:
    choices = clock_choices()
    assert len(choices) == 97 and choices[:2] == ["00:00", "00:15"] and choices[-1] == "24:00"
    assert all(parse_clock(choice) is not None for choice in choices)


@pytest.mark.parametrize(
    ("text", "monday"),
    [
        (None, date(2026, 12, 7)),
        ("", date(2026, 12, 7)),
        ("2026-12-13", date(2026, 12, 7)),  # a Sunday belongs to the week before it
        ("2026-12-14", date(2026, 12, 14)),
        ("not a date", date(2026, 12, 7)),
    ],
)
def test_parse_week(text: str | None, monday: date) -> None:
    assert parse_week(text, date(2026, 12, 10)) == monday


def test_local_range_is_dst_correct() -> None:
    # 25-hour day (clocks go back): 00:00-24:00 is 25 hours long.
    start, end = local_range(date(2026, 10, 25), 0, 24 * 60, BERLIN)
    assert end - start == timedelta(hours=25)
    start, end = local_range(date(2026, 12, 8), 14 * 60, 16 * 60 + 30, BERLIN)
    assert (start, end) == (
        datetime(2026, 12, 8, 13, tzinfo=UTC),
        datetime(2026, 12, 8, 15, 30, tzinfo=UTC),
    )


def test_weekly_dates() -> None:
    first = date(2026, 12, 8)
    assert weekly_dates(first, None) == [first]
    assert weekly_dates(first, date(2026, 12, 21)) == [first, date(2026, 12, 15)]
    assert weekly_dates(first, date(2026, 12, 22)) == [
        first,
        date(2026, 12, 15),
        date(2026, 12, 22),
    ]
    assert len(weekly_dates(first, first + timedelta(days=3650))) == MAX_REPEATS


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def test_week_grid_places_spans_on_quarter_rows_and_cuts_them_at_midnight() -> None:
    spans = [
        Span(_at(8, 14), _at(8, 16, 30), "Work", 0, "calendar"),
        Span(_at(9, 23), _at(10, 1), "Night", 1, "calendar"),  # crosses midnight
        Span(_at(10, 9, 5), _at(10, 9, 10), "Short", 0, "calendar"),  # 5 minutes: one row
        Span(_at(11, 9, 10), _at(11, 9, 50), "Odd", 0, "manual", block_id=7),
    ]
    days = week_grid(date(2026, 12, 7), BERLIN, _at(8, 12, 20), spans)
    assert [d.day.day for d in days] == [7, 8, 9, 10, 11, 12, 13]
    assert days[1].is_today and days[1].now_row == 49 and days[0].now_row is None
    work = days[1].blocks[0]
    assert (work.row, work.span, work.label) == (56, 10, "14:00\u201316:30 Work")
    assert [(b.row, b.span, b.label) for b in days[2].blocks] == [(92, 4, "23:00\u201324:00 Night")]
    assert [(b.row, b.span) for b in days[3].blocks] == [(0, 4), (36, 1)]
    odd = days[4].blocks[0]
    assert (odd.row, odd.span, odd.block_id) == (36, 4, 7)  # 09:10-09:50 covers 09:00-10:00


@given(
    start_minute=st.integers(min_value=0, max_value=7 * 24 * 60 - 1),
    length=st.integers(min_value=1, max_value=3 * 24 * 60),
)
def test_every_span_stays_inside_the_grid(start_minute: int, length: int) -> None:
    start = datetime(2026, 10, 19, tzinfo=BERLIN).astimezone(UTC) + timedelta(minutes=start_minute)
    span = Span(start, start + timedelta(minutes=length), "x", 0, "calendar")
    days = week_grid(date(2026, 10, 19), BERLIN, start, [span])  # a week with a DST change
    blocks = [b for d in days for b in d.blocks]
    assert blocks
    for block in blocks:
        assert 0 <= block.row < 96 and block.span >= 1 and block.row + block.span <= 96


def _run(outcome: str = "ok", lag_ms: int | None = None) -> RunFacts:
    return RunFacts("Work", _at(8, 9), "incremental", "push", 1, 1, 0, 120, lag_ms, outcome, None)


def test_week_summary_in_words() -> None:
    runs = [_run(lag_ms=1400), _run(lag_ms=300), _run("failed"), _run("needs_reauth"), _run()]
    renewals = [_at(8, 10), _at(8, 22), _at(10, 3)]
    assert week_summary(runs, renewals, BERLIN) == (
        "5 syncs, 2 failures, longest lag 1.4 s, channel renewed Tue, Thu"
    )
    assert week_summary([_run()], [], BERLIN) == (
        "1 sync, 0 failures, no push-triggered lag, no channel renewal"
    )


@pytest.mark.parametrize(
    ("milliseconds", "words"),
    [
        (None, "—"),
        (0, "0 ms"),
        (999, "999 ms"),
        (1400, "1.4 s"),
        (45_000, "45 s"),
        (600_000, "10 min"),
    ],
)
def test_seconds_text(milliseconds: int | None, words: str) -> None:
    assert seconds_text(milliseconds) == words
