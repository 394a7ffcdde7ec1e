"""The block writer with tiny write batches: rows written in many statements (COPY on
PostgreSQL, executemany elsewhere) end exactly as one big write would leave them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models import BusyBlock, CalendarEvent
from models import busy_block_writer as block_writer
from models.busy_block_writer import DecidedEvent, Horizon, apply_events, redecide_host_events
from rules.busy_rules import BusyPolicy, decide, parse_event
from tests.factories import make_account, make_calendar, make_host

NOW = datetime.now(UTC).replace(microsecond=0)
HORIZON = Horizon(NOW - timedelta(days=1), NOW + timedelta(days=365))


def event(number: int, *, hours: int = 1, **fields) -> dict:
    start = NOW + timedelta(days=number % 30 + 1, hours=number % 9)
    return {
        "id": f"event{number:04d}",
        "summary": f"meeting {number}",
        "updated": NOW.isoformat(),
        "start": {"dateTime": start.isoformat()},
        "end": {"dateTime": (start + timedelta(hours=hours)).isoformat()},
        **fields,
    }


def decided(events: list[dict]) -> list[DecidedEvent]:
    facts = [parse_event(item, "UTC") for item in events]
    return [DecidedEvent(f, decide(f)) for f in facts]


def stored(session: Session, calendar_id: int) -> tuple[dict, dict]:
    events = {
        row.google_event_id: (row.start, row.end, row.decision, row.status)
        for row in session.scalars(
            select(CalendarEvent).where(CalendarEvent.calendar_id == calendar_id)
        )
    }
    blocks = {
        row.event_key: (row.start, row.end)
        for row in session.scalars(select(BusyBlock).where(BusyBlock.calendar_id == calendar_id))
    }
    return events, blocks


@pytest.fixture
def calendar_id(session: Session) -> int:
    host = make_host(session)
    return make_calendar(session, host, make_account(session, host)).id


@pytest.fixture(autouse=True)
def tiny_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(block_writer, "WRITE_BATCH", 3)


def test_full_sync_in_many_batches_stores_every_row(session: Session, calendar_id: int) -> None:
    listing = [event(n) for n in range(10)] + [event(10, transparency="transparent")]
    stats = apply_events(
        session, calendar_id, decided(listing), horizon=HORIZON, now=NOW, replace_all=True
    )
    events, blocks = stored(session, calendar_id)
    assert len(events) == 11 and set(blocks) == {f"event{n:04d}" for n in range(10)}
    assert (stats.events_written, stats.blocks_upserted) == (11, 10)
    assert all(start.tzinfo is not None for start, _end in blocks.values())

    again = apply_events(
        session, calendar_id, decided(listing), horizon=HORIZON, now=NOW, replace_all=True
    )
    assert (again.events_written, again.blocks_upserted, again.blocks_deleted) == (0, 0, 0)
    assert stored(session, calendar_id) == (events, blocks)


def test_resync_in_many_batches_updates_moves_and_removes(
    session: Session, calendar_id: int
) -> None:
    first = [event(n) for n in range(12)]
    apply_events(session, calendar_id, decided(first), horizon=HORIZON, now=NOW, replace_all=True)
    later = NOW + timedelta(minutes=5)
    # Longer events 0-3, 4-5 now Free, 6-7 gone from the listing, 12-15 new.
    second = (
        [event(n, hours=2) for n in range(4)]
        + [event(n, transparency="transparent") for n in (4, 5)]
        + [event(n) for n in range(8, 16)]
    )
    stats = apply_events(
        session, calendar_id, decided(second), horizon=HORIZON, now=later, replace_all=True
    )
    events, blocks = stored(session, calendar_id)
    assert set(events) == {f"event{n:04d}" for n in (*range(6), *range(8, 16))}
    assert set(blocks) == {f"event{n:04d}" for n in (*range(4), *range(8, 16))}
    start, end = blocks["event0000"]
    assert end - start == timedelta(hours=2)
    assert events["event0004"][2] == "free"
    assert (stats.events_deleted, stats.blocks_deleted) == (2, 4)


def _own_response(status: str) -> dict:
    return {"attendees": [{"email": "host@example.com", "self": True, "responseStatus": status}]}


def _mixed_listing() -> list[dict]:
    """Events whose decision depends on the policy, and some whose decision does not."""
    return (
        [event(n) for n in range(4)]
        + [event(n, **_own_response("declined")) for n in range(4, 9)]
        + [event(n, **_own_response("tentative")) for n in range(9, 12)]
        + [event(n, eventType="focusTime") for n in (12, 13)]
        + [event(14, transparency="transparent"), event(15, status="cancelled")]
    )


def _rows(session: Session, calendar_id: int) -> tuple[dict, dict]:
    events = {
        row.google_event_id: (row.start, row.end, row.decision, row.status)
        for row in session.scalars(
            select(CalendarEvent).where(CalendarEvent.calendar_id == calendar_id)
        )
    }
    blocks = {
        row.event_key: (row.start, row.end, row.applied_at)
        for row in session.scalars(select(BusyBlock).where(BusyBlock.calendar_id == calendar_id))
    }
    return events, blocks


def test_policy_change_writes_the_rows_a_sync_under_that_policy_writes(session: Session) -> None:
    """Both ways into the writer end with the same busy_blocks (and decisions) for the same
    events: a sync decided under the new policy, and a sync under the old one re-decided."""
    policy = BusyPolicy(declined_busy=True, tentative_busy=False, focus_time_busy=False)
    listing = _mixed_listing()
    synced_host, redecided_host = make_host(session), make_host(session)
    synced = make_calendar(session, synced_host, make_account(session, synced_host)).id
    redecided = make_calendar(session, redecided_host, make_account(session, redecided_host)).id
    facts = [parse_event(item, "UTC") for item in listing]

    apply_events(
        session,
        synced,
        [DecidedEvent(f, decide(f, policy)) for f in facts],
        horizon=HORIZON,
        now=NOW,
        replace_all=True,
    )
    apply_events(
        session,
        redecided,
        [DecidedEvent(f, decide(f)) for f in facts],
        horizon=HORIZON,
        now=NOW,
        replace_all=True,
    )
    stats = redecide_host_events(session, redecided_host.id, policy, NOW)
    session.commit()

    assert _rows(session, redecided) == _rows(session, synced)
    # 5 declined now busy, 3 tentative and 2 focus time now free (blocks written in 3s).
    assert (stats.events_changed, stats.blocks_added, stats.blocks_removed) == (10, 5, 5)
    assert len(_rows(session, synced)[1]) == 4 + 5
    again = redecide_host_events(session, redecided_host.id, policy, NOW)
    assert (again.events_changed, again.blocks_added, again.blocks_removed) == (0, 0, 0)
