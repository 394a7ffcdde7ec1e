"""Half-open time intervals `[start, end)` and the set operations busy reads need.

Pure: no I/O. Used to turn busy blocks of several calendars and manual blocks into the merged
busy intervals the API returns, each carrying the sources (event keys, block ids) behind it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Interval:
    """`[start, end)` between timezone-aware datetimes; `sources` say what it stands for."""

    start: datetime
    end: datetime
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.start.utcoffset() is None or self.end.utcoffset() is None:
            raise ValueError("interval bounds must be timezone-aware")
        if self.end < self.start:
            raise ValueError(f"interval ends before it starts: {self.start} > {self.end}")
        if not isinstance(self.sources, tuple):  # keep it hashable when given a list
            object.__setattr__(self, "sources", tuple(self.sources))

    @property
    def is_empty(self) -> bool:
        return self.end == self.start


def merge(intervals: Iterable[Interval], *, adjacent: bool = True) -> list[Interval]:
    """The union as sorted, non-overlapping intervals; empty intervals are dropped.

    With `adjacent=True` intervals that only touch (`a.end == b.start`) become one, so a
    frontend sees 10:00-12:00 instead of 10:00-11:00 and 11:00-12:00. Sources are unioned in
    the order met (by start, then end, then input order), each once.
    """
    ordered = sorted(
        (interval for interval in intervals if not interval.is_empty),
        key=lambda interval: (interval.start, interval.end),
    )
    # (start, end, sources as an ordered set) per output interval
    spans: list[tuple[datetime, datetime, dict[str, None]]] = []
    for interval in ordered:
        if spans and (
            interval.start < spans[-1][1] or (adjacent and interval.start == spans[-1][1])
        ):
            span_start, span_end, span_sources = spans[-1]
            spans[-1] = (span_start, max(span_end, interval.end), span_sources)
            span_sources.update(dict.fromkeys(interval.sources))
        else:
            spans.append((interval.start, interval.end, dict.fromkeys(interval.sources)))
    return [Interval(start, end, tuple(sources)) for start, end, sources in spans]


def clip(intervals: Iterable[Interval], start: datetime, end: datetime) -> list[Interval]:
    """Each interval cut to `[start, end)`, in input order; those left empty are dropped."""
    if end < start:
        raise ValueError(f"clip window ends before it starts: {start} > {end}")
    clipped: list[Interval] = []
    for interval in intervals:
        clipped_start = max(interval.start, start)
        clipped_end = min(interval.end, end)
        if clipped_start < clipped_end:
            clipped.append(Interval(clipped_start, clipped_end, interval.sources))
    return clipped
