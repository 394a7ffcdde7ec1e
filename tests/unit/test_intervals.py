"""Interval merge and clip: tables, then properties checked minute by minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.intervals import Interval, clip, merge

BASE = datetime(2024, 5, 6, tzinfo=UTC)


def at(minute: int) -> datetime:
    return BASE + timedelta(minutes=minute)


def iv(start: int, end: int, *sources: str) -> Interval:
    return Interval(at(start), at(end), sources)


# --- Interval ------------------------------------------------------------------------------


def test_interval_rejects_end_before_start() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        iv(10, 9)


def test_interval_rejects_naive_bounds() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Interval(datetime(2024, 5, 6), at(10))
    with pytest.raises(ValueError, match="timezone-aware"):
        Interval(at(0), datetime(2024, 5, 7))


def test_interval_sources_become_a_tuple_so_it_stays_hashable() -> None:
    interval = Interval(at(0), at(1), ["a", "b"])  # type: ignore[arg-type]
    assert interval.sources == ("a", "b")
    assert hash(interval) == hash(iv(0, 1, "a", "b"))


def test_empty_interval() -> None:
    assert iv(5, 5).is_empty
    assert not iv(5, 6).is_empty


# --- merge ---------------------------------------------------------------------------------

MERGE_CASES: list[tuple[str, list[Interval], list[Interval], list[Interval]]] = [
    # name, input, expected with adjacent=True, expected with adjacent=False
    ("nothing", [], [], []),
    ("one", [iv(0, 10, "a")], [iv(0, 10, "a")], [iv(0, 10, "a")]),
    (
        "disjoint, unsorted",
        [iv(20, 30, "b"), iv(0, 10, "a")],
        [iv(0, 10, "a"), iv(20, 30, "b")],
        [iv(0, 10, "a"), iv(20, 30, "b")],
    ),
    ("overlapping", [iv(0, 10, "a"), iv(5, 15, "b")], [iv(0, 15, "a", "b")], [iv(0, 15, "a", "b")]),
    (
        "touching",
        [iv(0, 10, "a"), iv(10, 20, "b")],
        [iv(0, 20, "a", "b")],
        [iv(0, 10, "a"), iv(10, 20, "b")],
    ),
    (
        "one minute gap stays",
        [iv(0, 10, "a"), iv(11, 20, "b")],
        [iv(0, 10, "a"), iv(11, 20, "b")],
        [iv(0, 10, "a"), iv(11, 20, "b")],
    ),
    (
        "contained",
        [iv(0, 30, "outer"), iv(10, 20, "inner")],
        [iv(0, 30, "outer", "inner")],
        [iv(0, 30, "outer", "inner")],
    ),
    (
        "contained, listed first",
        [iv(10, 20, "inner"), iv(0, 30, "outer")],
        [iv(0, 30, "outer", "inner")],
        [iv(0, 30, "outer", "inner")],
    ),
    (
        "same start, shorter one first in output sources",
        [iv(0, 30, "long"), iv(0, 10, "short")],
        [iv(0, 30, "short", "long")],
        [iv(0, 30, "short", "long")],
    ),
    (
        "identical intervals, input order of sources",
        [iv(0, 10, "b"), iv(0, 10, "a")],
        [iv(0, 10, "b", "a")],
        [iv(0, 10, "b", "a")],
    ),
    (
        "duplicate sources once",
        [iv(0, 10, "a", "b"), iv(5, 15, "b", "a", "c")],
        [iv(0, 15, "a", "b", "c")],
        [iv(0, 15, "a", "b", "c")],
    ),
    (
        "chain",
        [iv(0, 10, "a"), iv(8, 20, "b"), iv(20, 25, "c"), iv(24, 40, "d")],
        [iv(0, 40, "a", "b", "c", "d")],
        [iv(0, 20, "a", "b"), iv(20, 40, "c", "d")],
    ),
    (
        "later interval inside an earlier merged run",
        [iv(0, 10), iv(5, 50), iv(20, 30, "x")],
        [iv(0, 50, "x")],
        [iv(0, 50, "x")],
    ),
    (
        "empty intervals vanish",
        [iv(5, 5, "e"), iv(0, 5, "a"), iv(5, 10, "b"), iv(30, 30, "f")],
        [iv(0, 10, "a", "b")],
        [iv(0, 5, "a"), iv(5, 10, "b")],
    ),
    ("no sources", [iv(0, 10), iv(5, 20)], [iv(0, 20)], [iv(0, 20)]),
]


@pytest.mark.parametrize(
    ("intervals", "adjacent_merged", "touching_kept"),
    [case[1:] for case in MERGE_CASES],
    ids=[case[0] for case in MERGE_CASES],
)
def test_merge(
    intervals: list[Interval], adjacent_merged: list[Interval], touching_kept: list[Interval]
) -> None:
    assert merge(intervals) == adjacent_merged
    assert merge(intervals, adjacent=True) == adjacent_merged
    assert merge(intervals, adjacent=False) == touching_kept


def test_merge_accepts_any_iterable_and_leaves_input_alone() -> None:
    intervals = [iv(20, 30, "b"), iv(0, 25, "a")]
    assert merge(interval for interval in intervals) == [iv(0, 30, "a", "b")]
    assert intervals == [iv(20, 30, "b"), iv(0, 25, "a")]


def test_merge_compares_instants_across_offsets() -> None:
    berlin_summer = timezone(timedelta(hours=2))
    # 10:00+02:00 is 08:00Z: it touches an interval ending 08:00Z.
    morning = Interval(
        datetime(2024, 5, 6, 10, tzinfo=berlin_summer),
        datetime(2024, 5, 6, 11, tzinfo=berlin_summer),
        ("berlin",),
    )
    earlier = Interval(
        datetime(2024, 5, 6, 7, tzinfo=UTC), datetime(2024, 5, 6, 8, tzinfo=UTC), ("utc",)
    )
    [merged] = merge([morning, earlier])
    assert (merged.start, merged.end) == (
        datetime(2024, 5, 6, 7, tzinfo=UTC),
        datetime(2024, 5, 6, 9, tzinfo=UTC),
    )
    assert merged.sources == ("utc", "berlin")


# --- clip ----------------------------------------------------------------------------------

CLIP_CASES: list[tuple[str, list[Interval], int, int, list[Interval]]] = [
    ("nothing", [], 0, 100, []),
    ("inside", [iv(10, 20, "a")], 0, 100, [iv(10, 20, "a")]),
    ("exactly the window", [iv(0, 100, "a")], 0, 100, [iv(0, 100, "a")]),
    ("covers the window", [iv(-50, 150, "a")], 0, 100, [iv(0, 100, "a")]),
    ("over the start", [iv(-10, 10, "a")], 0, 100, [iv(0, 10, "a")]),
    ("over the end", [iv(90, 110, "a")], 0, 100, [iv(90, 100, "a")]),
    ("ends at the window start", [iv(-10, 0, "a")], 0, 100, []),
    ("starts at the window end", [iv(100, 110, "a")], 0, 100, []),
    ("before and after", [iv(-20, -10), iv(200, 300)], 0, 100, []),
    ("empty window", [iv(0, 100, "a")], 50, 50, []),
    ("empty interval inside", [iv(50, 50, "a")], 0, 100, []),
    (
        "input order kept",
        [iv(90, 120, "late"), iv(-5, 5, "early")],
        0,
        100,
        [iv(90, 100, "late"), iv(0, 5, "early")],
    ),
    (
        "overlaps are not merged",
        [iv(0, 50, "a"), iv(40, 60, "b")],
        0,
        100,
        [iv(0, 50, "a"), iv(40, 60, "b")],
    ),
]


@pytest.mark.parametrize(
    ("intervals", "start", "end", "expected"),
    [case[1:] for case in CLIP_CASES],
    ids=[case[0] for case in CLIP_CASES],
)
def test_clip(intervals: list[Interval], start: int, end: int, expected: list[Interval]) -> None:
    assert clip(intervals, at(start), at(end)) == expected


def test_clip_rejects_a_backwards_window() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        clip([iv(0, 10)], at(10), at(0))


# --- properties ----------------------------------------------------------------------------

SOURCES = st.lists(st.sampled_from("abcdef"), max_size=3).map(tuple)


@st.composite
def intervals(draw: st.DrawFn) -> Interval:
    start = draw(st.integers(min_value=0, max_value=120))
    length = draw(st.integers(min_value=0, max_value=40))
    return Interval(at(start), at(start + length), draw(SOURCES))


INTERVAL_LISTS = st.lists(intervals(), max_size=12)


def minutes(intervals: list[Interval]) -> set[int]:
    """The set of minutes [m, m+1) covered; endpoints are whole minutes, so this is exact."""
    covered: set[int] = set()
    for interval in intervals:
        first = (interval.start - BASE) // timedelta(minutes=1)
        last = (interval.end - BASE) // timedelta(minutes=1)
        covered.update(range(first, last))
    return covered


@given(INTERVAL_LISTS, st.booleans())
def test_merge_output_is_sorted_disjoint_and_covers_exactly_the_union(
    given_intervals: list[Interval], adjacent: bool
) -> None:
    merged = merge(given_intervals, adjacent=adjacent)
    assert minutes(merged) == minutes(given_intervals)
    assert all(not interval.is_empty for interval in merged)
    for before, after in pairwise(merged):
        if adjacent:
            assert before.end < after.start  # a gap, else they would have been merged
        else:
            assert before.end <= after.start


@given(INTERVAL_LISTS, st.booleans())
def test_merge_sources_are_the_union_of_the_merged_inputs(
    given_intervals: list[Interval], adjacent: bool
) -> None:
    merged = merge(given_intervals, adjacent=adjacent)
    for output in merged:
        contained = [
            interval
            for interval in given_intervals
            if not interval.is_empty
            and output.start <= interval.start
            and interval.end <= output.end
        ]
        assert contained, "every output interval comes from some input"
        assert set(output.sources) == {source for i in contained for source in i.sources}
        assert len(output.sources) == len(set(output.sources))
    # every non-empty input lies within exactly one output
    for interval in given_intervals:
        if not interval.is_empty:
            holders = [o for o in merged if o.start <= interval.start and interval.end <= o.end]
            assert len(holders) == 1


@given(INTERVAL_LISTS, st.booleans())
def test_merge_is_idempotent_and_order_independent_in_coverage(
    given_intervals: list[Interval], adjacent: bool
) -> None:
    merged = merge(given_intervals, adjacent=adjacent)
    assert merge(merged, adjacent=adjacent) == merged
    reversed_merge = merge(list(reversed(given_intervals)), adjacent=adjacent)
    assert [(i.start, i.end) for i in reversed_merge] == [(i.start, i.end) for i in merged]
    assert [set(i.sources) for i in reversed_merge] == [set(i.sources) for i in merged]


@given(INTERVAL_LISTS)
def test_touching_only_merges_further(given_intervals: list[Interval]) -> None:
    # adjacent=True can only join what adjacent=False leaves touching
    assert merge(merge(given_intervals, adjacent=False)) == merge(given_intervals)


@given(
    INTERVAL_LISTS,
    st.integers(min_value=-10, max_value=170),
    st.integers(min_value=0, max_value=100),
)
def test_clip_stays_within_bounds_and_covers_the_intersection(
    given_intervals: list[Interval], window_start: int, window_length: int
) -> None:
    start, end = at(window_start), at(window_start + window_length)
    clipped = clip(given_intervals, start, end)
    window = set(range(window_start, window_start + window_length))
    for interval in clipped:
        assert start <= interval.start < interval.end <= end
    assert minutes(clipped) == minutes(given_intervals) & window
    # each piece is its input cut to the window, in input order, sources kept
    assert clipped == [
        Interval(max(i.start, start), min(i.end, end), i.sources)
        for i in given_intervals
        if max(i.start, start) < min(i.end, end)
    ]
    assert clip(clipped, start, end) == clipped
    # clipping and merging commute on where the intervals are (sources may differ: merging
    # first keeps the sources of parts outside the window)
    assert [(i.start, i.end) for i in merge(clipped)] == [
        (i.start, i.end) for i in clip(merge(given_intervals), start, end)
    ]
