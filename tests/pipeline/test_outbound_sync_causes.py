"""The sync engine writes the outbound event of each sync in its commit: `full_sync` for the
first, `sync` for an incremental one, `410_recovery` for a resync after 410 Gone, each with
the ranges that changed and none when nothing did."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from models import OutboxEvent
from models.db import session_scope
from models.outbound_endpoints import create_endpoint
from worker.sync_engine import sync_calendar

from .conftest import Attached
from .test_sync_engine import at, timed


def events() -> list[tuple[str, list[tuple[str, str]]]]:
    with session_scope() as session:
        return [
            (row.cause, [(c["start"], c["end"]) for c in row.payload["changed"]])
            for row in session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))
        ]


def z(local: str) -> str:
    return datetime.fromisoformat(local).astimezone(UTC).isoformat().replace("+00:00", "Z")


def test_each_kind_of_sync_writes_its_cause(emulator, attached: Attached) -> None:
    control, gid = emulator.control, attached.google_calendar_id
    with session_scope() as session:  # changes are recorded only while someone listens
        create_endpoint(
            session,
            url="https://receiver.example/hooks",
            host_ids=None,
            description="test",
            created_by_host=None,
        )
    control.insert_event(gid, timed(3, 9, 10, summary="a"))
    assert sync_calendar(attached.calendar_id, force=True).status == "done"
    assert events() == [("full_sync", [(z(at(3, 9)), z(at(3, 10)))])]

    control.insert_event(gid, timed(4, 9, 10, summary="free", transparency="transparent"))
    assert sync_calendar(attached.calendar_id, force=True).status == "done"
    assert len(events()) == 1  # a Free event changes no busy time: no event

    moved = control.insert_event(gid, timed(5, 9, 10, summary="b"))
    assert sync_calendar(attached.calendar_id, force=True).status == "done"
    control.patch_event(gid, moved["id"], timed(5, 14, 15))
    control.invalidate_sync_tokens(gid)
    assert sync_calendar(attached.calendar_id, force=True).status == "done"
    assert events()[1:] == [
        ("sync", [(z(at(5, 9)), z(at(5, 10)))]),
        ("410_recovery", [(z(at(5, 9)), z(at(5, 10))), (z(at(5, 14)), z(at(5, 15)))]),
    ]
