"""The block form: its values as typed, their checks, and the UTC ranges they make."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from flask import (
    request,
)

from rules.week_grid import (
    local_range,
    parse_clock,
    weekly_dates,
)
from webhook.host_pages.common import (
    NOTE_MAX,
)


@dataclass(frozen=True)
class BlockForm:
    """The block form's values (as typed) and its problems, per field."""

    day: str
    start: str
    end: str
    note: str
    repeat_until: str
    errors: dict[str, str]
    block_id: int | None = None
    # A block longer than its first local day (made with the API): this form cannot hold it.
    spans_days: str = ""


def empty_form(default_day: date) -> BlockForm:
    return BlockForm(default_day.isoformat(), "09:00", "10:00", "", "", {})


def form_from_request(block_id: int | None = None) -> BlockForm:
    return BlockForm(
        day=request.form.get("date", "").strip(),
        start=request.form.get("start", "").strip(),
        end=request.form.get("end", "").strip(),
        note=request.form.get("note", "").strip(),
        repeat_until=request.form.get("repeat_until", "").strip(),
        errors={},
        block_id=block_id,
    )


@dataclass(frozen=True)
class ParsedBlock:
    days: list[date]
    start_minutes: int
    end_minutes: int
    note: str


def parse_form(form: BlockForm, allow_repeat: bool) -> ParsedBlock | BlockForm:
    """The form's values checked; the form with its problems when they don't make sense."""
    errors: dict[str, str] = {}
    day: date | None = None
    try:
        day = date.fromisoformat(form.day)
    except ValueError:
        errors["date"] = "Give a date like 2026-12-08."
    start, end = parse_clock(form.start), parse_clock(form.end)
    if start is None or start >= 24 * 60:
        errors["start"] = "Pick a start time on a quarter hour (e.g. 14:00 or 14:15)."
    if end is None or end == 0:
        errors["end"] = "Pick an end time on a quarter hour (e.g. 16:30)."
    both_times = start is not None and end is not None and not errors.keys() & {"start", "end"}
    if both_times and end <= start:  # type: ignore[operator]
        errors["end"] = "The end must be after the start."
    if len(form.note) > NOTE_MAX:
        errors["note"] = f"Keep the note under {NOTE_MAX} characters."
    until: date | None = None
    if form.repeat_until and allow_repeat:
        try:
            until = date.fromisoformat(form.repeat_until)
        except ValueError:
            errors["repeat_until"] = "Give a date like 2027-03-01, or leave it empty."
        else:
            if day is not None and until < day:
                errors["repeat_until"] = "Repeat until a date on or after the first day."
            elif day is not None and until > day + timedelta(days=366):
                errors["repeat_until"] = "Repeat for a year at most."
    if errors or day is None or start is None or end is None:
        return BlockForm(**{**form.__dict__, "errors": errors})
    return ParsedBlock(weekly_dates(day, until), start, end, form.note)


def utc_ranges(parsed: ParsedBlock, form: BlockForm, zone: Any) -> list[tuple] | BlockForm:
    """Each day's [start, end) in UTC; the form with a problem when the clocks change inside
    the range so that nothing (or less than nothing) is left of it that day."""
    ranges = []
    for day in parsed.days:
        start, end = local_range(day, parsed.start_minutes, parsed.end_minutes, zone)
        if end <= start:
            problem = (
                f"On {day.strftime('%a %d %b')} the clocks change and {form.start}\u2013"
                f"{form.end} does not exist; pick another time."
            )
            return BlockForm(**{**form.__dict__, "errors": {"start": problem}})
        ranges.append((start, end))
    return ranges
