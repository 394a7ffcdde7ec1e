"""The one RFC 3339 parser (rules.rfc3339), shared by the /v1 API and the busy rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.rfc3339 import (
    InvalidDateTime,
    MissingOffset,
    NotRfc3339,
    Rfc3339Error,
    parse_rfc3339,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


ACCEPTED = [
    ("2025-03-01T09:00:00Z", utc(2025, 3, 1, 9)),
    ("2025-03-01t09:00:00z", utc(2025, 3, 1, 9)),
    ("2025-03-01T09:00:00+00:00", utc(2025, 3, 1, 9)),
    ("2025-03-01T09:00:00-00:00", utc(2025, 3, 1, 9)),
    ("2025-03-01T10:00:00+01:00", utc(2025, 3, 1, 9)),
    ("2025-03-01T04:30:00-04:30", utc(2025, 3, 1, 9)),
    ("2025-03-01T09:00:00+23:59", utc(2025, 2, 28, 9, 1)),
    ("2025-03-01T09:00:00.5Z", utc(2025, 3, 1, 9, 0, 0, 500000)),
    ("2025-03-01T09:00:00.000+01:00", utc(2025, 3, 1, 8)),
    ("2025-03-01T09:00:00.123456Z", utc(2025, 3, 1, 9, 0, 0, 123456)),
    ("2025-03-01T09:00:00.123456789Z", utc(2025, 3, 1, 9, 0, 0, 123456)),  # truncated
    ("2024-02-29T23:59:59Z", utc(2024, 2, 29, 23, 59, 59)),
    ("2024-12-31T23:30:00-05:00", utc(2025, 1, 1, 4, 30)),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted_times_become_utc(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


REFUSED = [
    ("", NotRfc3339),
    ("tomorrow", NotRfc3339),
    ("2025-03-01", NotRfc3339),
    ("2025-03-01 09:00:00Z", NotRfc3339),  # a space is not the separator
    ("2025-03-01T09:00Z", NotRfc3339),  # seconds are required
    ("20250301T090000Z", NotRfc3339),  # the basic (compact) ISO 8601 form
    ("2025-03-01T09:00:00.Z", NotRfc3339),
    ("2025-03-01T09:00:00.1234567890Z", NotRfc3339),  # more than nanoseconds
    ("2025-03-01T09:00:00+0100", NotRfc3339),
    ("2025-03-01T09:00:00+01", NotRfc3339),
    ("2025-03-01T09:00:00Z\n", NotRfc3339),
    (" 2025-03-01T09:00:00Z", NotRfc3339),
    ("\uff12\uff10\uff12\uff15-03-01T09:00:00Z", NotRfc3339),  # full-width digits
    ("2025-03-01T09:00:00", MissingOffset),
    ("2025-02-30T09:00:00", MissingOffset),  # the missing offset is said first
    ("2025-02-30T09:00:00Z", InvalidDateTime),
    ("2025-13-01T09:00:00Z", InvalidDateTime),
    ("2025-03-01T24:00:00Z", InvalidDateTime),
    ("2025-03-01T09:60:00Z", InvalidDateTime),
    ("2016-12-31T23:59:60Z", InvalidDateTime),  # a leap second, unless asked for
    ("2025-03-01T09:00:00+24:00", InvalidDateTime),
    ("2025-03-01T09:00:00+05:60", InvalidDateTime),
    ("0000-01-01T00:00:00Z", InvalidDateTime),
    ("0001-01-01T00:00:00+01:00", InvalidDateTime),  # before year 1 in UTC
    ("9999-12-31T23:30:00-01:00", InvalidDateTime),  # after year 9999 in UTC
]


@pytest.mark.parametrize(("text", "error"), REFUSED, ids=[repr(c[0]) for c in REFUSED])
def test_refused_times_say_why(text: str, error: type[Rfc3339Error]) -> None:
    with pytest.raises(error):
        parse_rfc3339(text)


def test_errors_are_value_errors() -> None:
    assert issubclass(Rfc3339Error, ValueError)
    for error in (NotRfc3339, MissingOffset, InvalidDateTime):
        assert issubclass(error, Rfc3339Error)


def test_a_time_without_offset_is_read_in_the_given_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert parse_rfc3339("2024-05-06T10:00:00", zone_if_naive=berlin) == utc(2024, 5, 6, 8)
    assert parse_rfc3339("2024-01-15T10:00:00", zone_if_naive=berlin) == utc(2024, 1, 15, 9)
    # An explicit offset wins over the zone.
    assert parse_rfc3339("2024-05-06T10:00:00Z", zone_if_naive=berlin) == utc(2024, 5, 6, 10)


def test_a_leap_second_can_be_read_as_the_last_instant_of_second_59() -> None:
    parsed = parse_rfc3339("2016-12-31T23:59:60Z", leap_second_as_59=True)
    assert parsed == utc(2016, 12, 31, 23, 59, 59)
    with pytest.raises(InvalidDateTime):
        parse_rfc3339("2016-12-31T23:59:61Z", leap_second_as_59=True)


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@given(
    moment=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    offset_minutes=st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
def test_written_times_round_trip(moment: datetime, offset_minutes: int) -> None:
    offset = timedelta(minutes=offset_minutes)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}"
    text += _offset_text(offset)
    expected = moment.replace(tzinfo=timezone(offset)).astimezone(UTC)
    assert parse_rfc3339(text) == expected
