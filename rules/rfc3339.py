"""RFC 3339 date-times (section 5.6): the one parser for the API's input and Google's times.

Pure. Strict on purpose, so the API and the sync read a time the same way:
- `T` (or `t`) between date and time, seconds always present;
- at most nine fraction digits (nanoseconds); beyond microseconds they are truncated;
- offset `Z` (or `z`) or `±HH:MM` with HH ≤ 23 and MM ≤ 59;
- digits are [0-9]: `\\d` would accept other scripts.

What differs between callers is explicit: a time without an offset is refused unless the
caller names the zone to read it in (Google reads a zone-less `dateTime` in the event's
`timeZone`), and a leap second (`:60`) is refused unless the caller reads it as `:59`.
The result is always timezone-aware UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo

_DATE_TIME = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})"
    r"[Tt](?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})"
    r"(?:\.(?P<fraction>[0-9]{1,9}))?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


class Rfc3339Error(ValueError):
    """The text is not a usable RFC 3339 date-time; the subclass says why."""


class NotRfc3339(Rfc3339Error):
    """The text does not have the shape of an RFC 3339 date-time."""


class MissingOffset(Rfc3339Error):
    """The shape is right but there is no offset, and the caller gave no zone to assume."""


class InvalidDateTime(Rfc3339Error):
    """The shape is right but the values are not a time: 30 February, hour 24, offset
    24:00, or outside what `datetime` can hold once converted to UTC."""


def parse_rfc3339(
    text: str, *, zone_if_naive: tzinfo | None = None, leap_second_as_59: bool = False
) -> datetime:
    """`text` as a UTC datetime, or an `Rfc3339Error` subclass.

    `zone_if_naive`: the zone a time without an offset is read in; None refuses such times.
    `leap_second_as_59`: read second 60 as the last instant of second 59; else refuse it.
    """
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise NotRfc3339(f"{text[:64]!r} is not an RFC 3339 date-time")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if offset is None:
        if zone_if_naive is None:
            raise MissingOffset(f"{text[:64]!r} has no UTC offset")
        zone = zone_if_naive
    elif offset in ("Z", "z"):
        zone = UTC
    else:
        offset_hours, offset_minutes = int(offset[1:3]), int(offset[4:6])
        if offset_hours > 23 or offset_minutes > 59:
            raise InvalidDateTime(f"{text[:64]!r} has an offset out of range")
        sign = -1 if offset[0] == "-" else 1
        zone = timezone(sign * timedelta(hours=offset_hours, minutes=offset_minutes))
    if second == "60" and leap_second_as_59:
        second = "59"
    try:
        local = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=zone,
        )
        return local.astimezone(UTC)
    except (ValueError, OverflowError):  # 30 February, hour 24, year 1 minus an hour…
        raise InvalidDateTime(f"{text[:64]!r} is not a valid date and time") from None
