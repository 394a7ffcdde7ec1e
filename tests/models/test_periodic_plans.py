"""Every periodic read that once visited every calendar (safety net, audits due, unwatched
calendars, audit gauges, the ops snapshot) finds its rows by index: SQLite's query plan
at a few thousand calendars, on a scratch database migrated to head. (bench/fleet_scale.py
measures the same statements on PostgreSQL at 100,000.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from models import Calendar, Channel, GoogleAccount, Host, SyncState
from models.audits import audit_candidates, audit_gauges
from models.db import get_engine
from models.migrate import upgrade
from models.ops_snapshot import take_snapshot
from models.sync_flags import schedule_candidates
from worker.channels import unwatched_calendars

CALENDARS = 3000
NOW = datetime(2030, 6, 1, 12, tzinfo=UTC)
FLEET_TABLES = ("calendars", "sync_states", "channels", "audits", "google_accounts", "hosts")
# Counts that grow with the fleet on purpose (key-only scans): every calendar (the ok
# ones are counted, not listed) and the live channels (the metrics' channel gauges).
COUNTS = (
    "SELECT count(*) AS count_1 \nFROM calendars",
    "SELECT count(*) AS count_1, count(*) FILTER",
)


def fleet(session: Session) -> None:
    hour = timedelta(hours=1)
    session.execute(
        Host.__table__.insert(),
        [{"id": n, "name": f"h{n}", "time_zone": "UTC"} for n in range(1, CALENDARS + 1)],
    )
    session.execute(
        GoogleAccount.__table__.insert(),
        [
            {"id": n, "host_id": n, "credentials_encrypted": b"x", "state": "ok"}
            for n in range(1, CALENDARS + 1)
        ],
    )
    session.execute(
        Calendar.__table__.insert(),
        [
            {"id": n, "host_id": n, "account_id": n, "google_calendar_id": f"c{n}"}
            for n in range(1, CALENDARS + 1)
        ],
    )
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
            for n in range(1, CALENDARS + 1)
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
            for n in range(1, CALENDARS + 1)
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


def test_periodic_reads_find_their_rows_by_index(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    upgrade(url)
    engine = get_engine(url)
    captured: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, _context, _executemany) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, parameters))

    with Session(engine) as session:
        fleet(session)
        event.listen(engine, "before_cursor_execute", record)
        try:
            assert schedule_candidates(session, NOW) == []
            assert audit_candidates(session, NOW + timedelta(minutes=30)) == []
            assert unwatched_calendars(session, NOW) == []
            assert audit_gauges(session, NOW) == (0.0, 0)
            snapshot = take_snapshot(session, NOW, stale_after_seconds=300, safety_net_seconds=3600)
        finally:
            event.remove(engine, "before_cursor_execute", record)
        assert snapshot.count_by_state()["ok"] == CALENDARS and snapshot.calendars == []
        assert len(captured) >= 10
        scanned = {
            statement: scans
            for statement, parameters in captured
            if not statement.startswith(COUNTS)
            and (scans := full_scans(session, statement, parameters))
        }
    assert scanned == {}, "\n".join(
        f"{' '.join(statement.split())[:150]} -> {scans}" for statement, scans in scanned.items()
    )
