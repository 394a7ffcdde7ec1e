"""Reference busy intervals of a calendar, as the emulator's freeBusy.query reports them (pure).

The rules follow GOOGLE_NOTES.md "Busy semantics"; they are the emulator's own statement of
the truth that the product's materialized busy blocks are compared against.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from emulator.timefmt import format_rfc3339, parse_event_time, parse_rfc3339

__all__ = ["busy_intervals", "format_rfc3339", "is_busy", "parse_rfc3339", "render_busy"]

FREE_EVENT_TYPES = frozenset({"workingLocation", "birthday"})

Interval = tuple[datetime, datetime]


def is_busy(event: Mapping[str, Any]) -> bool:
    """Whether an event blocks time, its length aside.

    Google documents no freeBusy treatment of invitations the owner has not answered
    (`responseStatus: needsAction`) or answered "maybe" (`tentative`). The emulator's
    choice: both are busy (what vendors report of Google), as is an organizer-level
    `status: tentative`. calsync's audit accepts either answer for unanswered invitations
    only (rules/audit.py); see README.md "freeBusy.query"."""
    if event.get("status") == "cancelled":
        return False
    if event.get("transparency") == "transparent":
        return False
    if event.get("eventType") in FREE_EVENT_TYPES:
        return False
    return not any(
        attendee.get("self") and attendee.get("responseStatus") == "declined"
        for attendee in event.get("attendees") or []
    )


def _aware_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC)


def busy_intervals(
    events: Iterable[Mapping[str, Any]],
    calendar_time_zone: str,
    time_min: datetime,
    time_max: datetime,
) -> list[Interval]:
    """Merged busy intervals of single (already expanded) events within [time_min, time_max).

    All-day events cover whole days of calendar_time_zone (end date exclusive). Overlapping
    and touching intervals are merged; the result is sorted, clipped and in UTC.
    """
    time_min = _aware_utc(time_min, "time_min")
    time_max = _aware_utc(time_max, "time_max")
    clipped: list[Interval] = []
    for event in events:
        if not is_busy(event):
            continue
        if "start" not in event or "end" not in event:
            raise ValueError(f"event {event.get('id')!r} has no start/end")
        start = max(parse_event_time(event["start"], calendar_time_zone), time_min)
        end = min(parse_event_time(event["end"], calendar_time_zone), time_max)
        if start < end:  # also drops zero-length and inverted events
            clipped.append((start, end))
    clipped.sort()
    merged: list[Interval] = []
    for start, end in clipped:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def render_busy(intervals: Iterable[Interval]) -> list[dict[str, str]]:
    """The freeBusy.query "busy" list: [{"start": "...Z", "end": "...Z"}, ...]."""
    return [
        {"start": format_rfc3339(start), "end": format_rfc3339(end)} for start, end in intervals
    ]
