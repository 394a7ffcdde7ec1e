"""The periodic reads by stored moment (models/stored_moments.py) answer exactly what the
rules answer when they see every input, across any sequence of the writers: syncs,
notifications, channels opened, renewed, stopped or refused, audits, and time passing.

Each step's oracle reads the calendar's inputs in full and asks the rules (rules/
sync_schedule.py, rules/audit.py, rules/health.py) directly, as the reads did before they
went by index; the product's answer comes from the indexed reads (which also store the
next moments on the way), read in pages of four rows and compared with one page. Real
writers run against the emulator, with the clock moved by time-machine for the whole
process.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.settings import Settings, configure
from emulator import EmulatorServer
from intake.records import ChannelMessage, record_change_notification
from models import AccountState, Calendar, Channel, GoogleAccount, SyncState
from models.audits import Audit
from models.db import get_engine, session_scope
from models.ops_snapshot import take_snapshot
from models.registry import attach_calendar, create_host
from rules import sync_schedule
from rules.audit import audit_check_seconds, due_by_account
from worker import audit, channels, sync_engine, tasks

HOUR = 3600
START = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)
_emails = itertools.count()


@pytest.fixture
def moment_settings(google_settings: Settings, emulator: EmulatorServer) -> Iterator[Settings]:
    configured = dataclasses.replace(
        google_settings,
        safety_net_seconds=HOUR,
        poll_seconds=300,
        channel_silent_seconds=2 * HOUR,
        full_resync_seconds=6 * HOUR,
        channel_ttl_seconds=5 * HOUR,
        audit_seconds=4 * HOUR,
    )
    configure(configured)
    emulator.control.set_faults(drop_rate=1.0)  # no web server: notifications are posted here
    yield configured
    configure(google_settings)


def attach(emulator: EmulatorServer, watchable: bool) -> int:
    email = f"moments{next(_emails)}@example.com"
    credentials = emulator.control.create_account(email)
    emulator.control.create_calendar(
        email, time_zone="Europe/Berlin", owner=email, watchable=watchable
    )
    with session_scope() as session:
        host, _token = create_host(session, f"host {email}", "Europe/Berlin")
        calendar, _ = attach_calendar(session, host.id, email, credentials)
        return calendar.id


def oracle_due(calendar_id: int, now: datetime, s: Settings) -> sync_schedule.Due | None:
    """rules.sync_schedule.due on every input, read in full (the filters of the task too)."""
    timing = oracle_timing(calendar_id, now)
    return None if timing is None else sync_schedule.due(timing, now, s)


def oracle_timing(calendar_id: int, now: datetime) -> sync_schedule.CalendarTiming | None:
    """The schedule's inputs read in full; None = not a candidate (blocked, leased)."""
    with session_scope() as session:
        state = session.get(SyncState, calendar_id)
        calendar = session.get(Calendar, calendar_id)
        assert state is not None and calendar is not None
        account = session.get(GoogleAccount, calendar.account_id)
        assert account is not None
        if account.state != AccountState.OK or state.blocked_reason is not None:
            return None
        if state.lease_until is not None and state.lease_until >= now:
            return None
        live = [
            c
            for c in session.scalars(select(Channel).where(Channel.calendar_id == calendar_id))
            if c.stopped_at is None and c.expiration is not None
        ]
        return sync_schedule.CalendarTiming(
            calendar_id=calendar_id,
            last_success_at=state.last_success_at,
            full_sync_at=state.full_sync_at,
            channel_expiration=max((c.expiration for c in live), default=None),  # type: ignore[type-var]
            channel_last_heard=max(
                (c.last_notification_at or c.created_at for c in live), default=None
            ),
            watch_refused=calendar.watch_problem is not None,
        )


def oracle_unwatched(calendar_id: int, now: datetime) -> bool:
    with session_scope() as session:
        calendar = session.get(Calendar, calendar_id)
        assert calendar is not None
        if calendar.watch_retry_at is not None and calendar.watch_retry_at > now:
            return False
        for c in session.scalars(select(Channel).where(Channel.calendar_id == calendar_id)):
            if c.stopped_at is None and (
                (c.expiration is not None and c.expiration > now)
                or (c.expiration is None and c.created_at > now - channels.WATCH_CALL_GRACE)
            ):
                return False
        return True


def oracle_audit_due(calendar_id: int, now: datetime, s: Settings) -> bool:
    with session_scope() as session:
        calendar = session.get(Calendar, calendar_id)
        assert calendar is not None
        last = session.scalar(select(func.max(Audit.at)).where(Audit.calendar_id == calendar_id))
        if isinstance(last, datetime) and last.tzinfo is None:
            last = last.replace(tzinfo=UTC)
        candidates = [(calendar_id, calendar.account_id, last)]
    due = due_by_account(candidates, now, s.audit_seconds, audit_check_seconds(s.audit_seconds))
    return any(calendar_id in ids for ids in due.values())


def stored(calendar_id: int) -> SyncState:
    with session_scope() as session:
        state = session.get(SyncState, calendar_id)
        assert state is not None
        session.expunge(state)
        return state


def never_late(calendar_id: int, now: datetime, s: Settings) -> None:
    """After any writer: the stored moment is no later than the rule's first "due"."""
    timing = oracle_timing(calendar_id, now)
    moment = stored(calendar_id).next_check_at
    if timing is not None and moment is not None:
        first_due = sync_schedule.next_due_at(timing, s)
        assert first_due is None or moment <= first_due


def exact_after_round(
    calendar_id: int, before: datetime | None, now: datetime, s: Settings
) -> None:
    """A round stores, for a calendar whose moment came but that is not due, exactly the
    moment the rule turns: not due a millisecond before it, due at it (the rule is asked
    at both instants). A moment still to come is left as it is (a writer that made the
    real one later, such as a sync, need not store it)."""
    moment = stored(calendar_id).next_check_at
    if moment is not None and moment > now and moment != before:
        milli = timedelta(milliseconds=1)
        assert oracle_due(calendar_id, moment - milli, s) is None
        assert oracle_due(calendar_id, moment, s) is not None, (
            moment,
            oracle_timing(calendar_id, moment),
            stored(calendar_id).lease_until,
        )


def check(calendar_id: int, now: datetime, s: Settings) -> None:
    never_late(calendar_id, now, s)
    # The oracles first: the product's reads store moments (never change the inputs).
    expected_due = oracle_due(calendar_id, now, s)
    expected_unwatched = oracle_unwatched(calendar_id, now)
    expected_audit = oracle_audit_due(calendar_id, now, s)
    before = stored(calendar_id).next_check_at
    # Pages of four rows (the earlier examples' calendars are in the database too): the
    # paged round answers what one page answers, for every calendar, and the rules' answer.
    due = dict(tasks.due_calendars(now, s, page_rows=4))
    assert due.get(calendar_id) == expected_due
    exact_after_round(calendar_id, before, now, s)
    assert dict(tasks.due_calendars(now, s)) == due
    with session_scope() as session:
        assert (calendar_id in channels.unwatched_calendars(session, now)) == expected_unwatched
    audits = tasks.due_audits(now, s, page_rows=4)
    assert any(calendar_id in ids for ids in audits.values()) == expected_audit
    assert tasks.due_audits(now, s) == audits
    with session_scope() as session:
        kwargs = {
            "stale_after_seconds": s.stale_after_seconds,
            "safety_net_seconds": s.safety_net_seconds,
        }
        full = take_snapshot(session, now, every_calendar=True, **kwargs)
        indexed = take_snapshot(session, now, **kwargs)
    assert indexed.count_by_state() == full.count_by_state()
    assert indexed.max_staleness_seconds == full.max_staleness_seconds
    assert indexed.max_pending_lag_seconds == full.max_pending_lag_seconds
    assert indexed.soonest_channel_expiry == full.soonest_channel_expiry
    # Channels counted by the triggers' rows and the live-channel indexes, not read in full.
    assert indexed.channels_live == full.channels_live
    assert indexed.channels_expiring == full.channels_expiring
    assert indexed.oldest_live_channel_at == full.oldest_live_channel_at
    listed = {row.calendar_id: row for row in indexed.calendars}
    for row in full.calendars:
        if row.calendar_id in listed:
            assert listed[row.calendar_id] == row
        else:  # only ok, recently synced calendars with nothing pending are left out
            assert str(row.state) == "ok" and row.pending_lag_seconds == 0
            assert row.staleness_seconds <= s.safety_net_seconds * 1.5


EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.integers(min_value=1, max_value=600)),
        st.tuples(st.just("wait"), st.integers(min_value=600, max_value=4 * HOUR)),
        st.tuples(
            st.sampled_from(["sync", "full_sync", "notify", "watch", "renew", "stop", "audit"]),
            st.just(0),
        ),
    ),
    min_size=3,
    max_size=10,
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(watchable=st.booleans(), events=EVENTS)
def test_indexed_periodic_reads_agree_with_the_rules_across_writers(
    moment_settings: Settings,
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    watchable: bool,
    events: list[tuple[str, int]],
) -> None:
    s = moment_settings
    monkeypatch.setattr(sync_engine, "enqueue_stop_channels", lambda *a, **k: None)
    monkeypatch.setattr(tasks.audit_calendars, "apply_async", lambda *a, **k: None)
    with time_machine.travel(START + timedelta(days=next(_emails)), tick=False) as clock:
        calendar_id = attach(emulator, watchable)
        check(calendar_id, datetime.now(UTC), s)  # never synced: due at once
        message = 0
        # A synced, watched calendar first (unless Google refuses the watch), then anything.
        for kind, seconds in [("full_sync", 0), ("watch", 0), *events]:
            now = datetime.now(UTC)
            if kind == "wait":
                clock.shift(seconds)
            elif kind in ("sync", "full_sync"):
                sync_engine.sync_calendar(calendar_id, full=kind == "full_sync", force=True)
            elif kind == "notify":
                live = channels_of(calendar_id)
                if live:
                    message += 1
                    with get_engine(s.database_url).begin() as connection:
                        record_change_notification(
                            connection,
                            calendar_id,
                            now,
                            ChannelMessage(live[-1].id, live[-1].resource_id or "", message),
                        )
            elif kind == "watch":
                channels.start_watch(calendar_id, s)
            elif kind == "renew":  # those expiring within RENEW_BEFORE: new, then old stopped
                channels.renew_expiring(s, now)
            elif kind == "stop":
                with session_scope() as session:
                    channels.retire_channels(session, calendar_id, now)
            elif kind == "audit":
                audit.audit_calendars([calendar_id], settings=s)
            check(calendar_id, datetime.now(UTC), s)


def channels_of(calendar_id: int) -> list[Channel]:
    with session_scope() as session:
        found = list(
            session.scalars(
                select(Channel)
                .where(Channel.calendar_id == calendar_id, Channel.stopped_at.is_(None))
                .order_by(Channel.created_at)
            )
        )
        session.expunge_all()
        return found
