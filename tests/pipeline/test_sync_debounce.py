"""The debounce before a notified calendar's first fetch: a burst of notifications is one
events.list sequence, a steady stream still gets fetched by the cap, and nothing is lost."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime

from core.settings import Settings, configure
from intake.records import record_change_notification
from models.db import session_scope
from worker.sync_engine import sync_calendar

from .conftest import Attached
from .test_sync_engine import assert_converged, timed


def notify(calendar_id: int) -> datetime:
    """What the webhook records for a change notification."""
    at = datetime.now(UTC)
    with session_scope() as session:
        record_change_notification(session.connection(), calendar_id, at)
    return at


def first_page_lists(emulator, since: int, calendar: str) -> list[dict]:
    return [
        r
        for r in emulator.control.requests(since)
        if r["methodId"] == "calendar.events.list"
        and r["calendarId"] == calendar
        and not r.get("pageToken")
        and r.get("syncToken")  # not the full sync that set the test up
    ]


def debounced(settings: Settings, quiet_ms: int, max_ms: int) -> Settings:
    configured = dataclasses.replace(settings, debounce_ms=quiet_ms, debounce_max_ms=max_ms)
    configure(configured)
    return configured


def change_burst(emulator, cal: Attached, count: int, every_s: float) -> None:
    for i in range(count):
        emulator.control.insert_event(cal.google_calendar_id, timed(2, 8 + i % 8, 9 + i % 8))
        notify(cal.calendar_id)
        time.sleep(every_s)


def test_a_burst_that_straddles_the_pickup_is_one_fetch(
    emulator, attached: Attached, google_settings: Settings
) -> None:
    debounced(google_settings, quiet_ms=150, max_ms=3000)
    assert sync_calendar(attached.calendar_id, full=True).status == "done"
    since = emulator.control.requests()[-1]["seq"]
    emulator.control.insert_event(attached.google_calendar_id, timed(1, 9, 10))
    notify(attached.calendar_id)
    # The task starts right away; the rest of the burst comes while it waits.
    worker = threading.Thread(target=sync_calendar, args=(attached.calendar_id,))
    worker.start()
    change_burst(emulator, attached, count=8, every_s=0.02)
    worker.join(10)
    assert not worker.is_alive()
    assert len(first_page_lists(emulator, since, attached.google_calendar_id)) == 1
    assert_converged(emulator, attached)


def test_a_steady_stream_is_fetched_by_the_cap_and_nothing_is_lost(
    emulator, attached: Attached, google_settings: Settings
) -> None:
    debounced(google_settings, quiet_ms=100, max_ms=300)
    assert sync_calendar(attached.calendar_id, full=True).status == "done"
    since = emulator.control.requests()[-1]["seq"]
    first = notify(attached.calendar_id)
    stream = threading.Thread(target=change_burst, args=(emulator, attached, 25, 0.04))
    stream.start()
    sync_calendar(attached.calendar_id)
    fetches = first_page_lists(emulator, since, attached.google_calendar_id)
    began = datetime.fromisoformat(fetches[0]["time"].replace("Z", "+00:00"))
    # The stream never goes quiet for 100 ms, so the cap (300 ms) started the fetch.
    assert (began - first).total_seconds() < 0.3 + 0.25
    stream.join()
    while sync_calendar(attached.calendar_id).status == "done":
        pass
    assert_converged(emulator, attached)


def test_a_lone_change_waits_only_the_quiet_window(
    emulator, attached: Attached, google_settings: Settings
) -> None:
    debounced(google_settings, quiet_ms=50, max_ms=300)
    assert sync_calendar(attached.calendar_id, full=True).status == "done"
    emulator.control.insert_event(attached.google_calendar_id, timed(1, 9, 10))
    notified = notify(attached.calendar_id)
    assert sync_calendar(attached.calendar_id).status == "done"
    waited = (datetime.now(UTC) - notified).total_seconds()
    assert 0.05 <= waited < 1.0
    assert_converged(emulator, attached)
