"""A push notification finds its channel by the primary key, whatever the planner knows.

Every notification the webhook takes looks its channel up by id. With "not stopped" in the
WHERE clause, PostgreSQL may instead walk a live-channel partial index and filter on the id
(on a table it has no statistics for, it estimates those indexes nearly empty): every live
channel read for one notification (~800 pages per lookup at 1,000 calendars in benchmark 7;
the whole fleet at 100,000).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from intake import records
from models import Channel
from tests.factories import insert_one_calendar_hosts

CALENDARS = 1000
NOW = datetime(2030, 6, 1, 12, tzinfo=UTC)


def fleet(session: Session) -> None:
    """Live channels with no statistics gathered (nothing has run ANALYZE on them)."""
    numbers = insert_one_calendar_hosts(session, CALENDARS)
    session.execute(
        Channel.__table__.insert(),
        [
            {
                "id": f"ch{n}",
                "calendar_id": n,
                "token_hash": f"t{n}",
                "expiration": NOW + timedelta(days=1),
                "created_at": NOW,
                "stopped_at": NOW if n == CALENDARS else None,
            }
            for n in numbers
        ],
    )
    session.commit()


def indexes_scanned(connection: Connection, statement: Any) -> set[str]:
    """The indexes (or "table scan") the database reads `statement`'s channels through."""
    sql = str(statement.compile(dialect=connection.dialect))
    if connection.dialect.name == "postgresql":
        # The generic plan: what a pooled connection's prepared statement keeps using.
        connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
        connection.exec_driver_sql(f"PREPARE lookup AS {sql.replace('%(for_channel_id)s', '$1')}")
        [[plan]] = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) EXECUTE lookup('ch500')")
        connection.exec_driver_sql("DEALLOCATE lookup")
        return set(_scans(plan[0]["Plan"]))
    details = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, ("ch500",))
    return {detail for *_ids, detail in details}


def _scans(node: dict[str, Any]) -> Iterator[str]:
    if node.get("Relation Name") == "channels":
        yield node.get("Index Name", "table scan")
    for child in node.get("Plans", ()):
        yield from _scans(child)


def test_a_notification_finds_its_channel_by_the_primary_key(session: Session) -> None:
    fleet(session)
    connection = session.connection()
    scanned = indexes_scanned(connection, records._FIND_CHANNEL)
    if connection.dialect.name == "postgresql":
        assert scanned == {"pk_channels"}
    else:
        assert len(scanned) == 1
        [detail] = scanned
        assert detail.startswith("SEARCH channels USING") and "(id=?)" in detail
    session.rollback()

    # And what it answers: a live channel's row, nothing for a stopped or unknown one.
    connection = session.connection()
    found = records.find_live_channel(connection, "ch500")
    assert found is not None and (found.token_hash, found.calendar_id) == ("t500", 500)
    assert records.find_live_channel(connection, f"ch{CALENDARS}") is None
    assert records.find_live_channel(connection, "unknown") is None
