"""Which time ranges changed their busy/free answer for a host: the `changed` list of an
outbound `busy.changed` event. Pure: no I/O.

A write removes some blocks and adds others; every other block of the host stays. Only
inside the removed and added blocks can the answer differ, and there it differs exactly
where "others with removed" and "others with added" disagree. So a block moved within time the
host is busy anyway, or a block replaced by an identical one, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from rules.intervals import Interval, merge

Span = tuple[datetime, datetime]


def _union(spans: Iterable[Span]) -> list[Span]:
    return [(i.start, i.end) for i in merge(Interval(start, end) for start, end in spans)]


def subtract(spans: list[Span], holes: list[Span]) -> list[Span]:
    """`spans` minus `holes`; both sorted and non-overlapping (as `_union` gives them)."""
    result: list[Span] = []
    index = 0
    for start, end in spans:
        cursor = start
        while index < len(holes) and holes[index][1] <= cursor:
            index += 1
        probe = index
        while probe < len(holes) and holes[probe][0] < end:
            hole_start, hole_end = holes[probe]
            if hole_start > cursor:
                result.append((cursor, hole_start))
            cursor = max(cursor, hole_end)
            if cursor >= end:
                break
            probe += 1
        if cursor < end:
            result.append((cursor, end))
    return result


def changed_ranges(
    others: Iterable[Span], removed: Iterable[Span], added: Iterable[Span]
) -> list[Span]:
    """The merged, sorted ranges whose busy/free answer differs between before (others with
    removed) and after (others with added) the write. Empty spans are ignored."""
    removed, added = list(removed), list(added)
    if not removed and not added:
        return []
    candidates = _union([*removed, *added])
    # Only blocks touching a candidate range can matter: keep the work proportional.
    relevant = (
        [
            (start, end)
            for start, end in others
            if any(start < c_end and end > c_start for c_start, c_end in candidates)
        ]
        if len(candidates) < 64
        else list(others)
    )
    before = _union([*relevant, *removed])
    after = _union([*relevant, *added])
    return _union([*subtract(before, after), *subtract(after, before)])


def union_of(range_lists: Iterable[Iterable[Span]]) -> list[Span]:
    """Several events' `changed` lists as one (coalescing): merged and sorted."""
    return _union(span for spans in range_lists for span in spans)
