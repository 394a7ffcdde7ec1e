"""Issue 15, end to end: the clients Cal.com runs (tsdav over CalDAV, ical.js on the ICS feed)
and the Python `caldav` library read the same busy time as `/v1/.../busy` after a sequence of
real Google changes made at the emulator and applied by the real sync engine (timed, Free,
declined, all-day across a DST change, a weekly series with a moved and a cancelled instance,
a delete) plus a 90-minute manual block made through the API.

Outside CI the Node part skips when `node` or `tests/clients/node_modules` is missing, exactly
as tests/api/test_tsdav_client.py does; in CI that is a failure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from core.settings import Settings
from tests.api.conftest import ADMIN, z
from tests.api.feed_helpers import Span, ical_busy, merged, parse_z
from tests.api.test_tsdav_client import run_script, spans
from tests.support.http_server import serving
from worker.sync_engine import sync_calendar

from .conftest import attach

ZONE_NAME = "Europe/Berlin"
ZONE = ZoneInfo(ZONE_NAME)


@pytest.fixture
def live_server(google_settings: Settings) -> Iterator[str]:
    """The app (on the emulator's settings) on a real werkzeug server."""
    from webhook import create_app

    with serving(create_app(google_settings)) as url:
        yield url


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZONE)


def timed(start: datetime, end: datetime, **fields) -> dict:
    return {
        "start": {"dateTime": start.isoformat(), "timeZone": ZONE_NAME},
        "end": {"dateTime": end.isoformat(), "timeZone": ZONE_NAME},
        **fields,
    }


def all_day_span(today: date) -> tuple[date, date]:
    """Three days (DTEND exclusive) across the next DST change if one falls within the next
    ~80 days (inside the feed's 90-day window); otherwise (e.g. early December, when the next
    change in Berlin is late March) just a three-day all-day event 20 days out."""
    for offset in range(3, 80):
        day = today + timedelta(days=offset)
        if local(day, 0).utcoffset() != local(day + timedelta(days=1), 0).utcoffset():
            return day - timedelta(days=1), day + timedelta(days=2)
    first = today + timedelta(days=20)
    return first, first + timedelta(days=3)


def overlaps(busy: list[Span], start: datetime, end: datetime) -> bool:
    return any(s < end and start < e for s, e in busy)


def covered(busy: list[Span], start: datetime, end: datetime) -> bool:
    return any(s <= start and end <= e for s, e in busy)


def api_busy(client, host_id: int, start: datetime, end: datetime) -> list[Span]:
    answer = client.get(
        f"/v1/hosts/{host_id}/busy",
        query_string={"timeMin": z(start), "timeMax": z(end)},
        headers=ADMIN,
    )
    assert answer.status_code == 200, answer.get_json()
    return [(parse_z(b["start"]), parse_z(b["end"])) for b in answer.get_json()["busy"]]


def test_real_clients_read_busy_after_a_sequence_of_google_changes(
    emulator, google_settings: Settings, live_server: str
) -> None:
    control = emulator.control
    cal = attach(emulator, "seq@example.com", ZONE_NAME)
    gid = cal.google_calendar_id
    me = {"email": gid, "self": True}
    today = datetime.now(ZONE).date()
    d = lambda n: today + timedelta(days=n)  # noqa: E731

    # Before the first (full) sync: an event that is deleted later.
    doomed = control.insert_event(gid, timed(local(d(6), 14), local(d(6), 15), summary="doomed"))
    first = sync_calendar(cal.calendar_id, force=True, full=True)
    assert first.status == "done", first

    # The Google changes.
    busy_start, busy_end = local(d(2), 10), local(d(2), 11)
    control.insert_event(gid, timed(busy_start, busy_end, summary="timed"))
    free_start, free_end = local(d(2), 13), local(d(2), 14)
    control.insert_event(gid, timed(free_start, free_end, transparency="transparent"))
    declined_start, declined_end = local(d(2), 15), local(d(2), 16)
    control.insert_event(
        gid,
        timed(declined_start, declined_end, attendees=[{**me, "responseStatus": "declined"}]),
    )
    first_day, last_day = all_day_span(today)
    control.insert_event(
        gid,
        {
            "summary": "away",
            "start": {"date": first_day.isoformat()},
            "end": {"date": last_day.isoformat()},
        },
    )
    series_start = local(d(3), 9)
    master = control.insert_event(
        gid,
        {
            **timed(series_start, series_start + timedelta(minutes=30), summary="weekly"),
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=6"],
        },
    )["id"]
    moved_from = series_start + timedelta(weeks=1)
    moved_start = moved_from + timedelta(hours=3)
    moved_end = moved_start + timedelta(minutes=45)
    control.patch_event(
        gid, f"{master}_{moved_from.astimezone(UTC):%Y%m%dT%H%M%SZ}", timed(moved_start, moved_end)
    )
    cancelled = series_start + timedelta(weeks=2)
    control.delete_event(gid, f"{master}_{cancelled.astimezone(UTC):%Y%m%dT%H%M%SZ}")
    control.delete_event(gid, doomed["id"])
    brief = control.insert_event(gid, timed(local(d(4), 11), local(d(4), 12), summary="brief"))
    control.delete_event(gid, brief["id"])

    second = sync_calendar(cal.calendar_id, force=True)
    assert second.status == "done", second
    assert [run.kind for run in second.runs] == ["incremental"], second.runs

    # A 90-minute manual block through the API.
    from webhook import create_app

    client = create_app(google_settings).test_client()
    manual_start = local(d(5), 16).astimezone(UTC)
    manual_end = manual_start + timedelta(minutes=90)
    made = client.post(
        f"/v1/hosts/{cal.host_id}/blocks",
        json={"start": z(manual_start), "end": z(manual_end), "note": "dentist"},
        headers=ADMIN,
    )
    assert made.status_code == 201, made.get_json()

    # A window covering all of it, inside the feed's window (now - 1 day .. now + 90 days).
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(hours=23), now + timedelta(days=89)
    expected = api_busy(client, cal.host_id, start, end)

    # /busy itself: the synced calendar equals Google's own freeBusy, plus the manual block.
    google = [tuple(p) for p in control.reference_busy(gid, start, end)]
    assert expected == merged([*google, (manual_start, manual_end)], start, end)
    assert covered(expected, busy_start, busy_end)
    assert not overlaps(expected, free_start, free_end)
    assert not overlaps(expected, declined_start, declined_end)
    assert covered(expected, local(first_day, 0), local(last_day, 0))
    assert covered(expected, moved_start, moved_end)
    assert not overlaps(expected, moved_from, moved_from + timedelta(minutes=30))
    assert not overlaps(expected, cancelled, cancelled + timedelta(minutes=30))
    assert covered(
        expected, series_start + timedelta(weeks=3), series_start + timedelta(weeks=3, minutes=30)
    )
    assert not overlaps(expected, local(d(6), 14), local(d(6), 15))
    assert not overlaps(expected, local(d(4), 11), local(d(4), 12))
    assert covered(expected, manual_start, manual_end)

    values = client.post(f"/v1/hosts/{cal.host_id}/feed-token", headers=ADMIN)
    assert values.status_code == 200, values.get_json()
    creds = values.get_json()

    # The Python caldav library (no Node needed).
    import caldav

    caldav_url = live_server + urlsplit(creds["caldavUrl"]).path
    dav = caldav.DAVClient(url=caldav_url, username=creds["username"], password=creds["password"])
    [calendar] = dav.principal().calendars()
    found = calendar.search(start=start, end=end, event=True, expand=True)
    assert ical_busy([Calendar.from_ical(o.data) for o in found], start, end) == expected

    # tsdav as Cal.com's CalDAV app (skips/fails like test_tsdav_client when Node is missing).
    answer = run_script(
        "busy_via_tsdav.mjs", caldav_url, creds["username"], creds["password"], z(start), z(end)
    )
    assert merged(spans(answer), start, end) == expected
    # ical.js on the ICS feed, as Cal.com's ICS-feed app.
    feed_url = live_server + urlsplit(creds["icsUrl"]).path
    answer = run_script("busy_via_icaljs.mjs", feed_url, z(start), z(end))
    assert merged(spans(answer), start, end) == expected


def test_the_all_day_span_crosses_the_next_dst_change_when_there_is_one() -> None:
    # Spring forward in Berlin on 2027-03-28: three days, the middle one 23 hours long.
    assert all_day_span(date(2027, 3, 10)) == (date(2027, 3, 27), date(2027, 3, 30))
    span = local(date(2027, 3, 30), 0).astimezone(UTC) - local(date(2027, 3, 27), 0)
    assert span == timedelta(hours=71)
    # No change within ~80 days (early December): a plain three-day event 20 days out.
    assert all_day_span(date(2026, 12, 4)) == (date(2026, 12, 24), date(2026, 12, 27))
