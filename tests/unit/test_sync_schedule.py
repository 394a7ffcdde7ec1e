"""When a calendar is due for a safety-net, poll or periodic full sync (pure rules)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.settings import Settings
from rules.sync_schedule import (
    BACKLOG_MESSAGES,
    SPREAD_AT_MOST,
    SPREAD_SHARE,
    CalendarTiming,
    Due,
    debounce_seconds,
    due,
    holds_for_backlog,
    jitter_factor,
    push_works,
    refused_watch_retry_seconds,
    renew_check_seconds,
    safety_net_check_seconds,
    spread_countdowns,
    sweep_check_seconds,
)

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
SETTINGS = Settings(
    safety_net_seconds=3600,
    poll_seconds=300,
    full_resync_seconds=7 * 86400,
    channel_silent_seconds=86400,
)


def timing(**overrides) -> CalendarTiming:
    values = {
        "calendar_id": 1,
        "last_success_at": NOW - timedelta(seconds=10),
        "full_sync_at": NOW - timedelta(days=1),
        "channel_expiration": NOW + timedelta(days=3),
        "channel_last_heard": NOW - timedelta(hours=2),
        "watch_refused": False,
    }
    values.update(overrides)
    return CalendarTiming(**values)


@given(st.integers(min_value=1, max_value=10**9), st.sampled_from(["sync", "full"]))
def test_jitter_stays_within_a_quarter(calendar_id: int, purpose: str) -> None:
    assert 0.75 <= jitter_factor(calendar_id, purpose) <= 1.25


def test_jitter_spreads_calendars() -> None:
    factors = [jitter_factor(n, "sync") for n in range(1, 1001)]
    assert min(factors) < 0.8 and max(factors) > 1.2
    assert len({round(f, 3) for f in factors}) > 300


@pytest.mark.parametrize(
    ("overrides", "works"),
    [
        ({}, True),
        ({"channel_expiration": None}, False),  # missing
        ({"channel_expiration": NOW}, False),  # expired
        ({"watch_refused": True}, False),  # refused
        ({"channel_last_heard": NOW - timedelta(hours=25)}, False),  # silent for long
        ({"channel_last_heard": None}, False),
    ],
)
def test_push_works(overrides: dict, works: bool) -> None:
    assert push_works(timing(**overrides), NOW, SETTINGS) is works


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, None),
        ({"last_success_at": None}, Due.SAFETY_NET),
        ({"last_success_at": NOW - timedelta(minutes=40)}, None),
        ({"last_success_at": NOW - timedelta(minutes=76)}, Due.SAFETY_NET),
        ({"last_success_at": NOW - timedelta(minutes=3)}, None),
        ({"last_success_at": NOW - timedelta(minutes=7), "channel_expiration": None}, Due.POLL),
        ({"last_success_at": NOW - timedelta(minutes=7), "watch_refused": True}, Due.POLL),
        ({"full_sync_at": NOW - timedelta(days=5)}, None),
        ({"full_sync_at": NOW - timedelta(days=9)}, Due.FULL),
        ({"full_sync_at": None}, Due.FULL),
    ],
)
def test_due(overrides: dict, expected: Due | None) -> None:
    assert due(timing(**overrides), NOW, SETTINGS) is expected


@given(st.integers(min_value=1, max_value=10**6), st.integers(min_value=0, max_value=10_000))
def test_never_longer_than_the_jittered_interval(calendar_id: int, age_seconds: int) -> None:
    watched = timing(calendar_id=calendar_id, last_success_at=NOW - timedelta(seconds=age_seconds))
    polled = timing(
        calendar_id=calendar_id,
        last_success_at=NOW - timedelta(seconds=age_seconds),
        channel_expiration=None,
    )
    if age_seconds >= 3600 * 1.25:
        assert due(watched, NOW, SETTINGS) is Due.SAFETY_NET
    if age_seconds < 3600 * 0.75:
        assert due(watched, NOW, SETTINGS) is None
    if age_seconds >= 300 * 1.25:
        assert due(polled, NOW, SETTINGS) is Due.POLL
    if age_seconds < 300 * 0.75:
        assert due(polled, NOW, SETTINGS) is None


# --- debounce before the first fetch ------------------------------------------------------

DEBOUNCE = Settings(debounce_ms=50, debounce_max_ms=300)


def ms(value: float) -> timedelta:
    return timedelta(milliseconds=value)


@pytest.mark.parametrize(
    ("dirty_ago", "last_ago", "expected_ms"),
    [
        (10, 10, 40),  # a lone notification: wait out the quiet window
        (60, 60, 0),  # already quiet
        (200, 5, 45),  # a burst still going: quiet window from its last notification
        (290, 5, 10),  # ... but never past the cap after the first one
        (400, 1, 0),  # past the cap: fetch now
    ],
)
def test_debounce_waits_for_quiet_but_not_past_the_cap(
    dirty_ago: float, last_ago: float, expected_ms: float
) -> None:
    wait = debounce_seconds(NOW, NOW - ms(dirty_ago), NOW - ms(last_ago), DEBOUNCE)
    assert wait == pytest.approx(expected_ms / 1000)


def test_the_quiet_window_allows_for_notifications_still_on_their_way() -> None:
    # Last seen 60 ms ago: quiet without a delay, 20 ms to go if one can take 30 ms to show.
    assert debounce_seconds(NOW, NOW - ms(100), NOW - ms(60), DEBOUNCE) == 0
    wait = debounce_seconds(NOW, NOW - ms(100), NOW - ms(60), DEBOUNCE, notice_delay_ms=30)
    assert wait == pytest.approx(0.02)
    # The cap after the first notification still holds.
    assert debounce_seconds(NOW, NOW - ms(300), NOW - ms(1), DEBOUNCE, notice_delay_ms=30) == 0


def test_no_debounce_without_a_dirty_mark_or_when_disabled() -> None:
    assert debounce_seconds(NOW, None, NOW, DEBOUNCE) == 0
    assert debounce_seconds(NOW, NOW, None, DEBOUNCE) == 0
    assert debounce_seconds(NOW, NOW, NOW, Settings(debounce_ms=0)) == 0


@given(
    st.floats(min_value=0, max_value=2000),
    st.floats(min_value=0, max_value=2000),
    st.integers(min_value=1, max_value=500),
    st.integers(min_value=0, max_value=2000),
)
def test_debounce_never_waits_past_the_cap_nor_the_quiet_window(
    dirty_ago: float, last_ago: float, quiet: int, cap: int
) -> None:
    settings = Settings(debounce_ms=quiet, debounce_max_ms=cap)
    wait_ms = debounce_seconds(NOW, NOW - ms(dirty_ago), NOW - ms(last_ago), settings) * 1000
    # timedelta keeps microseconds: allow a couple of them of rounding.
    assert 0 <= wait_ms <= max(0.0, cap - dirty_ago) + 0.002
    assert wait_ms <= quiet + 0.002


# --- how often beat checks channels and sweeps (issue 14, items 8 and 9) -------------------


@pytest.mark.parametrize(
    ("ttl", "renew_before", "poll", "expected"),
    [
        (20, 10, 300, 2.5),  # the case: checked 4 times inside the renew-ahead
        (7 * 86400, 86400, 300, 300.0),  # defaults: every 5 minutes as before
        (7 * 86400, 86400, 60, 60.0),  # short polling still wins
        (6, 2, 300, 1.0),  # floor: never more often than every second
    ],
)
def test_renew_check_follows_the_renew_ahead(
    ttl: int, renew_before: int, poll: int, expected: float
) -> None:
    from worker.celery_factory import _beat_schedule

    settings = Settings(
        channel_ttl_seconds=ttl, renew_before_seconds=renew_before, poll_seconds=poll
    )
    assert renew_check_seconds(settings) == expected
    assert _beat_schedule(settings)["renew-channels"]["schedule"] == expected


@given(
    renew_before=st.integers(1, 10 * 86400),
    poll=st.integers(1, 10 * 86400),
)
def test_renew_check_is_at_most_a_quarter_of_the_renew_ahead(renew_before: int, poll: int) -> None:
    every = renew_check_seconds(Settings(renew_before_seconds=renew_before, poll_seconds=poll))
    assert 1.0 <= every <= 300.0
    assert every <= max(1.0, renew_before / 4)


@pytest.mark.parametrize(
    ("sweep_after", "lease", "expected"),
    [(10, 6, 2.0), (10, 60, 5.0), (2, 6, 1.0), (10, 1, 1.0)],
)
def test_sweeper_runs_several_times_per_lease(
    sweep_after: int, lease: int, expected: float
) -> None:
    settings = Settings(sweep_after_seconds=sweep_after, lease_seconds=lease)
    assert sweep_check_seconds(settings) == expected


@given(refusals=st.integers(1, 60), calendar_id=st.integers(1, 10**6))
def test_a_refused_watch_is_retried_after_hours_never_more_than_a_day(
    refusals: int, calendar_id: int
) -> None:
    delay = refused_watch_retry_seconds(refusals, calendar_id)
    expected = 3600 * 2 ** min(refusals - 1, 10)
    assert min(expected * 0.75, 86400) <= delay <= min(expected * 1.25, 86400)


def test_a_rounds_scheduled_syncs_start_spread_over_most_of_the_round() -> None:
    # At 100,000 calendars a round finds ~140 due: started at once they held every pool
    # process for seconds while pushed changes waited (bench/RESULTS.md §8).
    round_seconds = safety_net_check_seconds(SETTINGS)
    countdowns = spread_countdowns(4, SETTINGS)
    assert countdowns[0] == 0
    steps = [b - a for a, b in itertools.pairwise(countdowns)]
    assert all(step == pytest.approx(round_seconds * SPREAD_SHARE / 4) for step in steps)
    assert max(countdowns) < round_seconds * SPREAD_SHARE
    assert spread_countdowns(0, SETTINGS) == []
    # A backlog goes to the broker undelayed (delayed messages wait in a worker's memory).
    assert set(spread_countdowns(SPREAD_AT_MOST + 1, SETTINGS)) == {0.0}


def test_rounds_hold_only_for_a_backlog_the_broker_reports() -> None:
    assert not holds_for_backlog(None)  # the broker could not say: the round sends
    assert not holds_for_backlog(0)
    assert not holds_for_backlog(BACKLOG_MESSAGES - 1)
    assert holds_for_backlog(BACKLOG_MESSAGES)


def test_the_safety_net_round_starts_its_syncs_spread(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import configure
    from worker import tasks

    configure(SETTINGS)
    started: list[tuple[int, str, bool, float]] = []
    due = [(1, Due.SAFETY_NET), (2, Due.POLL), (3, Due.FULL)]
    monkeypatch.setattr(tasks, "due_calendars", lambda _now: due)
    monkeypatch.setattr(
        tasks,
        "enqueue_sync",
        lambda cid, *, reason, full, force, countdown, scheduled: started.append(
            (cid, reason, full, countdown)
        ),
    )
    try:
        assert tasks.safety_net() == 3
    finally:
        configure(None)
    assert [(cid, reason, full) for cid, reason, full, _ in started] == [
        (1, str(Due.SAFETY_NET), False),
        (2, str(Due.POLL), False),
        (3, str(Due.FULL), True),
    ]
    assert [countdown for *_, countdown in started] == spread_countdowns(3, SETTINGS)
