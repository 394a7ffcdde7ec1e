"""Property: whatever sequence of edits Google sees, interleaved with syncs of any kind
(incremental, full, after a forced 410), the busy table ends equal to Google's freeBusy."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.sync_engine import sync_calendar

from .conftest import attach
from .test_sync_engine import assert_converged

ZONE = ZoneInfo("America/New_York")
_counter = itertools.count()

span = st.tuples(st.integers(0, 45), st.integers(0, 47), st.sampled_from([0, 15, 30, 60, 240]))
edit = st.one_of(
    st.tuples(
        st.just("timed"),
        span,
        st.sampled_from(["opaque", "transparent"]),
        st.sampled_from([None, "declined", "tentative", "accepted"]),
    ),
    st.tuples(st.just("all_day"), st.integers(0, 45), st.integers(1, 3)),
    st.tuples(
        st.just("series"),
        span,
        st.sampled_from(
            [
                "RRULE:FREQ=DAILY;COUNT=5",
                "RRULE:FREQ=WEEKLY;COUNT=6",
                "RRULE:FREQ=DAILY;INTERVAL=3;COUNT=8",
            ]
        ),
    ),
    st.tuples(st.just("move"), st.integers(0, 1000), span),
    st.tuples(st.just("delete"), st.integers(0, 1000)),
    st.tuples(st.just("cancel_instance"), st.integers(0, 1000)),
    st.tuples(st.just("sync"), st.sampled_from(["incremental", "full", "410"])),
)


def _times(day: int, slot: int, minutes: int) -> tuple[datetime, datetime]:
    base = datetime.now(ZONE).date() + timedelta(days=day)
    start = datetime(base.year, base.month, base.day, tzinfo=ZONE) + timedelta(minutes=30 * slot)
    return start, start + timedelta(minutes=minutes)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(edits=st.lists(edit, min_size=1, max_size=20))
def test_any_edit_sequence_converges(emulator, google_settings, edits) -> None:
    cal = attach(emulator, f"prop{next(_counter)}@example.com", time_zone="America/New_York")
    control, gid = emulator.control, cal.google_calendar_id
    singles: list[str] = []
    series: list[tuple[str, datetime]] = []
    sync_calendar(cal.calendar_id, force=True)
    for item in edits:
        kind = item[0]
        if kind == "timed":
            (day, slot, minutes), transparency, response = item[1], item[2], item[3]
            start, end = _times(day, slot, minutes)
            body = {
                "start": {"dateTime": start.isoformat()},
                "end": {"dateTime": end.isoformat()},
                "transparency": transparency,
            }
            if response:
                body["attendees"] = [{"email": gid, "self": True, "responseStatus": response}]
            singles.append(control.insert_event(gid, body)["id"])
        elif kind == "all_day":
            day = datetime.now(ZONE).date() + timedelta(days=item[1])
            body = {
                "start": {"date": day.isoformat()},
                "end": {"date": (day + timedelta(days=item[2])).isoformat()},
            }
            singles.append(control.insert_event(gid, body)["id"])
        elif kind == "series":
            (day, slot, minutes), rule = item[1], item[2]
            start, end = _times(day, slot, max(minutes, 15))
            body = {
                "start": {"dateTime": start.isoformat(), "timeZone": "America/New_York"},
                "end": {"dateTime": end.isoformat(), "timeZone": "America/New_York"},
                "recurrence": [rule],
            }
            series.append((control.insert_event(gid, body)["id"], start))
        elif kind == "move" and singles:
            start, end = _times(*item[2])
            control.patch_event(
                gid,
                singles[item[1] % len(singles)],
                {"start": {"dateTime": start.isoformat()}, "end": {"dateTime": end.isoformat()}},
            )
        elif kind == "delete" and singles:
            control.delete_event(gid, singles.pop(item[1] % len(singles)))
        elif kind == "cancel_instance" and series:
            # Google answers 410 to deleting an instance twice, so each is cancelled once.
            master, start = series.pop(item[1] % len(series))
            control.delete_event(gid, f"{master}_{start.astimezone(UTC):%Y%m%dT%H%M%SZ}")
        elif kind == "sync":
            if item[1] == "410":
                control.invalidate_sync_tokens(gid)
            assert (
                sync_calendar(cal.calendar_id, force=True, full=item[1] == "full").status == "done"
            )
    assert sync_calendar(cal.calendar_id, force=True).status == "done"
    assert_converged(emulator, cal)
