"""The status page's pure presentation: words for durations and states, and where each busy
span lands on the day rows (DST days, midnight crossings, tiny blocks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from rules.status_presenter import (
    Source,
    calendar_card,
    day_windows,
    duration_words,
    host_zone,
    relative_words,
    timeline,
)

BERLIN = ZoneInfo("Europe/Berlin")
DASH = "\u2013"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 seconds"),
        (1, "1 second"),
        (89, "89 seconds"),
        (90, "2 minutes"),
        (245, "4 minutes"),
        (60 * 60, "60 minutes"),
        (90 * 60, "2 hours"),
        (3 * 3600 + 10, "3 hours"),
        (36 * 3600, "2 days"),
        (5 * 86400 - 5, "5 days"),
        (-3, "0 seconds"),
    ],
)
def test_duration_words(seconds: float, words: str) -> None:
    assert duration_words(seconds) == words


def test_relative_words_past_future_and_now() -> None:
    now = datetime(2025, 6, 10, 12, tzinfo=UTC)
    assert relative_words(now - timedelta(minutes=3), now) == "3 minutes ago"
    assert relative_words(now + timedelta(days=6), now) == "in 6 days"
    assert relative_words(now + timedelta(seconds=2), now) == "just now"


def test_unknown_zone_falls_back_to_utc() -> None:
    assert host_zone("Mars/Olympus") == (UTC, "UTC")
    zone, name = host_zone(None)
    assert name == "UTC" and zone.utcoffset(datetime(2025, 6, 1)) == timedelta(0)
    assert host_zone("Europe/Berlin")[1] == "Europe/Berlin"


def test_day_windows_follow_local_midnight_across_dst() -> None:
    now = datetime(2025, 3, 29, 10, tzinfo=UTC)
    windows = day_windows(now, BERLIN, 3)
    lengths = [(end - start).total_seconds() / 3600 for _day, start, end in windows]
    assert lengths == [24, 23, 24]  # clocks go forward on Sunday 30 March
    assert windows[1][1] == datetime(2025, 3, 29, 23, tzinfo=UTC)


def _status(state: str, **overrides) -> dict:
    status = {
        "calendarId": 7,
        "googleCalendarId": "cal@example.com",
        "state": state,
        "lagSeconds": 0.0,
        "lastSuccessAt": "2025-06-10T11:58:00+00:00",
        "lastNotificationAt": None,
        "channelExpiresAt": None,
        "watchProblem": None,
        "lastError": None,
    }
    status.update(overrides)
    return status


def _card(status: dict):
    return calendar_card(
        status,
        name="Work",
        now=datetime(2025, 6, 10, 12, tzinfo=UTC),
        zone=BERLIN,
        reconnect_url="https://calsync.example/connect/google?host=3",
        polling_seconds=300,
        colour="#000000",
    )


@pytest.mark.parametrize(
    ("status", "tone", "headline"),
    [
        (_status("ok"), "good", "Up to date"),
        (_status("syncing"), "info", "Syncing now"),
        (_status("syncing", lastSuccessAt=None, lagSeconds=None), "info", "First sync in progress"),
        (_status("lagging", lagSeconds=130.0), "warn", "Behind by 2 minutes"),
        (
            _status("not_watched"),
            "warn",
            "Not receiving push notifications — polling every 5 minutes",
        ),
        (_status("failing"), "bad", "Sync is failing"),
        (_status("needs_reauth"), "bad", "Google access was revoked — reconnect"),
    ],
)
def test_card_headline_and_tone_per_state(status: dict, tone: str, headline: str) -> None:
    card = _card(status)
    assert (card.tone, card.headline) == (tone, headline)
    if status["lastSuccessAt"] is None:
        assert card.last_sync is None
        return
    assert card.last_sync is not None
    assert card.last_sync.local == "Tue 10 Jun 2025, 13:58 CEST"
    assert card.last_sync.relative == "2 minutes ago"


def test_needs_reauth_card_links_to_reconnect_and_does_not_claim_zero_lag() -> None:
    card = _card(_status("needs_reauth"))
    assert card.action_url == "https://calsync.example/connect/google?host=3"
    assert card.error == "Google access was revoked or has expired."
    assert card.lag.startswith("Unknown")


def test_not_watched_card_gives_the_reason() -> None:
    card = _card(_status("not_watched", watchProblem="Google refused push notifications: x"))
    assert card.reason == "Google refused push notifications: x"
    assert _card(_status("not_watched")).reason == "No push channel is open for this calendar."
    expired = _card(_status("not_watched", channelExpiresAt="2025-06-10T09:00:00+00:00"))
    assert expired.reason == "The push channel expired 3 hours ago (Tue 10 Jun 2025, 11:00 CEST)."


def test_known_error_codes_get_plain_words_and_unknown_ones_keep_their_message() -> None:
    rate = _card(_status("failing", lastError={"code": "rate_limited", "message": "429"}))
    assert rate.error == "Google asked calsync to slow down."
    assert rate.fix is not None and "retries by itself" in rate.fix
    odd = _card(_status("failing", lastError={"code": "http_418", "message": "Teapot (418)."}))
    assert odd.error == "Teapot (418)."
    assert odd.fix == "If this keeps happening, tell the operator of calsync."


def test_timeline_places_spans_on_a_dst_day_and_splits_at_midnight() -> None:
    now = datetime(2025, 3, 29, 10, tzinfo=UTC)  # 11:00 in Berlin
    noon_on_dst_day = datetime(2025, 3, 30, 10, tzinfo=UTC)  # 12:00 CEST
    overnight = (datetime(2025, 3, 29, 21, tzinfo=UTC), datetime(2025, 3, 30, 0, tzinfo=UTC))
    source = Source(
        "Work",
        "#111111",
        "calendar",
        [(noon_on_dst_day, noon_on_dst_day + timedelta(hours=1), ""), (*overnight, "")],
    )
    tiny = Source(
        "Manual blocks",
        "#222222",
        "manual",
        [(now + timedelta(hours=1), now + timedelta(hours=1, minutes=1), "call")],
    )
    rows = timeline([source, tiny], [], now=now, zone=BERLIN, days=2)

    saturday, sunday = rows
    assert saturday.label == "Today, Sat 29 Mar" and saturday.is_today
    assert saturday.now_pct == pytest.approx(11 / 24 * 100, abs=0.001)
    assert [(e.times, e.source) for e in saturday.entries] == [
        (f"12:00{DASH}12:01", "Manual blocks"),
        (f"22:00{DASH}24:00", "Work"),
    ]
    assert saturday.lanes[2].bars[0].width_pct == 0.4  # a one-minute block stays visible
    assert saturday.entries[0].note == "call"

    assert sunday.now_pct is None and not sunday.is_today
    assert [e.times for e in sunday.entries] == [f"00:00{DASH}01:00", f"12:00{DASH}13:00"]
    work_bars = sunday.lanes[1].bars
    # The day has 23 hours: 12:00 CEST is 11 hours after midnight.
    assert work_bars[1].left_pct == pytest.approx(11 / 23 * 100, abs=0.001)
    assert work_bars[1].width_pct == pytest.approx(1 / 23 * 100, abs=0.001)
    assert [lane.kind for lane in sunday.lanes] == ["all", "calendar", "manual"]
