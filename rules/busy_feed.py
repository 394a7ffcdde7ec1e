"""Busy time as iCalendar: the VEVENTs of the ICS feed and of the CalDAV calendar, and the
VFREEBUSY answer. Pure: no I/O; the webhook layer reads the rows and sends the bytes.

What booking tools need (README "Connect a booking tool"): one flattened VEVENT per busy
source (a calendar's event block or a manual block), UTC DATE-TIME values with `Z`, no RRULE,
`TRANSP:OPAQUE`, a stable UID, `SUMMARY:Busy` and the source as `CATEGORIES` — never a title,
description, attendee or location. Cancelled or free events never reach the busy tables, so
they never reach these objects either.

Every byte of an object follows from the busy set (times, sources, the instant each block was
last written) and the freshness of the calendars, so a hash of the bytes is an ETag that
changes exactly when the busy set or the freshness changes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

from icalendar import Calendar, Event, FreeBusy

from rules.intervals import Interval, clip, merge

PRODID = "-//calsync//busy time//EN"
CALENDAR_NAME = "Busy (calsync)"
# How often a subscriber should fetch again (RFC 7986 REFRESH-INTERVAL, X-PUBLISHED-TTL).
REFRESH_INTERVAL = timedelta(minutes=5)
MANUAL_CATEGORY = "manual"


@dataclass(frozen=True, slots=True)
class BusySource:
    """One busy block as a feed shows it: a calendar's event block or a manual block."""

    name: str  # `<calendar id>-<event key>` or `manual-<block id>`; the UID is name@calsync
    start: datetime
    end: datetime
    category: str  # the calendar's Google id, or "manual"
    changed_at: datetime  # when the block was last written (DTSTAMP, LAST-MODIFIED)
    stale: bool = False  # its calendar's busy time may be out of date

    @property
    def uid(self) -> str:
        return f"{self.name}@calsync"

    @property
    def resource_name(self) -> str:
        """The CalDAV resource (file) name: the name, percent-encoded, plus `.ics`."""
        return quote(self.name, safe="") + ".ics"


def calendar_source_name(calendar_id: int, event_key: str) -> str:
    return f"{calendar_id}-{event_key}"


def manual_source_name(block_id: int) -> str:
    return f"manual-{block_id}"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """What a resource name points at: a calendar's block, or a manual block."""

    calendar_id: int | None
    event_key: str | None
    manual_block_id: int | None


def parse_resource_name(resource: str) -> SourceRef | None:
    """The source a resource name (`<name>.ics`, percent-encoded) names; None if it names
    none (a client may send any href)."""
    if not resource.endswith(".ics"):
        return None
    name = unquote(resource[: -len(".ics")])
    head, sep, rest = name.partition("-")
    if not sep or not rest or not head.isascii() or (not head.isdigit() and head != "manual"):
        return None
    if head == "manual":
        if not (rest.isascii() and rest.isdigit() and len(rest) <= 10):
            return None
        return SourceRef(None, None, int(rest))
    if len(head) > 10 or len(rest) > 1024:
        return None
    return SourceRef(int(head), rest, None)


@dataclass(frozen=True, slots=True)
class StaleCalendar:
    """A calendar whose busy time may be out of date, in the words a person reads."""

    google_calendar_id: str
    state: str  # rules.health state: failing, needs_reauth, lagging, syncing, ...


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _floor_second(moment: datetime) -> datetime:
    return _utc(moment).replace(microsecond=0)


def _ceil_second(moment: datetime) -> datetime:
    """iCalendar times have whole seconds: a busy end is rounded up, never cut short."""
    floored = _floor_second(moment)
    return floored if floored == _utc(moment) else floored + timedelta(seconds=1)


def busy_event(source: BusySource) -> Event:
    """One flattened VEVENT of a busy source (nothing but times, UID and the source)."""
    event = Event()
    event.add("uid", source.uid)
    event.add("dtstamp", _floor_second(source.changed_at))
    event.add("last-modified", _floor_second(source.changed_at))
    event.add("dtstart", _floor_second(source.start))
    event.add("dtend", _ceil_second(source.end))
    event.add("summary", "Busy")
    event.add("transp", "OPAQUE")
    event.add("status", "CONFIRMED")
    event.add("categories", [source.category])
    if source.stale:
        event.add("x-calsync-stale", "TRUE")
    return event


def _escape_text(text: str) -> str:
    """A TEXT value escaped as icalendar escapes it (RFC 5545 §3.3.11, same order)."""
    return (
        text.replace(r"\N", "\n")
        .replace("\\", "\\\\")
        .replace(";", r"\;")
        .replace(",", r"\,")
        .replace("\r\n", r"\n")
        .replace("\n", r"\n")
        .replace("\r", r"\n")
    )


def _fold(line: str) -> bytes:
    """A content line folded as icalendar folds it: a break before the character that would
    bring a piece to 75 octets, never just after a backslash or caret (icalendar #1501)."""
    encoded = line.encode()
    if len(encoded) < 75:
        return encoded + b"\r\n"
    pieces: list[str] = []
    current: list[str] = []
    octets = 0
    for char in line:
        width = len(char.encode())
        if current and octets + width >= 75:
            if len(current) > 1 and current[-1] in "\\^":
                carried = current.pop()
                pieces.append("".join(current))
                current = [carried]
                octets = len(carried.encode())
            else:
                pieces.append("".join(current))
                current = []
                octets = 0
        current.append(char)
        octets += width
    pieces.append("".join(current))
    return "\r\n ".join(pieces).encode() + b"\r\n"


def _ical_utc(moment: datetime) -> str:
    return (
        f"{moment.year:04}{moment.month:02}{moment.day:02}"
        f"T{moment.hour:02}{moment.minute:02}{moment.second:02}Z"
    )


def busy_event_ical(source: BusySource) -> bytes:
    """The bytes of `busy_event(source).to_ical()`, written directly.

    A feed holds hundreds of these and icalendar spends about 0.1 ms on each (one `add` and
    one content line object per property); this writes the same fixed shape in a few
    microseconds. `busy_event` (icalendar) stays the reference: a hypothesis test
    (tests/unit/test_busy_feed_ical.py) proves the two byte-identical for any source, so a
    change of shape goes into both. Property order is icalendar's canonical one."""
    stamp = _ical_utc(_floor_second(source.changed_at))
    lines = [
        b"BEGIN:VEVENT\r\nSUMMARY:Busy\r\nDTSTART:",
        _ical_utc(_floor_second(source.start)).encode(),
        b"\r\nDTEND:",
        _ical_utc(_ceil_second(source.end)).encode(),
        b"\r\nDTSTAMP:",
        stamp.encode(),
        b"\r\n",
        _fold("UID:" + _escape_text(source.uid)),
        _fold("CATEGORIES:" + _escape_text(source.category)),
        b"LAST-MODIFIED:",
        stamp.encode(),
        b"\r\nSTATUS:CONFIRMED\r\nTRANSP:OPAQUE\r\n",
        b"X-CALSYNC-STALE:TRUE\r\n" if source.stale else b"",
        b"END:VEVENT\r\n",
    ]
    return b"".join(lines)


def stale_description(stale: Sequence[StaleCalendar]) -> str:
    """X-WR-CALDESC: what this calendar is, and in words whether it can be trusted now."""
    text = "Busy time from calsync: every calendar of the host plus manual blocks."
    if not stale:
        return text + " All calendars are up to date."
    names = ", ".join(f"{c.google_calendar_id} ({c.state})" for c in stale)
    return (
        f"{text} WARNING: not up to date: {names}. Busy time from "
        f"{'this calendar' if len(stale) == 1 else 'these calendars'} may be missing or wrong "
        "until calsync syncs again."
    )


def _calendar_shell(stale: Sequence[StaleCalendar]) -> Calendar:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", CALENDAR_NAME)
    calendar.add("x-wr-caldesc", stale_description(stale))
    calendar.add("x-wr-timezone", "UTC")
    calendar.add("x-published-ttl", "PT5M")
    calendar.add("refresh-interval", REFRESH_INTERVAL, parameters={"VALUE": "DURATION"})
    for calendar_state in stale:
        calendar.add(
            "x-calsync-stale", f"{calendar_state.google_calendar_id} {calendar_state.state}"
        )
    return calendar


def _ordered(sources: Iterable[BusySource]) -> list[BusySource]:
    return sorted(sources, key=lambda s: (s.start, s.end, s.name))


_CALENDAR_END = b"END:VCALENDAR\r\n"


def _with_events(calendar: Calendar, events: Iterable[bytes]) -> bytes:
    """`calendar` (icalendar, properties only) with VEVENT bytes where icalendar puts its
    subcomponents: after the properties, before END:VCALENDAR."""
    shell = calendar.to_ical()
    assert shell.endswith(_CALENDAR_END)
    return shell[: -len(_CALENDAR_END)] + b"".join(events) + _CALENDAR_END


def _resource_shell() -> Calendar:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    return calendar


# The same for every resource: serialized once by icalendar.
_RESOURCE_HEAD = _resource_shell().to_ical()[: -len(_CALENDAR_END)]


def busy_calendar(sources: Iterable[BusySource], stale: Sequence[StaleCalendar]) -> bytes:
    """The ICS feed: one VEVENT per source, ordered by time (the same set gives the same
    bytes). icalendar writes the calendar's own properties; the VEVENTs are
    `busy_event_ical`'s, byte-identical to icalendar's."""
    return _with_events(_calendar_shell(stale), map(busy_event_ical, _ordered(sources)))


def single_event_calendar(source: BusySource) -> bytes:
    """One CalDAV resource: a VCALENDAR holding the one VEVENT of `source`."""
    return _RESOURCE_HEAD + busy_event_ical(source) + _CALENDAR_END


def busy_intervals(sources: Iterable[BusySource], start: datetime, end: datetime) -> list[Interval]:
    """The merged busy time of `sources` within [start, end)."""
    return clip(merge(Interval(s.start, s.end, (s.name,)) for s in sources), start, end)


def freebusy_calendar(
    sources: Iterable[BusySource],
    start: datetime,
    end: datetime,
    *,
    stamp: datetime,
    uid: str,
    stale: Sequence[StaleCalendar] = (),
    with_feed_properties: bool = True,
) -> bytes:
    """One VFREEBUSY over [start, end): the merged busy periods (FBTYPE=BUSY)."""
    calendar = _calendar_shell(stale) if with_feed_properties else Calendar()
    if not with_feed_properties:
        calendar.add("prodid", PRODID)
        calendar.add("version", "2.0")
    freebusy = FreeBusy()
    freebusy.add("uid", uid)
    freebusy.add("dtstamp", _floor_second(stamp))
    freebusy.add("dtstart", _floor_second(start))
    freebusy.add("dtend", _ceil_second(end))
    periods = [
        (_floor_second(i.start), _ceil_second(i.end)) for i in busy_intervals(sources, start, end)
    ]
    if periods:
        freebusy.add("freebusy", periods, parameters={"FBTYPE": "BUSY"})
    calendar.add_component(freebusy)
    return calendar.to_ical()


def body_etag(body: bytes) -> str:
    """A strong ETag (with its quotes) of a representation."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def set_tag(sources: Iterable[BusySource], stale: Sequence[StaleCalendar]) -> str:
    """A tag of a whole busy set and its freshness (CalDAV getctag and sync-token): changes
    exactly when a source is added, removed, moved or rewritten, or a calendar's freshness
    changes."""
    digest = hashlib.sha256()
    for source in sorted(sources, key=lambda s: s.name):
        digest.update(
            "\x1f".join(
                (
                    source.name,
                    _utc(source.start).isoformat(),
                    _utc(source.end).isoformat(),
                    source.category,
                    _utc(source.changed_at).isoformat(),
                    "1" if source.stale else "0",
                )
            ).encode()
            + b"\x1e"
        )
    for calendar_state in stale:
        digest.update(
            f"stale\x1f{calendar_state.google_calendar_id}\x1f{calendar_state.state}".encode()
        )
    return digest.hexdigest()[:32]


def connection_values(public_url: str, host_id: int, feed_token: str) -> dict[str, str | int]:
    """What a host pastes into a booking tool, as the feed-token answers show it (once)."""
    base = public_url.rstrip("/")
    return {
        "id": host_id,
        "feedToken": feed_token,
        "statusPageUrl": f"{base}/status/{host_id}?token={quote(feed_token, safe='')}",
        "caldavUrl": f"{base}/dav/",
        "username": str(host_id),
        "password": feed_token,
        "icsUrl": f"{base}/feeds/{host_id}/{quote(feed_token, safe='')}.ics",
    }
