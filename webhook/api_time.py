"""RFC 3339 times and time windows of the /v1 API: parsed strictly, answered with a 400
that names the parameter, so a frontend never gets busy time for a window it did not mean.

An offset (`Z` or `±HH:MM`) is required: a bare local time is ambiguous, and guessing the
zone is how slots end up an hour off. The grammar is `rules.rfc3339`'s, shared with the sync;
a leap second (`:60`) is read as the last instant of `:59`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rules import rfc3339
from webhook.errors import ApiError

# Times outside these years are refused: nothing is synced there, and arithmetic around the
# datetime limits (year 1, year 9999) must not overflow into a 500.
MIN_YEAR = 1970
MAX_YEAR = 9000


def bad_parameter(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_parameter", f"{name}: {message}", extra={"parameter": name})


def parse_rfc3339(value: object, name: str) -> datetime:
    """A timezone-aware UTC datetime, or a 400 naming `name`."""
    if not isinstance(value, str) or not value:
        raise bad_parameter(name, "required, an RFC 3339 time such as 2025-03-01T09:00:00Z")
    try:
        moment = rfc3339.parse_rfc3339(value, leap_second_as_59=True)
    except rfc3339.NotRfc3339:
        raise bad_parameter(
            name, f"{value[:64]!r} is not an RFC 3339 time (e.g. 2025-03-01T09:00:00+01:00)"
        ) from None
    except rfc3339.MissingOffset:
        raise bad_parameter(
            name, f"{value[:64]!r} has no UTC offset; add Z or ±HH:MM (e.g. ...T09:00:00Z)"
        ) from None
    except rfc3339.InvalidDateTime:
        raise bad_parameter(name, f"{value[:64]!r} is not a valid date and time") from None
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise bad_parameter(name, f"must be between the years {MIN_YEAR} and {MAX_YEAR}")
    return moment


def format_rfc3339(moment: datetime) -> str:
    """UTC with a `Z`, whole seconds unless there are microseconds (as Google writes it)."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def parse_window(
    time_min: object,
    time_max: object,
    max_days: int,
    *,
    names: tuple[str, str] = ("timeMin", "timeMax"),
) -> Window:
    """`[timeMin, timeMax)`, both required, timeMin < timeMax, at most `max_days` long."""
    start = parse_rfc3339(time_min, names[0])
    end = parse_rfc3339(time_max, names[1])
    return check_window(start, end, max_days, names=names)


def check_window(
    start: datetime,
    end: datetime,
    max_days: int,
    *,
    names: tuple[str, str] = ("timeMin", "timeMax"),
) -> Window:
    """The window of two parsed times: start < end, at most `max_days` long."""
    if end <= start:
        raise bad_parameter(names[1], f"must be later than {names[0]}")
    if end - start > timedelta(days=max_days):
        raise bad_parameter(
            names[1],
            f"the window is longer than {max_days} days (CALSYNC_MAX_WINDOW_DAYS); "
            "ask for several shorter windows",
        )
    return Window(start, end)


def parse_flag(value: str | None, name: str) -> bool:
    """A query-string boolean: true/false/1/0; absent is false."""
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise bad_parameter(name, "must be true or false")
