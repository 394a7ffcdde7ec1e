"""The quota against the emulator: requests (token refreshes too) take permits of the Google
user, and scheduled syncs yield while the daily budget runs low."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from core.settings import Settings, configure
from emulator import EmulatorServer
from models.db import session_scope
from models.registry import attach_calendar, create_host
from tests.support.limiter import clear_daily_state
from worker import google_client, rate_limit, sync_engine, tasks

from .conftest import Attached, attach


@pytest.fixture
def permits(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The user key of every permit asked for."""
    taken: list[str | None] = []
    monkeypatch.setattr(rate_limit, "acquire", lambda key, *_a, **_k: taken.append(key) or 0.0)
    return taken


def test_token_refresh_and_request_each_take_a_permit(
    google_settings: Settings, emulator: EmulatorServer, permits: list[str | None]
) -> None:
    cal = attach(emulator, "refresh@example.com")
    permits.clear()
    assert sync_engine.sync_calendar(cal.calendar_id, force=True).status == "done"
    # The stored credentials hold no live access token: one refresh at the token endpoint
    # and one events.list page, each with its permit.
    assert len(permits) == 2
    permits.clear()
    assert sync_engine.sync_calendar(cal.calendar_id, force=True).status == "done"
    assert len(permits) == 1  # the access token is still valid: no refresh
    google_client.forget_services()  # a fresh process: the refreshed token was stored
    permits.clear()
    assert sync_engine.sync_calendar(cal.calendar_id, force=True).status == "done"
    assert len(permits) == 1


def test_two_calsync_accounts_of_one_google_user_count_as_one_user(
    google_settings: Settings, emulator: EmulatorServer, permits: list[str | None]
) -> None:
    work = attach(emulator, "ann@example.com")
    # The same Google user attached to a second host: a second account with its own grant.
    credentials = emulator.control.create_account("ann@example.com")
    with session_scope() as session:
        host, _token = create_host(session, "ann at home", "Europe/Berlin")
        calendar, _ = attach_calendar(session, host.id, "ann@example.com", credentials)
        home = Attached(host.id, calendar.id, "ann@example.com", credentials)
    other = attach(emulator, "bob@example.com")
    assert work.credentials["refresh_token"] != home.credentials["refresh_token"]
    keys = {}
    for cal in (work, home, other):
        permits.clear()
        assert sync_engine.sync_calendar(cal.calendar_id, force=True).status == "done"
        assert len(set(permits)) == 1
        keys[cal.calendar_id] = permits[0]
    assert keys[work.calendar_id] == keys[home.calendar_id] != keys[other.calendar_id]


@pytest.fixture
def budget_settings(google_settings: Settings) -> Iterator[Settings]:
    configured = dataclasses.replace(
        google_settings, project_requests_per_day=1000, poll_seconds=300
    )
    configure(configured)
    clear_daily_state(configured)
    yield configured
    # The permits counted here must not count for the next test.
    clear_daily_state(configured)
    configure(google_settings)


def _spent_earlier_today(settings: Settings, permits: int) -> None:
    """Permits handed out over the past hours: their hourly counts where the limiter keeps
    them (Redis with a Redis broker, else the limiter's SQLite file)."""
    limiter = rate_limit.limiter_for(settings)  # creates the file and its tables
    hours = rate_limit.counted_hours(time.time())
    if isinstance(limiter, rate_limit.RedisLimiter):
        keys = [limiter._prefix + f"{rate_limit.DAILY_KEY}:hour:{h}" for h in hours]
        limiter._client.delete(*keys)
        limiter._client.set(keys[-4], permits, ex=2 * 86400)
        return
    with sqlite3.connect(settings.data_dir / "rate_limit.db") as conn:
        conn.execute("DELETE FROM hourly_counts")
        conn.execute("INSERT INTO hourly_counts (hour, count) VALUES (?, ?)", (hours[-4], permits))


def test_scheduled_syncs_yield_while_the_daily_budget_runs_low(
    budget_settings: Settings, emulator: EmulatorServer
) -> None:
    cal = attach(emulator, "budget@example.com")
    never_synced = attach(emulator, "new@example.com")
    assert sync_engine.sync_calendar(cal.calendar_id, force=True).status == "done"
    later = datetime.now(UTC) + timedelta(minutes=10)  # past the poll interval (no channel)
    _spent_earlier_today(budget_settings, 700)
    with time_machine.travel(later, tick=True):
        assert rate_limit.daily_budget_used_ratio(budget_settings) == pytest.approx(0.7, abs=0.01)
        assert dict(tasks.due_calendars(datetime.now(UTC))) == {
            cal.calendar_id: tasks.sync_schedule.Due.POLL,
            never_synced.calendar_id: tasks.sync_schedule.Due.SAFETY_NET,
        }
    _spent_earlier_today(budget_settings, 850)  # less than 20% left
    with time_machine.travel(later, tick=True):
        # The poll waits; a calendar never synced still gets its first sync.
        assert dict(tasks.due_calendars(datetime.now(UTC))) == {
            never_synced.calendar_id: tasks.sync_schedule.Due.SAFETY_NET
        }
        # A poll already queued is skipped when it runs ...
        assert (
            tasks.sync_calendar.apply(args=[cal.calendar_id], kwargs={"trigger": "poll"}).get()
            == "skipped"
        )
        # ... while a push-driven sync still goes to Google.
        emulator.control.insert_event(
            cal.google_calendar_id,
            {
                "summary": "pushed",
                "start": {"dateTime": (later + timedelta(days=1)).isoformat()},
                "end": {"dateTime": (later + timedelta(days=1, hours=1)).isoformat()},
            },
        )
        assert (
            tasks.sync_calendar.apply(args=[cal.calendar_id], kwargs={"force": True}).get()
            == "done"
        )


def test_audits_wait_while_the_daily_budget_runs_low(
    budget_settings: Settings, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cal = attach(emulator, "audited@example.com")
    sent: list[list[int]] = []
    monkeypatch.setattr(tasks, "enqueue_audit", lambda ids, *, reason: sent.append(ids))
    monkeypatch.setattr("rules.audit.audit_due", lambda key, last, now, period: True)
    _spent_earlier_today(budget_settings, 700)
    assert tasks.schedule_audits() == 1 and sent == [[cal.calendar_id]]
    sent.clear()
    _spent_earlier_today(budget_settings, 850)  # less than 20% left: upkeep waits
    assert tasks.schedule_audits() == 0 and sent == []
