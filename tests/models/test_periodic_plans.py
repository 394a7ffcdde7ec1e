"""Every periodic read that once visited every calendar (safety net, audits due, unwatched
calendars, audit gauges, the ops snapshot) finds its rows by index, and the two that return
the calendars due read them a page at a time along the moment's index (no sort of every
due row): SQLite's query plan at a few thousand calendars, on a scratch database migrated
to head. (bench/fleet_scale.py measures the same statements on PostgreSQL at 100,000.)"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event, update
from sqlalchemy.orm import Session

from models import Channel, SyncState
from models.audits import audit_candidates, audit_gauges
from models.db import get_engine
from models.migrate import upgrade
from models.ops_snapshot import take_snapshot
from models.stored_moments import START, PagePosition
from models.sync_flags import schedule_candidates
from tests.factories import insert_one_calendar_hosts
from worker.channels import unwatched_calendars

CALENDARS = 3000
NOW = datetime(2030, 6, 1, 12, tzinfo=UTC)
FLEET_TABLES = ("calendars", "sync_states", "channels", "audits", "google_accounts", "hosts")


def fleet(session: Session) -> None:
    hour = timedelta(hours=1)
    numbers = insert_one_calendar_hosts(session, CALENDARS)
    session.execute(
        SyncState.__table__.insert(),
        [
            {
                "calendar_id": n,
                "consecutive_failures": 0,
                "last_success_at": NOW - hour,
                "full_sync_at": NOW - hour,
                "next_check_at": NOW + hour,
                "next_audit_at": NOW + 10 * hour,
                "watch_check_at": NOW + 50 * hour,
            }
            for n in numbers
        ],
    )
    session.execute(
        Channel.__table__.insert(),
        [
            {
                "id": f"ch{n}",
                "calendar_id": n,
                "token_hash": "x",
                "expiration": NOW + 50 * hour,
                "created_at": NOW - hour,
            }
            for n in numbers
        ],
    )
    session.commit()


def full_scans(session: Session, statement: str, parameters: Any) -> list[str]:
    plan = session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
    return [
        detail
        for *_ids, detail in plan
        # "SCAN t" reads the whole table; "SCAN t USING INDEX i" reads an index (the
        # partial ones hold only the few rows that matter).
        if detail.startswith("SCAN ")
        and detail.split()[1] in FLEET_TABLES
        and "USING" not in detail
    ]


@contextmanager
def selects(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The SELECT statements run on `engine` meanwhile, with their parameters."""
    captured: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, _context, _executemany) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield captured
    finally:
        event.remove(engine, "before_cursor_execute", record)


def every_page(read: Any) -> list[Any]:
    rows: list[Any] = []
    position: PagePosition | None = START
    while position is not None:
        page, position = read(position)
        rows += page
    return rows


def scratch(tmp_path) -> Engine:
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    upgrade(url)
    return get_engine(url)


def test_periodic_reads_find_their_rows_by_index(tmp_path) -> None:
    engine = scratch(tmp_path)
    with Session(engine) as session:
        fleet(session)
        with selects(engine) as captured:
            assert every_page(lambda at: schedule_candidates(session, NOW, None, at)) == []
            soon = NOW + timedelta(minutes=30)
            assert every_page(lambda at: audit_candidates(session, soon, at)) == []
            assert unwatched_calendars(session, NOW) == []
            assert audit_gauges(session, NOW) == (0.0, 0)
            snapshot = take_snapshot(session, NOW, stale_after_seconds=300, safety_net_seconds=3600)
        assert snapshot.count_by_state()["ok"] == CALENDARS and snapshot.calendars == []
        assert len(captured) >= 10
        scanned = {
            statement: scans
            for statement, parameters in captured
            if (scans := full_scans(session, statement, parameters))
        }
    assert scanned == {}, "\n".join(
        f"{' '.join(statement.split())[:150]} -> {scans}" for statement, scans in scanned.items()
    )


PAGE = 500


def test_due_calendars_are_read_a_page_at_a_time_along_the_index(tmp_path) -> None:
    """2,000 of 3,000 calendars due (700 never judged, 600 sharing one moment across a
    page boundary, 700 more): every due calendar comes exactly once, in pages of at most
    PAGE rows, each page a range of the moment's index with no sort of the due rows."""
    engine = scratch(tmp_path)
    due = set(range(1, 2001))
    with Session(engine) as session:
        fleet(session)
        for column in (SyncState.next_check_at, SyncState.next_audit_at):
            moments = (
                (SyncState.calendar_id <= 700, None),
                (SyncState.calendar_id.between(701, 1300), NOW - timedelta(hours=2)),
                (SyncState.calendar_id.between(1301, 2000), NOW - timedelta(minutes=5)),
            )
            for which, moment in moments:
                session.execute(update(SyncState).where(which).values({column.key: moment}))
        session.commit()
        reads = {
            "safety net": lambda at: schedule_candidates(session, NOW, None, at, PAGE),
            "audits": lambda at: audit_candidates(session, NOW, at, PAGE),
        }
        for name, read in reads.items():
            found: list[int] = []
            pages = 0
            position: PagePosition | None = START
            with selects(engine) as captured:
                while position is not None:
                    rows, position = read(position)
                    assert len(rows) <= PAGE, name
                    found += [row[0] for row in rows]
                    pages += 1
            assert sorted(found) == sorted(due), name  # each exactly once
            assert pages == 5, name  # 700 unknown: 500 + 200; 1,300 known: 500 + 500 + 300
            paged = [(st, ps) for st, ps in captured if "LIMIT" in st and "FROM sync_states" in st]
            assert len(paged) == pages, name
            for statement, parameters in paged:
                plan = [
                    detail
                    for *_ids, detail in session.connection().exec_driver_sql(
                        "EXPLAIN QUERY PLAN " + statement, parameters
                    )
                ]
                assert any("USING INDEX ix_sync_states_next_" in d for d in plan), (name, plan)
                assert not any("TEMP B-TREE" in d for d in plan), (name, plan)
