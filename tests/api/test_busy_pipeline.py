"""The API over a calendar really synced from the emulator: busy reads equal the emulator's
reference freeBusy, manual blocks join at once, explain gives the stored reasons, and a
policy change re-decides without a single request to Google."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.pipeline import conftest as pipeline
from webhook import create_app
from webhook.api_time import parse_rfc3339
from worker.sync_engine import sync_calendar

from .conftest import ADMIN, z

# The emulator fixtures of the pipeline tests (assigned, not imported, to reuse them here).
emulator_server = pipeline.emulator_server
emulator = pipeline.emulator
google_settings = pipeline.google_settings

BERLIN = ZoneInfo("Europe/Berlin")


def _at(days: int, hour: int) -> str:
    day = datetime.now(BERLIN).date() + timedelta(days=days)
    return datetime(day.year, day.month, day.day, hour, tzinfo=BERLIN).isoformat()


def _timed(days: int, start: int, end: int, **fields) -> dict:
    return {"start": {"dateTime": _at(days, start)}, "end": {"dateTime": _at(days, end)}, **fields}


@pytest.fixture
def synced(google_settings, emulator):
    cal = pipeline.attach(emulator, "reader@example.com")
    control, gid = emulator.control, cal.google_calendar_id
    me = {"email": gid, "self": True}
    control.insert_event(gid, _timed(1, 10, 11, summary="busy"))
    control.insert_event(gid, _timed(1, 12, 13, transparency="transparent", summary="free"))
    declined = control.insert_event(
        gid, _timed(2, 15, 16, attendees=[{**me, "responseStatus": "declined"}])
    )
    control.insert_event(
        gid,
        {
            "start": {"date": (datetime.now(BERLIN).date() + timedelta(days=4)).isoformat()},
            "end": {"date": (datetime.now(BERLIN).date() + timedelta(days=5)).isoformat()},
        },
    )
    control.insert_event(
        gid, {**_timed(1, 9, 10), "recurrence": ["RRULE:FREQ=DAILY;COUNT=20"], "summary": "standup"}
    )
    assert sync_calendar(cal.calendar_id, force=True).status == "done"
    return cal, declined["id"]


def _window() -> tuple[datetime, datetime]:
    start = datetime.now(UTC).replace(microsecond=0)
    return start, start + timedelta(days=30)


def _api_busy(client, host_id: int) -> list[tuple[datetime, datetime]]:
    start, end = _window()
    answer = client.get(
        f"/v1/hosts/{host_id}/busy",
        query_string={"timeMin": z(start), "timeMax": z(end)},
        headers=ADMIN,
    )
    assert answer.status_code == 200, answer.get_json()
    return [
        (parse_rfc3339(b["start"], "start"), parse_rfc3339(b["end"], "end"))
        for b in answer.get_json()["busy"]
    ]


def test_busy_matches_the_emulators_free_busy(google_settings, emulator, synced) -> None:
    cal, _declined = synced
    client = create_app(google_settings).test_client()
    reference = emulator.control.reference_busy(cal.google_calendar_id, *_window())
    assert len(reference) > 10
    assert _api_busy(client, cal.host_id) == [tuple(pair) for pair in reference]

    # The Google-shaped endpoint answers the same.
    start, end = _window()
    answer = client.post(
        "/v1/freeBusy",
        json={"timeMin": z(start), "timeMax": z(end), "items": [{"id": cal.google_calendar_id}]},
        headers=ADMIN,
    ).get_json()
    entry = answer["calendars"][cal.google_calendar_id]
    assert [
        (parse_rfc3339(b["start"], "s"), parse_rfc3339(b["end"], "e")) for b in entry["busy"]
    ] == [tuple(pair) for pair in reference]
    assert entry["syncedAt"] is not None

    # A manual block joins the busy read at once, with no sync (day 25: after the daily
    # series ends, so no event can merge with it whatever the time of day).
    block_start = start + timedelta(days=25, hours=3)
    client.post(
        f"/v1/hosts/{cal.host_id}/blocks",
        json={"start": z(block_start), "end": z(block_start + timedelta(minutes=7))},
        headers=ADMIN,
    )
    assert (block_start, block_start + timedelta(minutes=7)) in _api_busy(client, cal.host_id)


def test_policy_change_flips_declined_to_busy_without_google(
    google_settings, emulator, synced
) -> None:
    cal, declined_id = synced
    client = create_app(google_settings).test_client()
    declined_start = parse_rfc3339(_at(2, 15), "x")
    declined = (declined_start, declined_start + timedelta(hours=1))
    assert declined not in _api_busy(client, cal.host_id)
    explained = client.get(
        f"/v1/hosts/{cal.host_id}/explain",
        query_string={"at": z(declined_start + timedelta(minutes=30))},
        headers=ADMIN,
    ).get_json()
    assert [(i["eventId"], i["reason"]) for i in explained["items"]] == [(declined_id, "declined")]
    assert explained["busy"] is False

    requests_before = len(emulator.control.requests())
    answer = client.patch(
        f"/v1/hosts/{cal.host_id}", json={"busyPolicy": {"declinedBusy": True}}, headers=ADMIN
    )
    assert answer.status_code == 200
    assert answer.get_json()["redecided"]["blocksAdded"] == 1
    assert declined in _api_busy(client, cal.host_id)
    explained = client.get(
        f"/v1/hosts/{cal.host_id}/explain",
        query_string={"at": z(declined_start + timedelta(minutes=30))},
        headers=ADMIN,
    ).get_json()
    assert explained["busy"] is True and explained["items"][0]["reason"] == "busy"
    assert len(emulator.control.requests()) == requests_before  # Google was not asked

    # A later sync applies the same policy, so it keeps the block.
    assert sync_calendar(cal.calendar_id, force=True).status == "done"
    assert declined in _api_busy(client, cal.host_id)
