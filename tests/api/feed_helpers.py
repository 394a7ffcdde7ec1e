"""Shared by the ICS feed and CalDAV tests: a realistic busy set on seeded host A, and busy
time as `/v1/.../busy` answers it and as a parsed iCalendar answer gives it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import recurring_ical_events
from icalendar import Calendar
from sqlalchemy.orm import Session

from models import BusyBlock, Host, SyncState
from tests.factories import make_account, make_calendar, make_channel

from .conftest import SeededHost, z

Span = tuple[datetime, datetime]


def add_realistic_busy_set(session: Session, client, host: SeededHost) -> None:
    """Beside the seeded busy event, declined event and 30-minute manual block: a second
    calendar (synced) with an all-day block in Berlin across the DST change, a block that
    overlaps one of the first calendar, back-to-back blocks, a block reaching past the feed's
    end; and a 90-minute manual block made through the API."""
    owner = session.get(Host, host.id)
    assert owner is not None
    account = make_account(session, owner)
    second = make_calendar(session, owner, account, google_calendar_id="work@example.com")
    state = session.get(SyncState, second.id)
    assert state is not None
    now = datetime.now(UTC).replace(microsecond=0)
    state.last_success_at = now
    state.sync_token = "token-2"
    make_channel(session, second, expiration=now + timedelta(days=5))
    base = (now + timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
    blocks = [
        # all-day (Berlin) 2025-10-26-like day: 25 hours when DST ends; stored in UTC
        ("allday-1", base.replace(hour=22) + timedelta(days=1), base + timedelta(days=2, hours=23)),
        ("overlap-1", base + timedelta(minutes=30), base + timedelta(hours=2)),
        ("back-1", base + timedelta(days=5), base + timedelta(days=5, hours=1)),
        ("back-2", base + timedelta(days=5, hours=1), base + timedelta(days=5, hours=2)),
        ("far-1", now + timedelta(days=89, hours=22), now + timedelta(days=91)),
        ("recurring_20250101T100000Z", base + timedelta(days=7), base + timedelta(days=7, hours=1)),
    ]
    for key, start, end in blocks:
        session.add(BusyBlock(calendar_id=second.id, event_key=key, start=start, end=end))
    # One on the seeded calendar overlapping the second calendar's block.
    session.add(
        BusyBlock(
            calendar_id=host.calendar_id,
            event_key="standup-1",
            start=base + timedelta(hours=1),
            end=base + timedelta(hours=3),
        )
    )
    session.commit()
    manual_start = base + timedelta(days=10, hours=5)
    created = client.post(
        f"/v1/hosts/{host.id}/blocks",
        json={"start": z(manual_start), "end": z(manual_start + timedelta(minutes=90))},
        headers=host.headers,
    )
    assert created.status_code == 201, created.get_json()


def api_busy(client, host: SeededHost, start: datetime, end: datetime) -> list[Span]:
    answer = client.get(
        f"/v1/hosts/{host.id}/busy",
        query_string={"timeMin": z(start), "timeMax": z(end)},
        headers=host.headers,
    )
    assert answer.status_code == 200, answer.get_json()
    return [(parse_z(b["start"]), parse_z(b["end"])) for b in answer.get_json()["busy"]]


def parse_z(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def merged(spans: list[Span], start: datetime, end: datetime) -> list[Span]:
    """The union of `spans` clipped to [start, end), touching spans joined (as /busy does)."""
    out: list[list[datetime]] = []
    for s, e in sorted((max(s, start), min(e, end)) for s, e in spans):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def ical_busy(calendars: list[Calendar], start: datetime, end: datetime) -> list[Span]:
    """Busy time of parsed VCALENDARs as a subscriber computes it: every VEVENT (recurrences
    expanded) that is not TRANSPARENT, between start and end."""
    spans: list[Span] = []
    for calendar in calendars:
        for event in recurring_ical_events.of(calendar).between(start, end):
            if str(event.get("TRANSP", "OPAQUE")).upper() == "TRANSPARENT":
                continue
            spans.append((event.decoded("DTSTART"), event.decoded("DTEND")))
    return merged(spans, start, end)
