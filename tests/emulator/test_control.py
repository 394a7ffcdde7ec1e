"""The control API: reset, accounts, calendars, logs, clock, scenarios, reference busy."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from emulator import EmulatorControlError, EmulatorServer
from tests.emulator.conftest import (
    ACCOUNT_EMAIL,
    CalendarHelper,
    PushReceiver,
    make_service,
    timed,
)


def test_create_account_returns_authorized_user_info(emulator: EmulatorServer) -> None:
    info = emulator.control.create_account("zoe@example.com")
    assert info["type"] == "authorized_user"
    assert info["account"] == "zoe@example.com"
    assert info["token_uri"] == emulator.token_uri
    assert info["client_id"] and info["client_secret"] and info["refresh_token"]


def test_create_calendar_twice_is_refused(emulator: EmulatorServer) -> None:
    emulator.control.create_calendar("c@example.com", "UTC", "c@example.com")
    with pytest.raises(EmulatorControlError) as refused:
        emulator.control.create_calendar("c@example.com", "UTC", "c@example.com")
    assert refused.value.status == 400
    with pytest.raises(EmulatorControlError):
        emulator.control.create_calendar("d@example.com", "Mars/Olympus", "d@example.com")


def test_unknown_calendar_in_control_calls_is_404(emulator: EmulatorServer) -> None:
    for call in (
        lambda: emulator.control.delete_calendar("none@example.com"),
        lambda: emulator.control.invalidate_sync_tokens("none@example.com"),
        lambda: emulator.control.insert_event(
            "none@example.com",
            timed("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z", time_zone="UTC"),
        ),
    ):
        with pytest.raises(EmulatorControlError) as missing:
            call()
        assert missing.value.status == 404


def test_requests_log_records_api_calls(emulator: EmulatorServer, calendar: CalendarHelper) -> None:
    first = calendar.pages(maxResults=1)
    calendar.insert(timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00"))
    calendar.insert(timed("2026-12-02T10:00:00+01:00", "2026-12-02T11:00:00+01:00"))
    calendar.pages(maxResults=1, syncToken=first[-1]["nextSyncToken"])
    log = emulator.control.requests()
    assert [entry["seq"] for entry in log] == list(range(len(log)))
    lists = [e for e in log if e["methodId"] == "calendar.events.list"]
    assert [(e["syncToken"], e["pageToken"]) for e in lists] == [
        (False, False),
        (True, False),
        (True, True),
    ]
    for entry in lists:
        assert entry["calendarId"] == ACCOUNT_EMAIL  # "primary" resolved
        assert entry["account"] == ACCOUNT_EMAIL
        assert entry["status"] == 200
        assert entry["time"]
    assert emulator.control.requests(since=len(log) - 1) == log[-1:]


def test_reset_clears_state(
    emulator: EmulatorServer,
    calendar: CalendarHelper,
    account: dict[str, Any],
    push_receiver: PushReceiver,
) -> None:
    calendar.insert(timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00"))
    calendar.service.events().watch(
        calendarId="primary", body={"id": "c1", "type": "web_hook", "address": push_receiver.url}
    ).execute()
    emulator.control.set_faults(latency_ms=5, drop_rate=0.5)
    emulator.control.advance_clock(3600)
    emulator.control.wait_push_idle()
    emulator.control.reset()
    assert emulator.control.requests() == []
    assert emulator.control.channels() == []
    assert emulator.control.deliveries() == []
    assert emulator.control.faults()["latency_ms"] == 0
    assert emulator.control.faults()["drop_rate"] == 0
    assert emulator.control.clock()["offsetSeconds"] == 0
    with pytest.raises(Exception, match="invalid_grant"):  # the old grant is gone
        make_service(emulator, account).calendars().get(calendarId="primary").execute()


def test_advance_clock_moves_event_timestamps(
    emulator: EmulatorServer, calendar: CalendarHelper
) -> None:
    before = datetime.fromisoformat(emulator.control.clock()["now"].replace("Z", "+00:00"))
    emulator.control.advance_clock(86400)
    event = calendar.insert(timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00"))
    created = datetime.fromisoformat(event["created"].replace("Z", "+00:00"))
    assert (created - before).total_seconds() >= 86400
    assert emulator.control.clock()["offsetSeconds"] == 86400


def test_channels_and_deliveries_describe_push(
    emulator: EmulatorServer, calendar: CalendarHelper, push_receiver: PushReceiver
) -> None:
    watch = (
        calendar.service.events()
        .watch(
            calendarId="primary",
            body={"id": "c1", "type": "web_hook", "address": push_receiver.url},
        )
        .execute()
    )
    push_receiver.wait_for(1)
    emulator.control.wait_push_idle()
    (channel,) = emulator.control.channels()
    assert channel["id"] == "c1" and channel["resourceId"] == watch["resourceId"]
    assert channel["calendarId"] == ACCOUNT_EMAIL and channel["address"] == push_receiver.url
    assert channel["stopped"] is False
    (delivery,) = emulator.control.deliveries()
    assert delivery["channelId"] == "c1" and delivery["messageNumber"] == 1
    assert delivery["status"] == 204 and delivery["attempt"] == 1
    assert emulator.control.deliveries(since=1) == []


def test_reference_busy(emulator: EmulatorServer, calendar: CalendarHelper) -> None:
    calendar.insert(
        timed(
            "2026-12-01T10:00:00+01:00",
            "2026-12-01T11:00:00+01:00",
            recurrence=["RRULE:FREQ=DAILY;COUNT=2"],
        )
    )
    busy = emulator.control.reference_busy(
        ACCOUNT_EMAIL, datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC)
    )
    assert busy == [
        (datetime(2026, 12, 1, 9, tzinfo=UTC), datetime(2026, 12, 1, 10, tzinfo=UTC)),
        (datetime(2026, 12, 2, 9, tzinfo=UTC), datetime(2026, 12, 2, 10, tzinfo=UTC)),
    ]


SCENARIO = {
    "seed": 9,
    "faults": {"latency_ms": 1},
    "accounts": [{"email": "sam@example.com", "refresh_token": "1//fixed-sam"}],
    "calendars": [
        {
            "id": "sam@example.com",
            "timeZone": "Europe/Berlin",
            "owner": "sam@example.com",
            "summary": "Sam",
            "events": [
                timed(
                    "2026-12-01T10:00:00+01:00",
                    "2026-12-01T11:00:00+01:00",
                    summary="Standup",
                    recurrence=["RRULE:FREQ=DAILY;COUNT=3"],
                )
            ],
        }
    ],
}


def test_load_scenario_via_control(emulator: EmulatorServer) -> None:
    loaded = emulator.control.load_scenario(SCENARIO)
    info = loaded["accounts"]["sam@example.com"]
    assert info["refresh_token"] == "1//fixed-sam"
    assert emulator.control.faults()["latency_ms"] == 1
    client = make_service(emulator, info)
    items = client.events().list(calendarId="primary", singleEvents=True).execute()["items"]
    assert [item["summary"] for item in items] == ["Standup"] * 3


def test_load_scenario_file(emulator: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(SCENARIO), encoding="utf-8")
    loaded = emulator.load_scenario_file(path)
    assert loaded["eventsCreated"] == 1
    client = make_service(emulator, loaded["accounts"]["sam@example.com"])
    assert client.calendars().get(calendarId="primary").execute()["summary"] == "Sam"


def test_a_scenario_calendar_can_start_as_synced(emulator: EmulatorServer) -> None:
    """The fleet benchmark loads calendars as already synced: the token answered with the
    scenario lists nothing until something changes, then the change."""
    scenario = {**SCENARIO, "calendars": [{**SCENARIO["calendars"][0], "syncToken": True}]}
    loaded = emulator.control.load_scenario(scenario)
    token = loaded["syncTokens"]["sam@example.com"]
    client = make_service(emulator, loaded["accounts"]["sam@example.com"])
    events = client.events()
    quiet = events.list(calendarId="primary", singleEvents=True, syncToken=token).execute()
    assert quiet["items"] == [] and quiet["nextSyncToken"]
    emulator.control.insert_event(
        "sam@example.com", timed("2026-12-05T10:00:00Z", "2026-12-05T11:00:00Z", summary="New")
    )
    changed = events.list(calendarId="primary", singleEvents=True, syncToken=token).execute()
    assert [item["summary"] for item in changed["items"]] == ["New"]


def test_revoke_unknown_account_is_404(emulator: EmulatorServer) -> None:
    with pytest.raises(EmulatorControlError) as missing:
        emulator.control.revoke_account("ghost@example.com")
    assert missing.value.status == 404


def test_control_calls_bypass_faults(emulator: EmulatorServer, calendar: CalendarHelper) -> None:
    emulator.control.set_faults(error_rates={"500": 1.0})
    made = emulator.control.insert_event(
        ACCOUNT_EMAIL, timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00")
    )
    assert emulator.control.get_event(ACCOUNT_EMAIL, made["id"])["id"] == made["id"]
    with pytest.raises(HttpError):
        calendar.get(made["id"])


def test_silent_changes_reach_freebusy_and_full_listings_but_not_incrementals(
    emulator: EmulatorServer, calendar: CalendarHelper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The silent-divergence fault: stored, but no change-sequence position and no push."""
    control = emulator.control
    moved = calendar.insert(timed("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"))
    token = calendar.pages()[-1]["nextSyncToken"]
    notified: list[str] = []
    monkeypatch.setattr(emulator.state.store, "on_change", notified.append)
    seq_before = emulator.state.store.get_calendar(calendar.calendar_id).seq
    added = control.insert_event(
        calendar.calendar_id, timed("2026-12-02T10:00:00Z", "2026-12-02T11:00:00Z"), silent=True
    )
    control.patch_event(
        calendar.calendar_id,
        moved["id"],
        timed("2026-12-01T12:00:00Z", "2026-12-01T13:00:00Z"),
        silent=True,
    )
    incremental = calendar.pages(syncToken=token)
    assert [item for page in incremental for item in page.get("items", [])] == []
    assert emulator.state.store.get_calendar(calendar.calendar_id).seq == seq_before
    assert notified == []  # nothing pushed
    full = {item["id"] for page in calendar.pages() for item in page.get("items", [])}
    assert {added["id"], moved["id"]} <= full
    busy = control.reference_busy(
        calendar.calendar_id,
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2026, 12, 3, tzinfo=UTC),
    )
    assert (datetime(2026, 12, 1, 12, tzinfo=UTC), datetime(2026, 12, 1, 13, tzinfo=UTC)) in busy
    assert (datetime(2026, 12, 2, 10, tzinfo=UTC), datetime(2026, 12, 2, 11, tzinfo=UTC)) in busy
    # A normal change afterwards is recorded again.
    calendar.delete(added["id"])
    assert any(
        item["id"] == added["id"]
        for page in calendar.pages(syncToken=token)
        for item in page.get("items", [])
    )
