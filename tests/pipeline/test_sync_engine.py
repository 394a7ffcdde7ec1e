"""The sync engine run inline against the emulator over real HTTP with the real Google client:
busy blocks end equal to the emulator's freeBusy answer through every path."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from models import (
    AccountState,
    BusyBlock,
    CalendarEvent,
    GoogleAccount,
    SyncRun,
    SyncState,
)
from models import busy_block_writer as block_writer
from models.busy_queries import calendar_busy
from models.db import session_scope
from worker import sync_engine
from worker.sync_engine import sync_calendar

from .conftest import Attached, window

BERLIN = ZoneInfo("Europe/Berlin")


def at(days: int, hour: int, minute: int = 0) -> str:
    day = datetime.now(BERLIN).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN).isoformat()


def timed(days: int, start: int, end: int, **fields) -> dict:
    return {"start": {"dateTime": at(days, start)}, "end": {"dateTime": at(days, end)}, **fields}


def product_busy(calendar_id: int) -> list[tuple[datetime, datetime]]:
    start, end = window()
    with session_scope() as session:
        return [(i.start, i.end) for i in calendar_busy(session, calendar_id, start, end)]


def reference_busy(emulator, google_calendar_id: str) -> list[tuple[datetime, datetime]]:
    start, end = window()
    return [tuple(pair) for pair in emulator.control.reference_busy(google_calendar_id, start, end)]


def assert_converged(emulator, cal: Attached) -> None:
    assert product_busy(cal.calendar_id) == reference_busy(emulator, cal.google_calendar_id)


def snapshot(calendar_id: int) -> tuple[list, list, str | None]:
    with session_scope() as session:
        events = session.execute(
            select(CalendarEvent.__table__)
            .where(CalendarEvent.calendar_id == calendar_id)
            .order_by(CalendarEvent.id)
        ).all()
        blocks = session.execute(
            select(BusyBlock.__table__)
            .where(BusyBlock.calendar_id == calendar_id)
            .order_by(BusyBlock.id)
        ).all()
        token = session.scalar(
            select(SyncState.sync_token).where(SyncState.calendar_id == calendar_id)
        )
    return events, blocks, token


def sync_and_check(emulator, cal: Attached, **kwargs) -> sync_engine.SyncResult:
    result = sync_calendar(cal.calendar_id, force=True, **kwargs)
    assert result.status == "done", result
    assert_converged(emulator, cal)
    return result


def seed_events(emulator, cal: Attached) -> dict[str, str]:
    control, gid = emulator.control, cal.google_calendar_id
    me = {"email": gid, "self": True}
    ids = {
        "busy": control.insert_event(gid, timed(1, 10, 11, summary="busy"))["id"],
        "free": control.insert_event(gid, timed(1, 12, 13, transparency="transparent"))["id"],
        "declined": control.insert_event(
            gid, timed(1, 15, 16, attendees=[{**me, "responseStatus": "declined"}])
        )["id"],
        "tentative": control.insert_event(
            gid, timed(2, 15, 16, attendees=[{**me, "responseStatus": "tentative"}])
        )["id"],
        "zero": control.insert_event(gid, timed(2, 9, 9))["id"],
        "ooo": control.insert_event(gid, timed(3, 8, 18, eventType="outOfOffice"))["id"],
        "working": control.insert_event(
            gid, timed(3, 8, 18, eventType="workingLocation", transparency="transparent")
        )["id"],
        "allday": control.insert_event(
            gid,
            {
                "start": {"date": (datetime.now(BERLIN).date() + timedelta(days=4)).isoformat()},
                "end": {"date": (datetime.now(BERLIN).date() + timedelta(days=6)).isoformat()},
            },
        )["id"],
        "series": control.insert_event(
            gid,
            {
                **timed(1, 9, 10, summary="standup"),
                "start": {"dateTime": at(1, 9), "timeZone": "Europe/Berlin"},
                "end": {"dateTime": at(1, 9, 15), "timeZone": "Europe/Berlin"},
                "recurrence": ["RRULE:FREQ=DAILY;COUNT=40"],
            },
        )["id"],
    }
    return ids


def test_first_sync_is_full_and_matches_google(emulator, attached: Attached) -> None:
    ids = seed_events(emulator, attached)
    sync_and_check(emulator, attached)
    with session_scope() as session:
        run = session.scalars(select(SyncRun)).one()
        decisions = dict(
            session.execute(
                select(CalendarEvent.google_event_id, CalendarEvent.decision).where(
                    CalendarEvent.google_event_id.in_(ids.values())
                )
            ).all()
        )
    assert run.kind == "full" and run.outcome == "ok"
    assert decisions[ids["free"]] == "free"
    assert decisions[ids["declined"]] == "declined"
    assert decisions[ids["tentative"]] == "busy"
    assert decisions[ids["zero"]] == "zero_length"
    assert decisions[ids["working"]] == "working_location"
    assert decisions[ids["ooo"]] == "busy"
    assert decisions[ids["allday"]] == "busy"
    # The all-day event covers whole days in the calendar's zone, not UTC midnight.
    day = datetime.now(BERLIN).date() + timedelta(days=4)
    with session_scope() as session:
        block = session.scalars(select(BusyBlock).where(BusyBlock.event_key == ids["allday"])).one()
    assert block.start == datetime(day.year, day.month, day.day, tzinfo=BERLIN)


def test_running_the_same_sync_twice_changes_nothing(emulator, attached: Attached) -> None:
    seed_events(emulator, attached)
    sync_and_check(emulator, attached)
    before = snapshot(attached.calendar_id)
    sync_and_check(emulator, attached)
    assert snapshot(attached.calendar_id)[:2] == before[:2]  # the token itself is new
    sync_and_check(emulator, attached, full=True)
    events_after, blocks_after, _ = snapshot(attached.calendar_id)
    assert (events_after, blocks_after) == before[:2]


def test_incremental_sync_applies_moves_deletes_and_series_edits(
    emulator, attached: Attached
) -> None:
    ids = seed_events(emulator, attached)
    sync_and_check(emulator, attached)
    control, gid = emulator.control, attached.google_calendar_id
    control.patch_event(
        gid, ids["busy"], {"start": {"dateTime": at(5, 14)}, "end": {"dateTime": at(5, 15)}}
    )
    control.delete_event(gid, ids["allday"])
    control.patch_event(gid, ids["free"], {"transparency": "opaque"})
    control.patch_event(gid, ids["series"], {"recurrence": ["RRULE:FREQ=DAILY;COUNT=3"]})
    result = sync_and_check(emulator, attached)
    assert result.runs[-1].kind == "incremental"
    with session_scope() as session:
        assert session.scalar(select(BusyBlock).where(BusyBlock.event_key == ids["allday"])) is None


def test_410_resync_swaps_atomically_without_ghosts(emulator, attached: Attached) -> None:
    ids = seed_events(emulator, attached)
    sync_and_check(emulator, attached)
    control, gid = emulator.control, attached.google_calendar_id
    control.delete_event(gid, ids["busy"])
    control.insert_event(gid, timed(7, 10, 12, summary="new"))
    control.invalidate_sync_tokens(gid)
    result = sync_and_check(emulator, attached)
    assert result.runs[-1].kind == "410-recovery"
    with session_scope() as session:
        assert session.scalar(select(BusyBlock).where(BusyBlock.event_key == ids["busy"])) is None


def test_transient_google_errors_are_retried_to_convergence(emulator, attached: Attached) -> None:
    seed_events(emulator, attached)
    emulator.control.set_faults(seed=7, error_rates={"429": 0.15, "503": 0.15})
    for round_number in range(8):
        emulator.control.insert_event(
            attached.google_calendar_id, timed(round_number + 1, 17, 18, summary="more")
        )
        for _ in range(20):
            result = sync_calendar(attached.calendar_id, force=True)
            if result.status == "done":
                break
            assert result.status == "retry"
            with session_scope() as session:  # skip the backoff the task would wait out
                session.get(SyncState, attached.calendar_id).lease_until = None
        assert result.status == "done"
    statuses = {r["status"] for r in emulator.control.requests()}
    emulator.control.set_faults(error_rates={})
    assert_converged(emulator, attached)
    assert statuses & {429, 503}, "the fault injection did not fire"


def test_revoked_access_marks_needs_reauth_and_stops_calling(emulator, attached: Attached) -> None:
    sync_and_check(emulator, attached)
    emulator.control.revoke_account(attached.google_calendar_id)
    emulator.control.insert_event(attached.google_calendar_id, timed(1, 10, 11))
    from worker import google_client

    google_client.forget_services()  # a fresh process: the cached access token is gone
    before = len(emulator.control.requests())
    result = sync_calendar(attached.calendar_id, force=True)
    attempts = emulator.control.requests()[before:]
    # The stored access token (refreshed by the first sync) is refused, then exactly one
    # refresh fails.
    assert [(r["methodId"], r["status"]) for r in attempts] == [
        ("calendar.events.list", 401),
        ("oauth2.token", 400),
    ]
    assert result.status == "needs_reauth"
    with session_scope() as session:
        account = session.scalars(select(GoogleAccount)).one()
        state = session.get(SyncState, attached.calendar_id)
        assert account.state == AccountState.NEEDS_REAUTH
        assert state.last_error_code == "auth_revoked"
        assert state.dirty_since is not None  # the work is remembered for after reconnect
    calls = len(emulator.control.requests())
    assert sync_calendar(attached.calendar_id, force=True).status == "blocked"
    assert len(emulator.control.requests()) == calls  # no further calls at all


def test_a_crash_before_commit_loses_nothing(emulator, attached: Attached, monkeypatch) -> None:
    ids = seed_events(emulator, attached)
    sync_and_check(emulator, attached)
    before = snapshot(attached.calendar_id)
    emulator.control.delete_event(attached.google_calendar_id, ids["busy"])
    with session_scope() as session:
        session.get(SyncState, attached.calendar_id).dirty_since = datetime.now(UTC)

    def crash(*args, **kwargs):
        raise RuntimeError("worker died mid-apply")

    monkeypatch.setattr(sync_engine, "apply_events", crash)
    result = sync_calendar(attached.calendar_id)
    assert result.status == "retry"
    assert snapshot(attached.calendar_id) == before  # neither blocks nor token moved
    with session_scope() as session:
        state = session.get(SyncState, attached.calendar_id)
        assert state.dirty_since is not None
        state.lease_until = None
    monkeypatch.setattr(sync_engine, "apply_events", block_writer.apply_events)
    assert sync_calendar(attached.calendar_id).status == "done"
    assert_converged(emulator, attached)


def test_a_second_worker_defers_while_the_lease_is_held(emulator, attached: Attached) -> None:
    from models.sync_flags import claim

    now = datetime.now(UTC)
    with session_scope() as session:
        session.get(SyncState, attached.calendar_id).dirty_since = now
    with session_scope() as session:
        assert claim(session, attached.calendar_id, "other", now, 30, require_dirty=True)
        session.get(SyncState, attached.calendar_id).dirty_since = now  # notified again
    result = sync_calendar(attached.calendar_id)
    assert result.status == "deferred" and 0 < result.retry_in <= 31
    assert emulator.control.requests() == []


def test_clean_calendar_is_not_fetched_again(emulator, attached: Attached) -> None:
    sync_and_check(emulator, attached)
    calls = len(emulator.control.requests())
    assert sync_calendar(attached.calendar_id).status == "skipped"
    assert len(emulator.control.requests()) == calls


def test_events_outside_the_horizon_are_not_stored(
    emulator, attached: Attached, google_settings
) -> None:
    emulator.control.insert_event(attached.google_calendar_id, timed(400, 10, 11))
    emulator.control.insert_event(attached.google_calendar_id, timed(-5, 10, 11))
    sync_and_check(emulator, attached)
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(CalendarEvent)) == 0


@pytest.mark.parametrize("zone", ["America/New_York", "Pacific/Auckland", "UTC"])
def test_all_day_events_follow_the_calendar_zone(emulator, google_settings, zone: str) -> None:
    from .conftest import attach

    cal = attach(emulator, f"tz-{zone.replace('/', '-').lower()}@example.com", time_zone=zone)
    today = datetime.now(ZoneInfo(zone)).date()
    for offset in range(1, 40, 3):
        emulator.control.insert_event(
            cal.google_calendar_id,
            {
                "start": {"date": (today + timedelta(days=offset)).isoformat()},
                "end": {"date": (today + timedelta(days=offset + 1)).isoformat()},
            },
        )
    sync_and_check(emulator, cal)


def test_a_worker_dying_after_claim_leaves_the_work_findable(emulator, attached: Attached) -> None:
    """The claim takes the dirty mark; if the worker then dies, the redelivered task and the
    sweeper must still see unfinished work once the dead worker's lease runs out."""
    from models.sync_flags import claim, forgotten_dirty

    sync_and_check(emulator, attached)
    emulator.control.insert_event(attached.google_calendar_id, timed(2, 10, 11))
    notified = datetime.now(UTC) - timedelta(minutes=5)
    with session_scope() as session:
        session.get(SyncState, attached.calendar_id).dirty_since = notified
    with session_scope() as session:  # a worker claims, then is SIGKILLed
        assert claim(session, attached.calendar_id, "dead", notified, 1, require_dirty=True)
    # Its lease (1 s from `notified`) is long over: the work is found again.
    with session_scope() as session:
        assert forgotten_dirty(session, datetime.now(UTC), 10) == [attached.calendar_id]
    result = sync_calendar(attached.calendar_id)  # the redelivered task, not forced
    assert result.status == "done"
    assert result.runs[0].notification_lag_ms >= 5 * 60 * 1000
    assert_converged(emulator, attached)
    with session_scope() as session:
        assert forgotten_dirty(session, datetime.now(UTC), 0) == []


def test_a_refreshed_access_token_is_stored_for_the_other_processes(
    emulator, attached: Attached
) -> None:
    from models.credentials_box import decrypt_credentials
    from worker import google_client

    def methods_of(sync: Callable[[], object]) -> list[str]:
        google_client.forget_services()  # each sync as if in a process of its own
        before = len(emulator.control.requests())
        sync()
        return [r["methodId"] for r in emulator.control.requests()[before:]]

    def stored() -> dict:
        with session_scope() as session:
            account = session.scalars(select(GoogleAccount)).one()
            return decrypt_credentials(account.credentials_encrypted)

    first = methods_of(lambda: sync_calendar(attached.calendar_id, force=True))
    assert first[0] == "oauth2.token"  # the stored credentials came without a live token
    token = stored()["token"]
    assert token and stored()["refresh_token"] == attached.credentials["refresh_token"]
    emulator.control.insert_event(attached.google_calendar_id, timed(1, 10, 11))
    # Another process: the stored token, no refresh of its own; it stays stored as it was.
    assert methods_of(lambda: sync_calendar(attached.calendar_id, force=True)) == [
        "calendar.events.list"
    ]
    assert stored()["token"] == token
    assert_converged(emulator, attached)
