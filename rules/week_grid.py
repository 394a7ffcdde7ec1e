"""The host's week view as plain data: which days, which quarter-hour rows each busy span
covers, and the local times a host types into the block form.

Pure: no I/O, no Flask. Rows are local wall-clock quarters (00:00 = row 0, 23:45 = row 95),
so a day that loses or gains an hour to DST still draws as 24 hours, like a paper diary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

QUARTERS_PER_DAY = 96
MAX_REPEATS = 53  # "repeat weekly until …" covers a year at most
_CLOCK = re.compile(r"^(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class GridBlock:
    row: int  # first quarter row, 0..95
    span: int  # quarter rows, >= 1
    label: str  # "09:00 to 10:30 Work" (with an en dash)
    colour_index: int  # the source's place in the legend
    kind: str  # "calendar" | "manual" | "nonblocking"
    block_id: int | None = None  # manual blocks: editable
    note: str = ""


@dataclass(frozen=True)
class GridDay:
    day: date
    label: str  # "Tue 08 Dec"
    is_today: bool
    start_utc: datetime
    end_utc: datetime
    now_row: int | None  # the current quarter, today only
    blocks: list[GridBlock] = field(default_factory=list)


@dataclass(frozen=True)
class Span:
    start: datetime  # UTC
    end: datetime
    label: str
    colour_index: int
    kind: str
    block_id: int | None = None
    note: str = ""


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def parse_week(text: str | None, today: date) -> date:
    """The Monday of the week `?week=YYYY-MM-DD` names (any day of it); this week when
    absent or not a date."""
    if text:
        try:
            return monday_of(date.fromisoformat(text))
        except ValueError:
            pass
    return monday_of(today)


def local_midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def clock_choices() -> list[str]:
    """Every quarter hour of a day, '00:00' … '23:45', then '24:00' (the end of the day)."""
    return [f"{q // 4:02d}:{q % 4 * 15:02d}" for q in range(QUARTERS_PER_DAY)] + ["24:00"]


def parse_clock(text: str) -> int | None:
    """Minutes after midnight for 'HH:MM' on a quarter hour (24:00 allowed), else None."""
    match = _CLOCK.match(text.strip())
    if not match:
        return None
    hours, minutes = int(match.group(1)), int(match.group(2))
    total = hours * 60 + minutes
    if minutes % 15 or minutes >= 60 or total > 24 * 60:
        return None
    return total


def local_range(
    day: date, from_minutes: int, to_minutes: int, zone: tzinfo
) -> tuple[datetime, datetime]:
    """[from, to) of a local day in UTC; to = 24:00 is the next midnight."""

    def at(minutes: int) -> datetime:
        moment = day + timedelta(days=minutes // (24 * 60))
        minutes %= 24 * 60
        local = datetime.combine(moment, time(minutes // 60, minutes % 60), tzinfo=zone)
        return local.astimezone(UTC)

    return at(from_minutes), at(to_minutes)


def weekly_dates(first: date, until: date | None) -> list[date]:
    """`first`, then the same weekday each week up to and including `until`."""
    dates = [first]
    while until is not None and len(dates) < MAX_REPEATS:
        following = dates[-1] + timedelta(days=7)
        if following > until:
            break
        dates.append(following)
    return dates


def _row(moment: datetime, zone: tzinfo, day: date) -> int:
    local = moment.astimezone(zone)
    if local.date() > day:
        return QUARTERS_PER_DAY
    return min(QUARTERS_PER_DAY, (local.hour * 60 + local.minute) // 15)


def clock_text(moment: datetime, zone: tzinfo, day: date) -> str:
    local = moment.astimezone(zone)
    return "24:00" if local.date() > day else local.strftime("%H:%M")


def week_grid(monday: date, zone: tzinfo, now: datetime, spans: list[Span]) -> list[GridDay]:
    """Seven days from `monday`, each with the spans that touch it cut at its edges."""
    days = []
    for offset in range(7):
        day = monday + timedelta(days=offset)
        start, end = local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)
        is_today = start <= now < end
        blocks = []
        for span in sorted(spans, key=lambda s: (s.start, s.colour_index)):
            lo, hi = max(span.start, start), min(span.end, end)
            if lo >= hi:
                continue
            row = min(_row(lo, zone, day), QUARTERS_PER_DAY - 1)
            # At least one row: a 5-minute block must still be visible and clickable.
            span_rows = max(1, _row(hi, zone, day) - row + (1 if _partial(hi, zone) else 0))
            times = f"{clock_text(lo, zone, day)}\u2013{clock_text(hi, zone, day)}"
            blocks.append(
                GridBlock(
                    row=row,
                    span=min(span_rows, QUARTERS_PER_DAY - row),
                    label=f"{times} {span.label}",
                    colour_index=span.colour_index,
                    kind=span.kind,
                    block_id=span.block_id,
                    note=span.note,
                )
            )
        days.append(
            GridDay(
                day=day,
                label=day.strftime("%a %d %b"),
                is_today=is_today,
                start_utc=start,
                end_utc=end,
                now_row=_row(now, zone, day) if is_today else None,
                blocks=blocks,
            )
        )
    return days


def _partial(moment: datetime, zone: tzinfo) -> bool:
    """Whether a span ending at `moment` ends inside a quarter (then that quarter is drawn)."""
    local = moment.astimezone(zone)
    return bool(local.minute % 15 or local.second or local.microsecond)


def week_label(monday: date) -> str:
    sunday = monday + timedelta(days=6)
    if monday.month == sunday.month:
        return f"{monday.day}\u2013{sunday.day} {sunday.strftime('%B %Y')}"
    return f"{monday.strftime('%d %b')} \u2013 {sunday.strftime('%d %b %Y')}"


# A few words per "does not block" reason, for a grid label or a popover line:
# "Lunch — marked Free in Google". The full sentences are rules.busy_rules.EXPLANATIONS.
SHORT_REASONS: dict[str, str] = {
    "free": "marked Free in Google",
    "declined": "you declined",
    "tentative": "you answered Maybe",
    "needs_action": "not answered yet",
    "working_location": "working location",
    "birthday": "birthday",
    "out_of_office": "out of office",
    "focus_time": "focus time",
    "all_day": "all-day event",
    "zero_length": "no length",
    "cancelled": "cancelled",
    "busy": "blocks bookings",
}


def short_reason(reason: str) -> str:
    return SHORT_REASONS.get(reason, reason.replace("_", " "))
