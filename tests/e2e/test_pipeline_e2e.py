"""Push → coalesced incremental sync → busy table, end to end on real processes: the emulator
pushes real notifications to gunicorn, real Celery workers sync through the real Google
client, and after every scenario the busy table equals the emulator's freeBusy answer."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import func, select

from models import Channel, SyncRun, SyncState
from models.db import session_scope
from tests.conftest import TEST_ADMIN_TOKEN
from tests.support.browser import launched_chromium
from tests.support.calendar_edits import CalendarEditor

from .conftest import (
    LiveCalendar,
    Stack,
    assert_converges,
    attach_watched,
    wait_for,
    wait_idle,
    watching_and_synced,
)

pytestmark = pytest.mark.e2e

BERLIN = ZoneInfo("Europe/Berlin")


def start_calendars(stack: Stack, count: int, tag: str) -> list[LiveCalendar]:
    calendars = [attach_watched(stack, f"{tag}{n}@example.com") for n in range(count)]
    ids = [c.calendar_id for c in calendars]
    wait_for(lambda: watching_and_synced(ids), 60, "first sync and watch", stack)
    return calendars


def run_random_changes(
    stack: Stack,
    calendars: list[LiveCalendar],
    seed: int,
    changes: int,
    midway=None,
) -> None:
    rng = random.Random(seed)
    control = stack.emulator.control
    makers = [CalendarEditor(control, cal.google_calendar_id, rng) for cal in calendars]
    for number in range(changes):
        rng.choice(makers).random_edit()
        if midway is not None and number == changes // 2:
            midway()
        if rng.random() < 0.3:
            time.sleep(rng.uniform(0, 0.2))


def test_random_changes_converge_to_google(live: Stack) -> None:
    calendars = start_calendars(live, 3, "rand")
    run_random_changes(live, calendars, seed=11, changes=60)
    assert_converges(live, calendars)
    with session_scope() as session:
        kinds = set(session.scalars(select(SyncRun.trigger)))
    assert "push" in kinds or "rerun" in kinds  # notifications drove the syncs


def test_forced_410_midway_converges(live: Stack) -> None:
    calendars = start_calendars(live, 2, "gone")

    def invalidate() -> None:
        for cal in calendars:
            live.emulator.control.invalidate_sync_tokens(cal.google_calendar_id)

    run_random_changes(live, calendars, seed=12, changes=40, midway=invalidate)
    assert_converges(live, calendars)
    with session_scope() as session:
        kinds = set(session.scalars(select(SyncRun.kind).where(SyncRun.outcome == "ok")))
    assert "410-recovery" in kinds


def test_converges_under_30_percent_google_errors(live: Stack) -> None:
    calendars = start_calendars(live, 2, "storm")
    control = live.emulator.control
    control.set_faults(seed=5, error_rates={"429": 0.15, "503": 0.15})
    since = len(control.requests())

    def injected() -> int:
        return sum(r["status"] in (429, 503) for r in control.requests(since=since))

    run_random_changes(live, calendars, seed=13, changes=40)
    # Coalescing keeps the request count low; keep editing until the storm has hit.
    for seed in range(100, 120):
        if injected() >= 3:
            break
        run_random_changes(live, calendars, seed=seed, changes=5)
        time.sleep(1)
    assert injected() >= 3, "the fault injection did not fire"
    assert_converges(live, calendars, timeout=120)


def test_duplicated_and_reordered_notifications_converge(live: Stack) -> None:
    calendars = start_calendars(live, 2, "dup")
    live.emulator.control.set_faults(seed=6, duplicate_rate=0.5, reorder=True, delay_ms=150)
    run_random_changes(live, calendars, seed=14, changes=40)
    assert_converges(live, calendars)


def _list_sequences(stack: Stack, google_calendar_id: str, since: int) -> int:
    # A sequence starts with an events.list that carries no pageToken.
    return sum(
        1
        for r in stack.emulator.control.requests(since=since)
        if r["methodId"] == "calendar.events.list"
        and r["calendarId"] == google_calendar_id
        and not r["pageToken"]
    )


def test_a_burst_of_50_notifications_costs_at_most_2_fetches(live: Stack) -> None:
    (cal,) = start_calendars(live, 1, "burst")
    wait_idle()
    since = len(live.emulator.control.requests())  # index of the first request after this
    deliveries_before = len(live.emulator.control.deliveries())
    base = datetime.now(UTC).replace(microsecond=0)

    def insert(n: int) -> None:
        live.emulator.control.insert_event(
            cal.google_calendar_id,
            {
                "summary": f"burst {n}",
                "start": {"dateTime": (base + timedelta(hours=n + 1)).isoformat()},
                "end": {"dateTime": (base + timedelta(hours=n + 2)).isoformat()},
            },
        )

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(insert, range(50)))
    assert time.monotonic() - started < 1.0, "the burst took too long to be a burst"
    assert_converges(live, [cal])
    wait_idle()
    delivered = [
        d
        for d in live.emulator.control.deliveries()[deliveries_before:]
        if d["resourceState"] == "exists" and d["state"] == "delivered"
    ]
    assert len(delivered) >= 50
    assert _list_sequences(live, cal.google_calendar_id, since) <= 2


def test_worker_killed_mid_sync_loses_nothing(live: Stack) -> None:
    calendars = start_calendars(live, 2, "kill")
    wait_idle()
    # Slow Google down so the kill lands inside a sync.
    live.emulator.control.set_faults(latency_ms=1500)
    run_random_changes(live, calendars, seed=15, changes=10)
    worker = live.workers[0]

    def in_flight() -> bool:
        with session_scope() as session:
            return bool(
                session.scalar(
                    select(func.count())
                    .select_from(SyncState)
                    .where(
                        SyncState.lease_until > datetime.now(UTC),
                        SyncState.lease_owner != "backoff",
                    )
                )
            )

    wait_for(in_flight, 30, "a sync in flight", live)
    children = worker.children()
    assert children, "the worker has no pool processes"
    for pid in children:
        worker.kill_child(pid)
    live.emulator.control.set_faults(latency_ms=0)
    assert_converges(live, calendars, timeout=90)
    assert worker.alive  # the pool replaced its children


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 400),
        (
            {
                "X-Goog-Channel-ID": "nope",
                "X-Goog-Resource-State": "exists",
                "X-Goog-Resource-ID": "r",
                "X-Goog-Message-Number": "2",
            },
            404,
        ),
    ],
)
def test_forged_notifications_are_rejected_by_the_real_server(
    live: Stack, headers: dict, status: int
) -> None:
    response = requests.post(live.web_url + "/webhooks/google", headers=headers, timeout=5)
    assert response.status_code == status
    assert "error" in response.json()


def test_wrong_token_on_a_real_channel_changes_nothing(live: Stack) -> None:
    (cal,) = start_calendars(live, 1, "forge")
    wait_idle()
    with session_scope() as session:
        channel = session.scalars(
            select(Channel).where(Channel.calendar_id == cal.calendar_id)
        ).one()
        channel_id, resource_id = channel.id, channel.resource_id
    response = requests.post(
        live.web_url + "/webhooks/google",
        headers={
            "X-Goog-Channel-ID": channel_id,
            "X-Goog-Channel-Token": "forged",
            "X-Goog-Resource-ID": resource_id,
            "X-Goog-Resource-State": "exists",
            "X-Goog-Message-Number": "99",
        },
        timeout=5,
    )
    assert response.status_code == 403
    with session_scope() as session:
        assert session.get(SyncState, cal.calendar_id).dirty_since is None


def test_a_google_change_reaches_the_open_week_view(live: Stack) -> None:
    """The host's page (webhook/host_pages/) open in Chromium: an event created at Google
    reaches its week view through the whole path (push to gunicorn, a worker's sync, the
    page's own refresh) within seconds, and its deletion too. Here, not in a module of its
    own, to share this module's running stack."""
    cal = attach_watched(live, "e2e-page@example.com")
    wait_for(lambda: watching_and_synced([cal.calendar_id]), 60, "first sync and watch", live)
    base = live.settings.public_url
    answer = requests.post(
        f"{base}/v1/hosts/{cal.host_id}/sign-in-link",
        headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"},
        timeout=10,
    )
    assert answer.status_code == 201, answer.text
    tomorrow = datetime.now(BERLIN).date() + timedelta(days=1)
    at = datetime.combine(tomorrow, datetime.min.time(), tzinfo=BERLIN)

    with launched_chromium("host page e2e test") as browser:
        page = browser.new_page()
        page.goto(base + urlsplit(answer.json()["url"]).path)
        page.goto(f"{base}/me?week={tomorrow.isoformat()}")
        assert "synced" in page.locator(".freshness").inner_text()

        created_at = time.monotonic()
        event = live.emulator.control.insert_event(
            cal.google_calendar_id,
            {
                "summary": "Planning",
                "start": {"dateTime": (at + timedelta(hours=10)).isoformat()},
                "end": {"dateTime": (at + timedelta(hours=11)).isoformat()},
            },
        )
        block = page.locator(
            f'.slots[data-date="{tomorrow.isoformat()}"] .blk.calendar', has_text="10:00\u201311:00"
        )
        block.wait_for(timeout=20_000)
        # Push, sync and the page's 3-second refresh: a few seconds, not a reload away.
        assert time.monotonic() - created_at < 20
        live.emulator.control.delete_event(cal.google_calendar_id, event["id"])
        block.wait_for(state="detached", timeout=20_000)
        page.close()
