"""Push delivery to a real local HTTP receiver: headers, ordering, retries, stop, expiry, faults."""

from __future__ import annotations

import socket
import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from emulator import EmulatorServer
from tests.emulator.conftest import (
    ACCOUNT_EMAIL,
    CalendarHelper,
    PushReceiver,
    ReceivedPush,
    make_service,
    timed,
)

GOOG_HEADERS = {
    "x-goog-channel-id",
    "x-goog-channel-token",
    "x-goog-channel-expiration",
    "x-goog-message-number",
    "x-goog-resource-id",
    "x-goog-resource-state",
    "x-goog-resource-uri",
}


def _headers(push: ReceivedPush) -> dict[str, str]:
    return {name.lower(): value for name, value in push.headers.items()}


def _number(push: ReceivedPush) -> int:
    return int(_headers(push)["x-goog-message-number"])


def _state(push: ReceivedPush) -> str:
    return _headers(push)["x-goog-resource-state"]


def _watch(
    calendar: CalendarHelper, address: str, channel_id: str = "chan-1", **extra: Any
) -> dict[str, Any]:
    body = {"id": channel_id, "type": "web_hook", "address": address, **extra}
    return calendar.service.events().watch(calendarId="primary", body=body).execute()


def _change(calendar: CalendarHelper, summary: str = "change") -> dict[str, Any]:
    return calendar.insert(
        timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00", summary=summary)
    )


def _quiet(emulator: EmulatorServer, receiver: PushReceiver) -> list[ReceivedPush]:
    """Everything received once the emulator has nothing left to deliver."""
    emulator.control.wait_push_idle(timeout=5)
    return receiver.snapshot()


@pytest.fixture
def fast_retries(emulator: EmulatorServer) -> None:
    emulator.control.set_faults(push_retry_base_seconds=0.05)


def test_sync_message_has_googles_headers_and_no_body(
    calendar: CalendarHelper, push_receiver: PushReceiver
) -> None:
    watch = _watch(calendar, push_receiver.url, token="tok-123", params={"ttl": "3600"})
    assert watch["kind"] == "api#channel" and watch["id"] == "chan-1"
    assert watch["token"] == "tok-123"
    (sync,) = push_receiver.wait_for(1)
    headers = _headers(sync)
    assert sync.method == "POST" and sync.path == "/hook"
    assert sync.body == b""
    assert headers.get("content-length", "0") == "0"
    assert {name for name in headers if name.startswith("x-goog-")} == GOOG_HEADERS
    assert headers["x-goog-channel-id"] == "chan-1"
    assert headers["x-goog-channel-token"] == "tok-123"
    assert headers["x-goog-message-number"] == "1"
    assert headers["x-goog-resource-state"] == "sync"
    assert headers["x-goog-resource-id"] == watch["resourceId"]
    assert headers["x-goog-resource-uri"] == watch["resourceUri"]
    assert headers["user-agent"].startswith("APIs-Google")
    assert headers["x-goog-channel-expiration"].endswith("GMT")
    expiration = parsedate_to_datetime(headers["x-goog-channel-expiration"])
    assert int(expiration.timestamp()) == int(watch["expiration"]) // 1000


def test_exists_after_each_change_with_growing_numbers(
    calendar: CalendarHelper, push_receiver: PushReceiver
) -> None:
    _watch(calendar, push_receiver.url)
    push_receiver.wait_for(1)
    event = _change(calendar)
    push_receiver.wait_for(2)
    calendar.patch(event["id"], {"summary": "patched"})
    push_receiver.wait_for(3)
    calendar.delete(event["id"])
    received = push_receiver.wait_for(4)
    assert [_state(p) for p in received] == ["sync", "exists", "exists", "exists"]
    numbers = [_number(p) for p in received]
    assert numbers == sorted(numbers) and len(set(numbers)) == 4
    assert "x-goog-channel-token" not in _headers(received[0])  # none was set


def test_control_api_changes_push_too(
    calendar: CalendarHelper, emulator: EmulatorServer, push_receiver: PushReceiver
) -> None:
    _watch(calendar, push_receiver.url)
    push_receiver.wait_for(1)
    emulator.control.insert_event(
        ACCOUNT_EMAIL, timed("2026-12-01T10:00:00+01:00", "2026-12-01T11:00:00+01:00")
    )
    assert _state(push_receiver.wait_for(2)[1]) == "exists"


def test_retry_on_503_until_delivered(
    calendar: CalendarHelper,
    emulator: EmulatorServer,
    push_receiver: PushReceiver,
    fast_retries: None,
) -> None:
    push_receiver.statuses = [503, 503]
    _watch(calendar, push_receiver.url)
    received = push_receiver.wait_for(3)
    assert [(_state(p), _number(p)) for p in received] == [("sync", 1)] * 3
    assert received[1].monotonic - received[0].monotonic >= 0.04
    assert received[2].monotonic - received[1].monotonic >= 0.09  # exponential backoff
    assert len(_quiet(emulator, push_receiver)) == 3
    log = [(d["attempt"], d["status"], d["state"]) for d in emulator.control.deliveries()]
    assert log == [(1, 503, "retrying"), (2, 503, "retrying"), (3, 204, "delivered")]


@pytest.mark.parametrize("status", [404, 410, 400])
def test_no_retry_on_other_statuses(
    calendar: CalendarHelper,
    emulator: EmulatorServer,
    push_receiver: PushReceiver,
    fast_retries: None,
    status: int,
) -> None:
    push_receiver.statuses = [status]
    _watch(calendar, push_receiver.url)
    push_receiver.wait_for(1)
    deadline = time.monotonic() + 0.3  # several retry periods at 0.05 s
    while time.monotonic() < deadline:
        assert len(push_receiver.snapshot()) == 1
        time.sleep(0.02)
    assert len(_quiet(emulator, push_receiver)) == 1
    log = [(d["attempt"], d["status"], d["state"]) for d in emulator.control.deliveries()]
    assert log == [(1, status, "failed")]


def test_connection_errors_retry_then_give_up(
    calendar: CalendarHelper, emulator: EmulatorServer
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    emulator.control.set_faults(push_retry_base_seconds=0.02, push_max_attempts=3)
    _watch(calendar, f"http://127.0.0.1:{closed_port}/hook")
    emulator.control.wait_push_idle(timeout=5)
    log = [(d["attempt"], d["status"], d["state"]) for d in emulator.control.deliveries()]
    assert log == [(1, "error", "retrying"), (2, "error", "retrying"), (3, "error", "failed")]


def test_stopped_channel_gets_nothing(
    calendar: CalendarHelper, emulator: EmulatorServer, push_receiver: PushReceiver
) -> None:
    watch = _watch(calendar, push_receiver.url)
    push_receiver.wait_for(1)
    calendar.service.channels().stop(
        body={"id": watch["id"], "resourceId": watch["resourceId"]}
    ).execute()
    _change(calendar)
    assert len(_quiet(emulator, push_receiver)) == 1
    (described,) = emulator.control.channels()
    assert described["stopped"] is True
    with pytest.raises(HttpError) as again:
        calendar.service.channels().stop(
            body={"id": watch["id"], "resourceId": watch["resourceId"]}
        ).execute()
    assert again.value.status_code == 404


def test_stop_unknown_channel_or_wrong_resource_is_404(
    calendar: CalendarHelper, push_receiver: PushReceiver
) -> None:
    watch = _watch(calendar, push_receiver.url)
    for body in (
        {"id": "never-made", "resourceId": watch["resourceId"]},
        {"id": watch["id"], "resourceId": "not-the-resource"},
    ):
        with pytest.raises(HttpError) as missing:
            calendar.service.channels().stop(body=body).execute()
        assert missing.value.status_code == 404


def test_duplicate_channel_id_is_400(calendar: CalendarHelper, push_receiver: PushReceiver) -> None:
    _watch(calendar, push_receiver.url, channel_id="same")
    with pytest.raises(HttpError) as duplicate:
        _watch(calendar, push_receiver.url, channel_id="same")
    assert duplicate.value.status_code == 400


def test_unwatchable_calendar_is_400(
    calendar: CalendarHelper, emulator: EmulatorServer, push_receiver: PushReceiver
) -> None:
    emulator.control.create_calendar("holidays@example.com", "UTC", ACCOUNT_EMAIL, watchable=False)
    with pytest.raises(HttpError) as refused:
        calendar.service.events().watch(
            calendarId="holidays@example.com",
            body={"id": "c", "type": "web_hook", "address": push_receiver.url},
        ).execute()
    assert refused.value.status_code == 400
    assert refused.value.error_details[0]["reason"] == "pushNotSupportedForRequestedResource"


def _clock_now(emulator: EmulatorServer) -> float:
    return datetime.fromisoformat(
        emulator.control.clock()["now"].replace("Z", "+00:00")
    ).timestamp()


def test_expired_channel_gets_nothing(
    calendar: CalendarHelper, emulator: EmulatorServer, push_receiver: PushReceiver
) -> None:
    watch = _watch(calendar, push_receiver.url, params={"ttl": "60"})
    assert abs(int(watch["expiration"]) / 1000 - (_clock_now(emulator) + 60)) < 5
    push_receiver.wait_for(1)
    _change(calendar)
    push_receiver.wait_for(2)
    emulator.control.advance_clock(61)
    _change(calendar)
    assert len(_quiet(emulator, push_receiver)) == 2


def test_default_ttl_and_max_ttl_clamp(
    calendar: CalendarHelper, emulator: EmulatorServer, push_receiver: PushReceiver
) -> None:
    default = _watch(calendar, push_receiver.url, channel_id="default")
    assert abs(int(default["expiration"]) / 1000 - (_clock_now(emulator) + 604800)) < 5
    emulator.control.set_faults(max_channel_ttl_seconds=120)
    clamped = _watch(calendar, push_receiver.url, channel_id="clamped", params={"ttl": "3600"})
    assert abs(int(clamped["expiration"]) / 1000 - (_clock_now(emulator) + 120)) < 5


def test_each_live_channel_of_the_calendar_is_notified(
    calendar: CalendarHelper, emulator: EmulatorServer, push_receiver: PushReceiver
) -> None:
    emulator.control.create_calendar("team@example.com", "UTC", ACCOUNT_EMAIL)
    _watch(calendar, push_receiver.url, channel_id="a")
    _watch(calendar, push_receiver.url, channel_id="b")
    calendar.service.events().watch(
        calendarId="team@example.com",
        body={"id": "other", "type": "web_hook", "address": push_receiver.url},
    ).execute()
    push_receiver.wait_for(3)
    _change(calendar)
    received = push_receiver.wait_for(5)
    exists = sorted(_headers(p)["x-goog-channel-id"] for p in received if _state(p) == "exists")
    assert exists == ["a", "b"]
    assert len(_quiet(emulator, push_receiver)) == 5


def test_drop_fault_skips_messages_but_numbers_keep_growing(
    calendar: CalendarHelper, emulator: EmulatorServer, push_receiver: PushReceiver
) -> None:
    _watch(calendar, push_receiver.url)
    push_receiver.wait_for(1)
    emulator.control.set_faults(drop_rate=1.0)
    _change(calendar)
    _change(calendar)
    assert len(_quiet(emulator, push_receiver)) == 1
    assert [d["state"] for d in emulator.control.deliveries()][1:] == ["dropped", "dropped"]
    emulator.control.set_faults(drop_rate=0.0)
    _change(calendar)
    received = push_receiver.wait_for(2)
    assert _number(received[1]) > _number(received[0]) + 1


def test_duplicate_fault_repeats_the_message_number(
    calendar: CalendarHelper, emulator: EmulatorServer, push_receiver: PushReceiver
) -> None:
    _watch(calendar, push_receiver.url)
    push_receiver.wait_for(1)
    emulator.control.set_faults(duplicate_rate=1.0)
    _change(calendar)
    received = push_receiver.wait_for(3)
    assert [_state(p) for p in received[1:]] == ["exists", "exists"]
    assert _number(received[1]) == _number(received[2])
    assert len(_quiet(emulator, push_receiver)) == 3


def test_delay_fault_delays_delivery(
    calendar: CalendarHelper, emulator: EmulatorServer, push_receiver: PushReceiver
) -> None:
    _watch(calendar, push_receiver.url)
    push_receiver.wait_for(1)
    emulator.control.set_faults(delay_ms=300)
    changed_at = time.monotonic()
    _change(calendar)
    received = push_receiver.wait_for(2)
    assert received[1].monotonic - changed_at >= 0.3


def test_reorder_fault_shuffles_arrival(
    calendar: CalendarHelper, emulator: EmulatorServer, push_receiver: PushReceiver
) -> None:
    _watch(calendar, push_receiver.url)
    push_receiver.wait_for(1)
    emulator.control.set_faults(reorder=True, delay_ms=100)
    for index in range(8):
        _change(calendar, summary=f"n{index}")
    received = push_receiver.wait_for(9)[1:]
    numbers = [_number(p) for p in received]
    assert sorted(numbers) == list(range(2, 10))
    assert numbers != sorted(numbers)


def test_only_the_creating_account_can_stop_a_channel(
    calendar: CalendarHelper, emulator: EmulatorServer, push_receiver: PushReceiver
) -> None:
    watch = _watch(calendar, push_receiver.url)
    bob = make_service(emulator, emulator.control.create_account("bob@example.com"))
    body = {"id": watch["id"], "resourceId": watch["resourceId"]}
    with pytest.raises(HttpError) as refused:
        bob.channels().stop(body=body).execute()
    assert refused.value.status_code == 404
    calendar.service.channels().stop(body=body).execute()


def test_resource_id_is_stable_per_calendar(
    calendar: CalendarHelper, push_receiver: PushReceiver
) -> None:
    first = _watch(calendar, push_receiver.url, channel_id="one")
    second = _watch(calendar, push_receiver.url, channel_id="two")
    assert first["resourceId"] == second["resourceId"]
    assert first["resourceUri"] == second["resourceUri"]


def test_deleted_calendar_stops_its_channels(
    calendar: CalendarHelper, emulator: EmulatorServer, push_receiver: PushReceiver
) -> None:
    _watch(calendar, push_receiver.url)
    push_receiver.wait_for(1)
    emulator.control.delete_calendar(ACCOUNT_EMAIL)
    emulator.control.create_calendar(ACCOUNT_EMAIL, "UTC", ACCOUNT_EMAIL)
    emulator.control.insert_event(
        ACCOUNT_EMAIL, timed("2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z", time_zone="UTC")
    )
    assert len(_quiet(emulator, push_receiver)) == 1
