"""RFC 3339 and window parsing shared by the /v1 endpoints (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from webhook.api_time import format_rfc3339, parse_flag, parse_rfc3339, parse_window
from webhook.errors import ApiError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-01T09:00:00Z", datetime(2025, 3, 1, 9, tzinfo=UTC)),
        ("2025-03-01t09:00:00z", datetime(2025, 3, 1, 9, tzinfo=UTC)),
        ("2025-03-01T10:00:00+01:00", datetime(2025, 3, 1, 9, tzinfo=UTC)),
        ("2025-03-01T04:30:00-04:30", datetime(2025, 3, 1, 9, tzinfo=UTC)),
        ("2025-03-01T09:00:00.250Z", datetime(2025, 3, 1, 9, 0, 0, 250000, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_valid_times_become_utc(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text, "timeMin")
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (None, "required"),
        ("", "required"),
        ("2025-03-01T09:00:00", "no UTC offset"),
        ("2025-03-01 09:00:00Z", "not an RFC 3339"),
        ("2025-03-01", "not an RFC 3339"),
        ("tomorrow", "not an RFC 3339"),
        ("2025-02-30T09:00:00Z", "not a valid date"),
        ("2025-03-01T24:00:00Z", "not a valid date"),
        ("2025-03-01T09:00:00+24:00", "not a valid date"),
        ("0001-01-01T00:00:00+01:00", "not a valid date"),
        ("1969-12-31T23:59:59Z", "between the years"),
        ("9999-12-31T23:59:59Z", "between the years"),
        ("\uff12\uff10\uff12\uff15-03-01T09:00:00Z", "not an RFC 3339"),  # full-width digits
    ],
)
def test_bad_times_are_400_naming_the_parameter(text: str | None, words: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_rfc3339(text, "timeMin")
    assert caught.value.status == 400
    assert caught.value.message.startswith("timeMin: ")
    assert words in caught.value.message
    assert caught.value.extra == {"parameter": "timeMin"}


def test_window_rules() -> None:
    window = parse_window("2025-03-01T00:00:00Z", "2025-03-02T00:00:00+01:00", 92)
    assert window.end - window.start == timedelta(hours=23)
    for time_min, time_max, words in [
        ("2025-03-02T00:00:00Z", "2025-03-01T00:00:00Z", "later than timeMin"),
        ("2025-03-01T00:00:00Z", "2025-03-01T00:00:00Z", "later than timeMin"),
        ("2025-03-01T00:00:00Z", "2025-06-02T00:00:00Z", "longer than 92 days"),
    ]:
        with pytest.raises(ApiError) as caught:
            parse_window(time_min, time_max, 92)
        assert "timeMax: " in caught.value.message and words in caught.value.message
    assert parse_window("2025-03-01T00:00:00Z", "2025-06-01T00:00:00Z", 92)  # exactly 92 days


def test_format_and_flags() -> None:
    assert format_rfc3339(datetime(2025, 3, 1, 9, tzinfo=UTC)) == "2025-03-01T09:00:00Z"
    assert format_rfc3339(datetime(2025, 3, 1, 9, 0, 0, 500000, tzinfo=UTC)).endswith(":00.5Z")
    assert parse_flag(None, "strict") is False
    assert parse_flag("TRUE", "strict") is True and parse_flag("0", "strict") is False
    with pytest.raises(ApiError):
        parse_flag("yes", "strict")
