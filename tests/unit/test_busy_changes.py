"""The changed ranges of a busy write: tables of cases, then a property checked minute by
minute against the definition (busy before vs busy after)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.busy_changes import changed_ranges, subtract, union_of

BASE = datetime(2024, 5, 6, tzinfo=UTC)


def at(minute: int) -> datetime:
    return BASE + timedelta(minutes=minute)


def spans(*pairs: tuple[int, int]) -> list[tuple[datetime, datetime]]:
    return [(at(start), at(end)) for start, end in pairs]


@pytest.mark.parametrize(
    ("others", "removed", "added", "changed"),
    [
        # An event moved from 10:00 to 14:00: two ranges.
        ([], [(600, 660)], [(840, 900)], [(600, 660), (840, 900)]),
        # Nothing removed or added (a Free event): nothing changed.
        ([(600, 660)], [], [], []),
        # Added inside time already busy: nothing changed.
        ([(540, 720)], [], [(600, 660)], []),
        # Removed where another block still covers it: only the uncovered part changed.
        ([(600, 630)], [(600, 660)], [], [(630, 660)]),
        # Extended by 15 minutes: only the extension.
        ([], [(600, 660)], [(600, 675)], [(660, 675)]),
        # The same block removed and added again (a full resync): nothing.
        ([], [(600, 660)], [(600, 660)], []),
        # Adjacent changes merge into one range.
        ([], [(600, 660)], [(660, 720)], [(600, 720)]),
        # Removed and added blocks overlapping each other.
        ([], [(600, 700)], [(650, 750)], [(600, 650), (700, 750)]),
    ],
)
def test_changed_ranges_table(others, removed, added, changed) -> None:
    assert changed_ranges(spans(*others), spans(*removed), spans(*added)) == spans(*changed)


def test_subtract_cuts_holes() -> None:
    assert subtract(spans((0, 100)), spans((10, 20), (30, 40), (90, 120))) == spans(
        (0, 10), (20, 30), (40, 90)
    )
    assert subtract(spans((0, 10), (20, 30)), spans((0, 30))) == []


def test_union_of_merges_several_lists() -> None:
    assert union_of([spans((0, 10)), spans((5, 20), (30, 40))]) == spans((0, 20), (30, 40))


span = st.tuples(st.integers(0, 120), st.integers(1, 60)).map(lambda p: (p[0], p[0] + p[1]))
span_lists = st.lists(span, max_size=6)


def _minutes(pairs: list[tuple[int, int]]) -> set[int]:
    return {minute for start, end in pairs for minute in range(start, end)}


@given(others=span_lists, removed=span_lists, added=span_lists, many=st.booleans())
def test_changed_is_exactly_where_busy_differs(others, removed, added, many) -> None:
    """Minute by minute: a minute is inside `changed` iff its busy answer differs between
    others+removed and others+added; ranges are sorted, disjoint and not touching."""
    if many:  # past the candidate filter's threshold: every other block is compared
        others = others + [(200 + i, 201 + i) for i in range(70)]
        removed = removed + [(300 + 2 * i, 301 + 2 * i) for i in range(70)]
    before = _minutes(others) | _minutes(removed)
    after = _minutes(others) | _minutes(added)
    result = changed_ranges(spans(*others), spans(*removed), spans(*added))
    covered = {
        minute
        for start, end in result
        for minute in range(
            int((start - BASE).total_seconds() // 60), int((end - BASE).total_seconds() // 60)
        )
    }
    assert covered == before ^ after
    for (_, end), (start, _) in pairwise(result):
        assert end < start
    assert all(start < end for start, end in result)
