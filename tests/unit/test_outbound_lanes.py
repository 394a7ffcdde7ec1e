"""Which pending deliveries may go out now (rules/outbound_lanes.py): each host's oldest
pending delivery only, once due and free; pages read in event order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from rules.outbound_lanes import LaneScan, Pending

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def pending(
    id_: int,
    host: int | None,
    *,
    due_in: float = -1.0,
    held_for: float | None = None,
    by: str | None = None,
) -> Pending:
    return Pending(
        id=id_,
        host_id=host,
        event_id=id_,
        next_attempt_at=NOW + timedelta(seconds=due_in),
        claimed_until=None if held_for is None else NOW + timedelta(seconds=held_for),
        claimed_by=by,
    )


def scan(limit: int = 50, owner: str | None = "me") -> LaneScan:
    return LaneScan(due_by=NOW, now=NOW, owner=owner, limit=limit)


def test_only_the_oldest_pending_delivery_of_each_host_goes() -> None:
    lanes = scan()
    lanes.take([pending(1, 7), pending(2, 8), pending(3, 7), pending(4, 9), pending(5, 8)])
    assert lanes.ids == [1, 2, 4]


def test_a_head_not_yet_due_or_held_by_another_blocks_its_lane() -> None:
    lanes = scan()
    lanes.take(
        [
            pending(1, 7, due_in=30),  # a retry waiting: host 7's later events wait too
            pending(2, 8, held_for=10, by="another sender"),
            pending(3, 7),
            pending(4, 8),
            pending(5, 9, held_for=-1, by="a dead sender"),  # its hold ran out
            pending(6, 10, held_for=10, by="me"),  # my own message, delivered again
        ]
    )
    assert lanes.ids == [5, 6]


def test_pings_have_no_lane() -> None:
    lanes = scan()
    lanes.take([pending(1, None, due_in=30), pending(2, None), pending(3, None)])
    assert lanes.ids == [2, 3]


def test_the_sweeps_probe_counts_its_own_holds_as_taken() -> None:
    lanes = scan(limit=1, owner=None)
    lanes.take([pending(1, 7, held_for=10, by="me"), pending(2, 8)])
    assert lanes.ids == [2]
    assert lanes.full


def test_a_taken_head_with_a_later_delivery_behind_it_is_followed() -> None:
    lanes = scan()
    lanes.take([pending(1, 7), pending(2, 8, due_in=30), pending(3, 8), pending(4, 9)])
    assert lanes.ids == [1, 4] and not lanes.followed  # host 8's head is not taken
    lanes.take([pending(5, 7)])  # a later page: host 7 has more behind its head
    assert lanes.followed


def test_a_host_seen_on_an_earlier_page_stays_blocked() -> None:
    lanes = scan()
    lanes.take([pending(1, 7, due_in=30)])
    lanes.take([pending(2, 7), pending(3, 8)])
    assert lanes.ids == [3]


rows = st.lists(
    st.tuples(
        st.one_of(st.none(), st.integers(1, 4)),  # host
        st.sampled_from([-5.0, 30.0]),  # due or not
        st.sampled_from([None, -1.0, 10.0]),  # held: no, ran out, yes
    ),
    max_size=30,
)


@given(rows, st.integers(1, 10), st.integers(1, 8))
def test_pages_and_limits_change_nothing_but_how_many(specs, limit: int, page: int) -> None:
    deliveries = [
        pending(i, host, due_in=due, held_for=held, by="other")
        for i, (host, due, held) in enumerate(specs, start=1)
    ]
    # The rule, stated plainly: no earlier pending delivery of the host, due, free.
    expected = [
        d.id
        for d in deliveries
        if (d.host_id is None or all(e.host_id != d.host_id for e in deliveries if e.id < d.id))
        and d.next_attempt_at <= NOW
        and (d.claimed_until is None or d.claimed_until <= NOW)
    ][:limit]
    lanes = scan(limit=limit)
    for start in range(0, len(deliveries), page):
        lanes.take(deliveries[start : start + page])
    assert lanes.ids == expected
