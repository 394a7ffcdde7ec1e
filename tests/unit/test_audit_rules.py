"""Audit comparison (rules/audit.py): tables, host-policy handling, and a minute-by-minute
property against a brute-force symmetric difference."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.audit import (
    UNDECIDED_RETRIES,
    StoredBlock,
    audit_check_seconds,
    audit_due,
    audit_interval_seconds,
    compare,
    differences_json,
    due_by_account,
    google_busy,
    our_busy,
    undecided_retry_seconds,
)
from rules.busy_rules import BusyPolicy, EventFacts
from rules.intervals import Interval

BASE = datetime(2026, 12, 7, tzinfo=UTC)


def at(minute: int) -> datetime:
    return BASE + timedelta(minutes=minute)


def iv(start: int, end: int) -> Interval:
    return Interval(at(start), at(end))


def spans(intervals: list[Interval]) -> list[tuple[int, int]]:
    return [
        (int((i.start - BASE).total_seconds() // 60), int((i.end - BASE).total_seconds() // 60))
        for i in intervals
    ]


@pytest.mark.parametrize(
    ("ours", "google", "expected"),
    [
        ([], [], []),
        ([(0, 60)], [(0, 60)], []),
        ([(0, 30), (30, 60)], [(0, 60)], []),  # touching blocks equal one freeBusy range
        ([], [(10, 20)], [(10, 20)]),  # missed at calsync: the double-booking side
        ([(10, 20)], [], [(10, 20)]),  # ghost block
        ([(0, 60)], [(30, 90)], [(0, 30), (60, 90)]),  # moved
        ([(0, 60)], [(0, 30), (40, 60)], [(30, 40)]),
        ([(-30, 10)], [], [(0, 10)]),  # clipped to the window
        ([(1000, 2000)], [], [(1000, 1440)]),
        ([(0, 10)], [(10, 20)], [(0, 20)]),  # adjacent differences merge into one range
    ],
)
def test_compare_table(
    ours: list[tuple[int, int]], google: list[tuple[int, int]], expected: list[tuple[int, int]]
) -> None:
    result = compare([iv(*o) for o in ours], [iv(*g) for g in google], at(0), at(1440))
    assert spans(result.differences) == expected
    assert result.matched is (expected == [])
    assert result.differing_seconds == sum(60 * (end - start) for start, end in expected)


def test_compare_splits_seconds_by_side() -> None:
    result = compare([iv(0, 60)], [iv(30, 120)], at(0), at(1440))
    assert result.ours_only_seconds == 30 * 60
    assert result.google_only_seconds == 60 * 60


def test_differences_json_is_utc_ranges_only() -> None:
    assert differences_json([iv(0, 30)]) == [
        {"start": "2026-12-07T00:00:00Z", "end": "2026-12-07T00:30:00Z"}
    ]


def test_google_busy_drops_empty_ranges() -> None:
    busy = [{"start": at(0), "end": at(10)}, {"start": at(5), "end": at(5)}]
    assert spans(google_busy(busy)) == [(0, 10)]


def facts(event_id: str, start: int, end: int, **fields: object) -> EventFacts:
    base = EventFacts(
        google_event_id=event_id,
        status="confirmed",
        start=at(start),
        end=at(end),
        all_day=False,
        transparency="opaque",
        event_type="default",
        response_status=None,
        summary="secret title",
        updated=None,
        recurring_event_id=None,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_our_busy_uses_stored_blocks_when_the_policy_agrees_with_google() -> None:
    events = [facts("a", 0, 60), facts("free", 60, 120, transparency="transparent")]
    # The stored block, not the facts, is compared: a wrong block must show.
    blocks = [StoredBlock("a", at(0), at(45))]
    side = our_busy(blocks, events, BusyPolicy())
    assert spans(side.busy) == [(0, 45)]
    assert side.policy_touched == 0


def test_tentative_as_free_host_is_compared_under_google_semantics() -> None:
    policy = BusyPolicy(tentative_busy=False)
    events = [
        facts("plain", 0, 60),
        facts("maybe", 120, 180, response_status="tentative"),
        facts("unanswered", 200, 260, response_status="needsAction"),
    ]
    blocks = [StoredBlock("plain", at(0), at(60))]  # the host's table has no block for them
    side = our_busy(blocks, events, policy)
    assert spans(side.busy) == [(0, 60), (120, 180), (200, 260)]
    assert side.policy_touched == 2
    google = [iv(0, 60), iv(120, 180), iv(200, 260)]
    assert compare(side.busy, google, at(0), at(1440)).matched


def test_declined_as_busy_host_sets_the_block_aside() -> None:
    policy = BusyPolicy(declined_busy=True)
    events = [facts("no", 0, 60, response_status="declined")]
    blocks = [StoredBlock("no", at(0), at(60))]  # busy for this host, free at Google
    side = our_busy(blocks, events, policy)
    assert side.busy == []
    assert side.policy_touched == 1


def test_a_missing_block_of_an_untouched_event_is_a_difference() -> None:
    side = our_busy([], [facts("a", 0, 60)], BusyPolicy(tentative_busy=False))
    result = compare(side.busy, [iv(0, 60)], at(0), at(1440))
    assert spans(result.differences) == [(0, 60)]


interval_lists = st.lists(
    st.tuples(st.integers(-50, 300), st.integers(0, 120)).map(lambda p: (p[0], p[0] + p[1])),
    max_size=8,
)


@given(interval_lists, interval_lists)
def test_differences_are_exactly_the_symmetric_difference(
    ours: list[tuple[int, int]], google: list[tuple[int, int]]
) -> None:
    result = compare([iv(*o) for o in ours], [iv(*g) for g in google], at(0), at(240))

    def covered(spans_: list[tuple[int, int]], minute: int) -> bool:
        return any(start <= minute < end for start, end in spans_)

    found = spans(result.differences)
    for minute in range(0, 240):
        expected = covered(ours, minute) != covered(google, minute)
        assert covered(found, minute) == expected, minute
    for (_, end), (start, _) in pairwise(found):
        assert end < start  # merged: no overlapping or touching ranges
    assert result.differing_seconds == 60 * sum(end - start for start, end in found)


def test_audit_due_every_period_within_a_quarter_either_way() -> None:
    period = 86400
    for calendar_id in range(1, 200):
        last = BASE
        assert not audit_due(calendar_id, last, last + timedelta(seconds=0.8 * period), period)
        assert audit_due(calendar_id, last, last + timedelta(seconds=1.25 * period), period)


def test_audits_average_at_most_one_per_calendar_and_period() -> None:
    """The cost bar: ≤ 1 freeBusy question per calendar per period, even for an account
    with one calendar (jitter in the rate, not the interval, keeps the mean exact)."""
    rates = [86400 / audit_interval_seconds(c, 86400) for c in range(1, 10001)]
    assert 0.99 < sum(rates) / len(rates) <= 1.0 + 1e-3
    assert min(rates) >= 0.8 and max(rates) <= 1.2


def test_first_audits_are_spread_over_one_period() -> None:
    period = 86400
    start = datetime(2026, 12, 7, tzinfo=UTC)  # a multiple of the period since the epoch
    due_at_start = sum(audit_due(c, None, start, period) for c in range(1, 1001))
    halfway = start + timedelta(seconds=period / 2)
    due_halfway = sum(audit_due(c, None, halfway, period) for c in range(1, 1001))
    assert due_at_start <= 5
    assert 350 <= due_halfway <= 650
    assert audit_check_seconds(86400) == 1800 and audit_check_seconds(10) == 1.0


def test_unanswered_invitations_are_the_one_tolerated_difference() -> None:
    events = [
        facts("accepted", 0, 60, response_status="accepted"),
        facts("unanswered", 30, 120, response_status="needsAction"),
        facts("maybe", 200, 260, response_status="tentative"),
    ]
    blocks = [StoredBlock(e.google_event_id, e.start, e.end) for e in events]  # type: ignore[arg-type]
    side = our_busy(blocks, events, BusyPolicy())
    assert spans(side.busy) == [(0, 120), (200, 260)]
    assert side.certain is not None and spans(side.certain) == [(0, 60), (200, 260)]
    # Google free over the unanswered invitation only (the undocumented choice): matched.
    free = compare(side.busy, [iv(0, 60), iv(200, 260)], at(0), at(1440), side.certain)
    assert free.matched and free.tolerated_seconds == 60 * 60
    # ... or busy there (the emulator's choice): matched, nothing tolerated.
    busy = compare(side.busy, [iv(0, 120), iv(200, 260)], at(0), at(1440), side.certain)
    assert busy.matched and busy.tolerated_seconds == 0
    # Free where the accepted event overlaps it, or over the tentative answer: a difference.
    overlap = compare(side.busy, [iv(60, 120), iv(200, 260)], at(0), at(1440), side.certain)
    assert spans(overlap.differences) == [(0, 60)]
    tentative = compare(side.busy, [iv(0, 60)], at(0), at(1440), side.certain)
    assert spans(tentative.differences) == [(200, 260)]
    # Busy at Google beyond any event of ours is never tolerated.
    extra = compare(side.busy, [iv(0, 130), iv(200, 260)], at(0), at(1440), side.certain)
    assert spans(extra.differences) == [(120, 130)]


def test_undecided_audits_are_retried_soon_then_wait_for_the_next_round() -> None:
    delays = [undecided_retry_seconds(n, 86400, 0.5) for n in range(UNDECIDED_RETRIES + 1)]
    assert delays == [60.0, 240.0, 960.0, None]
    assert undecided_retry_seconds(0, 86400, 0.0) == 45.0  # ±25% jitter
    assert undecided_retry_seconds(0, 86400, 0.999) < 75.0
    assert undecided_retry_seconds(2, 600, 0.5) == 150.0  # at most a quarter period


def test_an_accounts_calendars_are_audited_together_in_one_request() -> None:
    period, check = 86400.0, audit_check_seconds(86400)
    interval = audit_interval_seconds(7, period)
    now = BASE + timedelta(days=3)
    ago = lambda seconds: now - timedelta(seconds=seconds)  # noqa: E731
    candidates = [
        (1, 7, ago(interval + 5)),  # due
        (2, 7, ago(interval - check / 2)),  # due before the next check: comes along
        (3, 7, ago(interval / 2)),  # audited recently: waits
        (4, 8, ago(1)),  # another account, nothing due
    ]
    assert due_by_account(candidates, now, period, check) == {7: [1, 2]}
    # Never audited: all of an account's calendars share the account's first moment.
    fresh = [(c, 9, None) for c in (10, 11, 12)]
    moments = [
        due_by_account(fresh, BASE + timedelta(seconds=s), period, check)
        for s in range(0, 86400, int(check))
    ]
    assert {tuple(m.get(9, [])) for m in moments} == {(), (10, 11, 12)}
