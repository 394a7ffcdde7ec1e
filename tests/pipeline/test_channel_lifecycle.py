"""Channel lifecycle against the emulator, in-process, with time control: renewal before
expiry with overlap and a catch-up sync, polling when push does not work, the safety net
when every notification is dropped, revoked access, and a calendar that disappears.

time-machine moves the clock of the whole process, the in-process emulator's included, so
Google and calsync agree on "now" as they would in production.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select

from core.settings import Settings, configure
from emulator import EmulatorServer
from models import AccountState, Calendar, Channel, GoogleAccount, SyncRun, SyncState
from models.db import session_scope
from models.registry import attach_calendar
from models.sync_flags import forgotten_dirty
from models.sync_status import calendar_status
from rules.sync_schedule import Due
from webhook import create_app
from worker import channels, enqueue, google_client, sync_engine, tasks

from .conftest import Attached, attach
from .test_sync_engine import assert_converged, timed

HOUR = 3600


@pytest.fixture
def lifecycle_settings(google_settings: Settings, emulator: EmulatorServer) -> Iterator[Settings]:
    configured = dataclasses.replace(
        google_settings,
        safety_net_seconds=HOUR,
        poll_seconds=300,
        channel_ttl_seconds=7 * 24 * HOUR,
        renew_before_seconds=24 * HOUR,
    )
    configure(configured)
    # No web server listens at PUBLIC_URL here: notifications are posted by the tests.
    emulator.control.set_faults(drop_rate=1.0)
    yield configured
    configure(google_settings)


@pytest.fixture
def stopped(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, list]]:
    """Channel stops the sync engine hands to the queue."""
    calls: list[tuple[int, list]] = []
    monkeypatch.setattr(
        "worker.sync_engine.enqueue_stop_channels",
        lambda acc, chans, **_sealed: calls.append((acc, chans)),
    )
    return calls


def synced_and_watched(emulator: EmulatorServer, email: str) -> Attached:
    cal = attach(emulator, email)
    assert sync_engine.sync_calendar(cal.calendar_id, full=True).status == "done"
    assert channels.start_watch(cal.calendar_id) is not None
    return cal


def live_channels(calendar_id: int) -> list[Channel]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(Channel)
                .where(Channel.calendar_id == calendar_id, Channel.stopped_at.is_(None))
                .order_by(Channel.created_at)
            )
        )


def status(calendar_id: int) -> dict:
    with session_scope() as session:
        report = calendar_status(session, calendar_id, datetime.now(UTC))
    assert report is not None
    return report


def due_kind(calendar_id: int) -> Due | None:
    return dict(tasks.due_calendars(datetime.now(UTC))).get(calendar_id)


def push(client, emulator: EmulatorServer, channel: Channel, number: int) -> int:
    # The database keeps only the token's hash: the token itself is what Google was sent.
    token = {c["id"]: c["token"] for c in emulator.control.channels()}[channel.id]
    return client.post(
        "/webhooks/google",
        headers={
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Channel-Token": token,
            "X-Goog-Resource-ID": channel.resource_id or "",
            "X-Goog-Resource-State": "exists",
            "X-Goog-Message-Number": str(number),
            "X-Goog-Resource-URI": "https://www.googleapis.com/calendar/v3/x",
        },
    ).status_code


def test_renewal_before_expiry_overlaps_and_catches_up(
    lifecycle_settings: Settings, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cal = synced_and_watched(emulator, "renew@example.com")
    [old] = live_channels(cal.calendar_id)
    assert old.expiration is not None
    monkeypatch.setattr(enqueue, "enqueue_sync", lambda *a, **k: None)
    client = create_app(lifecycle_settings).test_client()
    seen_during_switch: list[tuple[str, int]] = []
    real_stop = channels.stop_channel

    def stop_during_overlap(credentials, channel_id, resource_id, settings=None, account_id=None):
        # The new channel is open and the old one not yet stopped: both must be accepted,
        # and a change made exactly now must not be lost.
        new = [c for c in live_channels(cal.calendar_id) if c.id != channel_id]
        assert new, "the new channel must exist before the old one is stopped"
        emulator.control.insert_event(cal.google_calendar_id, timed(3, 10, 11))
        for number, channel in enumerate([old, new[0]], start=10):
            seen_during_switch.append((channel.id, push(client, emulator, channel, number)))
        real_stop(credentials, channel_id, resource_id, settings, account_id)

    monkeypatch.setattr(channels, "stop_channel", stop_during_overlap)

    # Not yet inside RENEW_BEFORE: nothing happens.
    with time_machine.travel(old.expiration - timedelta(hours=30), tick=True):
        assert channels.renew_expiring() == []
    with time_machine.travel(old.expiration - timedelta(hours=20), tick=True):
        assert channels.renew_expiring() == [cal.calendar_id]
        assert [status_code for _, status_code in seen_during_switch] == [204, 204]
        [new] = live_channels(cal.calendar_id)
        assert new.id != old.id and new.expiration > old.expiration
        google_side = {c["id"]: c for c in emulator.control.channels()}
        assert google_side[old.id]["stopped"] and not google_side[new.id]["stopped"]
        # The old channel is refused from now on; the new one is accepted.
        assert push(client, emulator, old, 20) == 404
        assert push(client, emulator, new, 21) == 204
        # The catch-up sync picks up the change made during the switch.
        result = sync_engine.sync_calendar(cal.calendar_id, trigger="channel_renewed", force=True)
        assert result.status == "done"
        assert result.runs[0].kind == "incremental"
        assert_converged(emulator, cal)
        assert len(sync_engine_blocks(cal)) == 1


def sync_engine_blocks(cal: Attached) -> list:
    from .test_sync_engine import product_busy

    return product_busy(cal.calendar_id)


def test_expired_channel_without_renewal_falls_back_to_polling(
    lifecycle_settings: Settings, emulator: EmulatorServer
) -> None:
    cal = synced_and_watched(emulator, "expire@example.com")
    [channel] = live_channels(cal.calendar_id)
    assert status(cal.calendar_id)["state"] == "ok"
    assert status(cal.calendar_id)["polling"] is None
    # Push works: after 10 minutes nothing is due (the hourly safety net is far off).
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=10), tick=True):
        assert due_kind(cal.calendar_id) is None
    # Renewal never ran; the channel expired. Google's clock says so too.
    with time_machine.travel(channel.expiration + timedelta(minutes=1), tick=True):
        assert emulator.control.channels()[0]["expired"]
        report = status(cal.calendar_id)
        assert report["state"] == "not_watched"
        assert "expired" in report["polling"]
        assert "300 s" in report["polling"]
        # Polled every few minutes: due now (last sync is days old) ...
        kind = due_kind(cal.calendar_id)  # a week passed: maybe the weekly full resync too
        assert kind in (Due.POLL, Due.FULL)
        result = sync_engine.sync_calendar(cal.calendar_id, force=True, full=kind is Due.FULL)
        assert result.status == "done"
        assert due_kind(cal.calendar_id) is None
    # ... and again after the poll interval (±25%), long before the hourly safety net.
    with time_machine.travel(channel.expiration + timedelta(minutes=1 + 7), tick=True):
        assert due_kind(cal.calendar_id) is Due.POLL
        # The channel check re-opens a channel for it.
        with session_scope() as session:
            assert channels.unwatched_calendars(session, datetime.now(UTC)) == [cal.calendar_id]


def test_refused_watch_polls_and_says_why(
    lifecycle_settings: Settings, emulator: EmulatorServer
) -> None:
    control = emulator.control
    credentials = control.create_account("nowatch@example.com")
    control.create_calendar(
        "nowatch@example.com", time_zone="UTC", owner="nowatch@example.com", watchable=False
    )
    cal = attach(emulator, "other@example.com")  # a host to hang the calendar on
    with session_scope() as session:
        calendar, _ = attach_calendar(session, cal.host_id, "nowatch@example.com", credentials)
        calendar_id = calendar.id
    assert sync_engine.sync_calendar(calendar_id, full=True).status == "done"
    assert channels.start_watch(calendar_id) is None
    report = status(calendar_id)
    assert report["state"] == "not_watched"
    assert "refused" in report["watchProblem"]
    assert report["polling"].startswith("Google refused")
    with session_scope() as session:
        # Not retried over and over: it stays on polling.
        assert calendar_id not in channels.unwatched_calendars(session, datetime.now(UTC))
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=7), tick=True):
        assert due_kind(calendar_id) is Due.POLL
    # ... but not forever (issue 14, item 10): retried after about an hour, then after about
    # two, four ... hours, never more than a day apart; the status says when.
    first_try = datetime.fromisoformat(report["watchRetryAt"])
    assert timedelta(minutes=45) <= first_try - datetime.now(UTC) <= timedelta(minutes=76)
    assert first_try.isoformat() in report["polling"]
    assert "next try at" in report["polling"]
    gaps = []
    at = first_try
    for _ in range(8):
        with time_machine.travel(at + timedelta(seconds=1), tick=True):
            with session_scope() as session:
                assert calendar_id in channels.unwatched_calendars(session, datetime.now(UTC))
            assert calendar_id not in channels.ensure_watched()  # refused again
            retry_at = datetime.fromisoformat(status(calendar_id)["watchRetryAt"])
            gaps.append((retry_at - datetime.now(UTC)).total_seconds() / 3600)
            at = retry_at
    assert 1.5 <= gaps[0] <= 2.5 and 3 <= gaps[1] <= 5
    assert all(gap <= 24 for gap in gaps) and gaps[-1] >= 18


def test_every_notification_dropped_changes_arrive_within_safety_net(
    lifecycle_settings: Settings, emulator: EmulatorServer
) -> None:
    cal = synced_and_watched(emulator, "dropped@example.com")
    before = len(emulator.control.deliveries())
    emulator.control.insert_event(cal.google_calendar_id, timed(2, 9, 10))
    emulator.control.insert_event(cal.google_calendar_id, timed(4, 14, 16))
    emulator.control.wait_push_idle()
    assert {d["state"] for d in emulator.control.deliveries(before)} == {"dropped"}
    with session_scope() as session:
        assert session.get(SyncState, cal.calendar_id).dirty_since is None  # nobody told us
    # Push looks healthy (a fresh channel), so the hourly safety net is the backstop:
    # due no later than 1.25 hours after the last sync.
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=1.26), tick=True):
        assert due_kind(cal.calendar_id) is Due.SAFETY_NET
        assert sync_engine.sync_calendar(cal.calendar_id, force=True).status == "done"
    assert_converged(emulator, cal)
    assert len(sync_engine_blocks(cal)) == 2


def test_revoked_access_one_failed_refresh_then_silence_until_new_credentials(
    lifecycle_settings: Settings, emulator: EmulatorServer
) -> None:
    control = emulator.control
    cal = synced_and_watched(emulator, "revoked@example.com")
    # A second calendar of the same Google account.
    control.create_calendar("team-revoked", time_zone="UTC", owner="revoked@example.com")
    with session_scope() as session:
        second, _ = attach_calendar(session, cal.host_id, "team-revoked", cal.credentials)
        second_id = second.id
    assert sync_engine.sync_calendar(second_id, full=True).status == "done"
    control.revoke_account("revoked@example.com")
    control.insert_event(cal.google_calendar_id, timed(1, 9, 10))
    mark = len(control.requests())

    assert sync_engine.sync_calendar(cal.calendar_id, force=True).status == "needs_reauth"
    for calendar_id in (cal.calendar_id, second_id):
        assert sync_engine.sync_calendar(calendar_id, force=True).status == "blocked"
        assert channels.start_watch(calendar_id) is None
    tasks_due = dict(tasks.due_calendars(datetime.now(UTC) + timedelta(days=30)))
    assert cal.calendar_id not in tasks_due and second_id not in tasks_due
    after = control.requests(mark)
    # One call refused (its access token died with the grant), exactly one failed refresh,
    # then nothing more for that account.
    assert [(r["methodId"], r["status"]) for r in after] == [
        ("calendar.events.list", 401),
        ("oauth2.token", 400),
    ]
    with session_scope() as session:
        account = session.scalars(select(GoogleAccount)).one()
        assert account.state == AccountState.NEEDS_REAUTH
    for calendar_id in (cal.calendar_id, second_id):
        report = status(calendar_id)
        assert report["state"] == "needs_reauth"
        assert f"/connect/google?host={cal.host_id}&account=" in report["reconnectUrl"]

    # The host reconnects (POST calendars / `calsync calendars add` with new credentials).
    fresh = control.create_account("revoked@example.com")
    with session_scope() as session:
        attach_calendar(session, cal.host_id, cal.google_calendar_id, fresh)
        account = session.scalars(select(GoogleAccount)).one()
        assert account.state == AccountState.OK
    # Every calendar of the account is marked, so the sweeper resumes it even unasked ...
    with session_scope() as session:
        later = datetime.now(UTC) + timedelta(seconds=lifecycle_settings.sweep_after_seconds + 1)
        assert sorted(forgotten_dirty(session, later, lifecycle_settings.sweep_after_seconds)) == [
            cal.calendar_id,
            second_id,
        ]
    # ... and it resumes incrementally (its sync token is still good).
    for calendar_id in (cal.calendar_id, second_id):
        result = sync_engine.sync_calendar(calendar_id, trigger="sweeper")
        assert result.status == "done"
        assert result.runs[0].kind == "incremental"
    assert_converged(emulator, cal)
    with session_scope() as session:
        assert channels.unwatched_calendars(session, datetime.now(UTC)) == [second_id]


def test_calendar_gone_records_reason_stops_channel_and_stays_quiet(
    lifecycle_settings: Settings, emulator: EmulatorServer, stopped: list
) -> None:
    control = emulator.control
    cal = synced_and_watched(emulator, "gone@example.com")
    [channel] = live_channels(cal.calendar_id)
    control.delete_calendar(cal.google_calendar_id)
    assert sync_engine.sync_calendar(cal.calendar_id, force=True).status == "blocked"
    with session_scope() as session:
        state = session.get(SyncState, cal.calendar_id)
        assert state.blocked_reason == "calendar_not_found"
        assert session.get(Channel, channel.id).stopped_at is not None
    assert stopped == [(channel_account(cal.calendar_id), [(channel.id, channel.resource_id)])]
    assert status(cal.calendar_id)["state"] == "failing"
    # No retry storm: nothing calls Google for it any more.
    mark = len(control.requests())
    assert sync_engine.sync_calendar(cal.calendar_id, force=True).status == "blocked"
    assert channels.ensure_watched() == []
    assert cal.calendar_id not in dict(tasks.due_calendars(datetime.now(UTC) + timedelta(days=9)))
    assert control.requests(mark) == []
    # Re-attaching (after the host fixed access) clears the block.
    control.create_calendar(cal.google_calendar_id, time_zone="UTC", owner=cal.google_calendar_id)
    with session_scope() as session:
        attach_calendar(session, cal.host_id, cal.google_calendar_id, cal.credentials)
    assert sync_engine.sync_calendar(cal.calendar_id, full=True).status == "done"
    assert channels.ensure_watched() == [cal.calendar_id]


def channel_account(calendar_id: int) -> int:
    with session_scope() as session:
        return session.get(Calendar, calendar_id).account_id


def test_watch_failure_backs_off(
    lifecycle_settings: Settings, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cal = attach(emulator, "flaky@example.com")
    monkeypatch.setattr(google_client, "RETRY_ATTEMPTS", 1)
    emulator.control.set_faults(error_rates={"503": 1.0}, error_methods=["calendar.events.watch"])
    now = datetime.now(UTC)
    assert channels.ensure_watched(now=now) == []
    with session_scope() as session:
        calendar = session.get(Calendar, cal.calendar_id)
        assert calendar.watch_failures == 1
        assert calendar.watch_retry_at == now + timedelta(seconds=60)
        assert channels.unwatched_calendars(session, now + timedelta(seconds=59)) == []
        assert session.scalars(select(Channel)).all() == []  # the half-made row is gone
    emulator.control.set_faults(error_rates={})
    assert channels.ensure_watched(now=now + timedelta(seconds=61)) == [cal.calendar_id]
    with session_scope() as session:
        calendar = session.get(Calendar, cal.calendar_id)
        assert (calendar.watch_failures, calendar.watch_retry_at) == (0, None)


def test_periodic_full_resync_is_jittered_and_atomic(
    lifecycle_settings: Settings, emulator: EmulatorServer
) -> None:
    cal = synced_and_watched(emulator, "weekly@example.com")
    emulator.control.insert_event(cal.google_calendar_id, timed(12, 8, 9))
    week = timedelta(seconds=lifecycle_settings.full_resync_seconds)
    with time_machine.travel(datetime.now(UTC) + week * 0.74, tick=True):
        assert due_kind(cal.calendar_id) is not Due.FULL
    with time_machine.travel(datetime.now(UTC) + week * 1.26, tick=True):
        assert due_kind(cal.calendar_id) is Due.FULL
        result = sync_engine.sync_calendar(cal.calendar_id, trigger="full_resync", full=True)
        assert result.status == "done" and result.runs[0].kind == "full"
    assert_converged(emulator, cal)
    with session_scope() as session:
        kinds = session.scalars(
            select(SyncRun.kind).where(SyncRun.calendar_id == cal.calendar_id)
        ).all()
    assert kinds.count("full") == 2


def test_a_scheduled_sync_queued_twice_runs_once(
    lifecycle_settings: Settings, emulator: EmulatorServer
) -> None:
    cal = synced_and_watched(emulator, "twice@example.com")
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=2), tick=True):
        assert due_kind(cal.calendar_id) is Due.SAFETY_NET
        kwargs = {"trigger": "safety_net", "force": True}
        first = tasks.sync_calendar.apply(args=[cal.calendar_id], kwargs=kwargs).get()
        mark = len(emulator.control.requests())
        second = tasks.sync_calendar.apply(args=[cal.calendar_id], kwargs=kwargs).get()
    assert (first, second) == ("done", "skipped")
    assert emulator.control.requests(mark) == []


def test_google_gets_the_channel_token_and_the_database_only_its_hash(
    lifecycle_settings: Settings, emulator: EmulatorServer
) -> None:
    from models.calendars import channel_token_hash

    cal = synced_and_watched(emulator, "hashed@example.com")
    [channel] = live_channels(cal.calendar_id)
    sent = {c["id"]: c["token"] for c in emulator.control.channels()}[channel.id]
    assert len(sent) >= 43 and channel.token_hash == channel_token_hash(sent)


def test_a_deleted_hosts_channels_are_stopped_at_google(
    lifecycle_settings: Settings, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from models.registry import delete_host

    cal = synced_and_watched(emulator, "deleted-host@example.com")
    (channel,) = live_channels(cal.calendar_id)
    sent: list[tuple] = []
    monkeypatch.setattr(
        enqueue, "send", lambda name, *args, **kwargs: sent.append((name, args, kwargs))
    )
    with session_scope() as session:
        host_id = session.get(Calendar, cal.calendar_id).host_id
        to_stop = delete_host(session, host_id)
    assert to_stop is not None
    for account_id, stops in to_stop.items():
        enqueue.enqueue_stop_channels(
            account_id, stops.channel_pairs(), sealed_credentials=stops.sealed_text()
        )
    # What the worker does with the message; the account row no longer exists.
    ((_name, args, kwargs),) = sent
    tasks.stop_channels.run(*args, **kwargs)
    at_google = {c["id"]: c for c in emulator.control.channels()}
    assert at_google[channel.id]["stopped"]


def test_a_calendar_just_watched_needs_no_attention_until_its_channel_nears_its_end(
    lifecycle_settings: Settings, emulator: EmulatorServer
) -> None:
    # Every health snapshot (alert round, metrics, outbound states) reads in full the
    # calendars that may need attention; a calendar whose watch just started is not one of
    # them, without waiting for the next renewal round to judge its channel.
    from models.ops_snapshot import _attention_ids

    cal = synced_and_watched(emulator, "fresh-watch@example.com")
    [channel] = live_channels(cal.calendar_id)
    assert channel.expiration is not None
    with session_scope() as session:
        state = session.get(SyncState, cal.calendar_id)
        assert state is not None
        assert state.watch_check_at == channel.expiration
        assert cal.calendar_id not in _attention_ids(session, datetime.now(UTC), HOUR)
        assert cal.calendar_id in _attention_ids(session, channel.expiration, HOUR)
    # The renewal round's reads agree: nothing to open now.
    with session_scope() as session:
        assert channels.unwatched_calendars(session, datetime.now(UTC)) == []
