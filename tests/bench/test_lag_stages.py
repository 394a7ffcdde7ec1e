"""Benchmark 7's split of a change's sync lag into stages, on made-up runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.change_load import Change
from bench.outbound_delivery import lag_stages

T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def ms(n: float) -> timedelta:
    return timedelta(milliseconds=n)


def test_each_stage_is_measured_from_the_run_that_applied_the_change() -> None:
    # Changed at T0, marked dirty at +4 ms, the run started at +90 ms, blocks at +95 ms.
    applied = T0 + ms(95)
    change = Change("insert", "cal", "e1", updated=T0, applied_at=applied)
    runs = [(T0 + ms(90), applied, 91), (T0 + ms(500), T0 + ms(505), None)]
    assert lag_stages([change], runs) == "push 4/4 queue 86/86 run 5/5"


def test_a_change_made_while_its_calendar_was_marked_waits_from_when_it_was_made() -> None:
    # A change at T0 marked its calendar at +4 ms; a second change at +50 ms found it marked
    # and was folded into the same run (started at +1,040 ms: held by the sync interval).
    applied = T0 + ms(1045)
    first = Change("insert", "cal", "e1", updated=T0, applied_at=applied)
    second = Change("move", "cal", "e2", updated=T0 + ms(50), applied_at=applied)
    runs = [(T0 + ms(1040), applied, 1041)]
    assert lag_stages([first], runs) == "push 4/4 queue 1036/1036 run 5/5"
    assert lag_stages([second], runs) == "push 0/0 queue 990/990 run 5/5"


def test_changes_without_their_run_or_dirty_mark_are_left_out() -> None:
    applied = T0 + ms(95)
    unmarked = Change("move", "cal", "e2", updated=T0, applied_at=applied)
    orphan = Change("delete", "cal", "e3", updated=T0, applied_at=T0 + ms(7))
    assert lag_stages([unmarked, orphan], [(T0 + ms(90), applied, None)]) == ""
