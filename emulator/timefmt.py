"""RFC 3339 and Google event-time parsing/formatting shared by the emulator modules (no I/O)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)
# Google accepts a dateTime without offset when a timeZone is given next to it.
_LOCAL_DATETIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?")


def _components(match: re.Match[str]) -> tuple[int, ...]:
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction = match.group(7) or ""
    microsecond = int((fraction + "000000")[:6])  # nanoseconds and beyond are truncated
    return year, month, day, hour, minute, second, microsecond


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 timestamp ("Z" or "+hh:mm" offset, optional fraction) into UTC.

    Raises ValueError on anything else, including timestamps without an offset.
    """
    if not isinstance(value, str):
        raise ValueError(f"not an RFC 3339 string: {value!r}")
    match = _RFC3339.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    offset_text = match.group(8)
    if offset_text in ("Z", "z"):
        offset = timedelta(0)
    else:
        hours, minutes = int(offset_text[1:3]), int(offset_text[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"bad UTC offset in {value!r}")
        offset = timedelta(hours=hours, minutes=minutes) * (-1 if offset_text[0] == "-" else 1)
    parsed = datetime(*_components(match), tzinfo=timezone(offset))
    return parsed.astimezone(UTC)


def format_rfc3339(moment: datetime) -> str:
    """UTC RFC 3339 with a "Z" suffix and whole seconds, e.g. "2026-11-10T08:00:00Z"."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: a timezone-aware one is required")
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_rfc3339_local(moment: datetime, time_zone: str) -> str:
    """RFC 3339 in the given IANA zone with its offset, e.g. "2026-11-10T09:00:00+01:00"."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: a timezone-aware one is required")
    local = moment.astimezone(zone(time_zone)).replace(microsecond=0)
    return local.isoformat()


def zone(name: str) -> ZoneInfo:
    """The IANA zone called name; ValueError (not a KeyError subclass) when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def parse_local_datetime(value: str, time_zone: str) -> datetime:
    """A dateTime that may lack an offset: with offset -> that instant; without -> wall time in
    time_zone. Returns UTC."""
    try:
        return parse_rfc3339(value)
    except ValueError:
        match = _LOCAL_DATETIME.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise
    local = datetime(*_components(match), tzinfo=zone(time_zone))
    return local.astimezone(UTC)


def parse_event_time(when: Mapping[str, Any], default_time_zone: str) -> datetime:
    """The UTC instant of an event start/end object.

    {"dateTime": ..., "timeZone"?: ...}: the instant (an offset-less value is read in its own
    timeZone, else default_time_zone). {"date": "YYYY-MM-DD"}: local midnight of that day in
    default_time_zone (the calendar's zone; all-day events have none of their own).
    """
    if "dateTime" in when and when["dateTime"] is not None:
        return parse_local_datetime(when["dateTime"], when.get("timeZone") or default_time_zone)
    if "date" in when and when["date"] is not None:
        day = parse_date(when["date"])
        return datetime.combine(day, time(0), tzinfo=zone(default_time_zone)).astimezone(UTC)
    raise ValueError(f"event time has neither dateTime nor date: {dict(when)!r}")


def parse_date(value: str) -> date:
    """Strict "YYYY-MM-DD"."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(f"not a YYYY-MM-DD date: {value!r}")
    return date.fromisoformat(value)
