"""Busy rules: one Google event JSON → the facts calsync stores → busy, or the reason it is not.

Pure: no I/O, no database, no Google calls. `parse_event` turns whatever Google (or anything
else) sent into `EventFacts` without ever raising on odd content, so a single bad event can
never stall a calendar's sync; `decide` applies a host's `BusyPolicy` to stored facts, so a
policy change can re-decide every event without asking Google again.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime, tzinfo
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rules.rfc3339 import Rfc3339Error, parse_rfc3339


@dataclass(frozen=True)
class BusyPolicy:
    """Per-host choices for the cases where hosts disagree. Defaults follow DESIGN.md."""

    declined_busy: bool = False  # declined invitations block time?
    tentative_busy: bool = True  # tentative AND needsAction (unanswered) invitations
    out_of_office_busy: bool = True
    focus_time_busy: bool = True
    all_day_busy: bool = True

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> BusyPolicy:
        """Build from the API's camelCase JSON; missing keys keep their default.

        Strict on purpose: a typo such as `declineBusy` must not silently leave the default.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError("busy policy must be a JSON object")
        values: dict[str, bool] = {}
        for key, value in data.items():
            attribute = _POLICY_KEYS.get(key)
            if attribute is None:
                known = ", ".join(_POLICY_KEYS)
                raise ValueError(f"unknown busy policy key {key!r} (known keys: {known})")
            if not isinstance(value, bool):  # rejects 0/1 and "true" as well
                raise ValueError(f"busy policy key {key!r} must be true or false")
            values[attribute] = value
        return cls(**values)

    def to_json(self) -> dict[str, bool]:
        by_attribute = asdict(self)
        return {key: by_attribute[attribute] for key, attribute in _POLICY_KEYS.items()}


def _camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


# camelCase JSON key -> attribute name, in field order.
_POLICY_KEYS: dict[str, str] = {_camel_case(f.name): f.name for f in fields(BusyPolicy)}


class Reason(StrEnum):
    """The decision stored per event: `busy`, or why the event does not block time."""

    BUSY = "busy"
    CANCELLED = "cancelled"
    FREE = "free"
    DECLINED = "declined"
    TENTATIVE = "tentative"
    NEEDS_ACTION = "needs_action"
    WORKING_LOCATION = "working_location"
    BIRTHDAY = "birthday"
    OUT_OF_OFFICE = "out_of_office"
    FOCUS_TIME = "focus_time"
    ALL_DAY = "all_day"
    ZERO_LENGTH = "zero_length"
    MALFORMED = "malformed"


# What `explain` shows a host for each decision.
EXPLANATIONS: dict[Reason, str] = {
    Reason.BUSY: "Blocks bookings: you are busy at this time.",
    Reason.CANCELLED: "Cancelled or deleted in Google Calendar, so it does not block bookings.",
    Reason.FREE: (
        "Marked as Free in Google Calendar (Show as: Free), so it does not block bookings."
    ),
    Reason.DECLINED: (
        "You declined this invitation, so it does not block bookings "
        "(your busy settings can change this)."
    ),
    Reason.TENTATIVE: (
        "You answered Maybe to this invitation, and your busy settings let tentative "
        "invitations stay bookable."
    ),
    Reason.NEEDS_ACTION: (
        "You have not answered this invitation yet, and your busy settings let unanswered "
        "invitations stay bookable."
    ),
    Reason.WORKING_LOCATION: (
        "A working-location entry (where you work that day), which never blocks bookings."
    ),
    Reason.BIRTHDAY: "A birthday entry, which never blocks bookings.",
    Reason.OUT_OF_OFFICE: (
        "An Out of office event, and your busy settings let out-of-office time stay bookable."
    ),
    Reason.FOCUS_TIME: "A Focus time event, and your busy settings let focus time stay bookable.",
    Reason.ALL_DAY: "An all-day event, and your busy settings let all-day events stay bookable.",
    Reason.ZERO_LENGTH: "It ends when it starts (or earlier), so there is no time to block.",
    Reason.MALFORMED: (
        "Google sent this event without a usable start or end time, so calsync cannot place "
        "it and it does not block bookings."
    ),
}


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What calsync stores per event instance; enough to re-decide without Google."""

    google_event_id: str
    status: str  # confirmed | tentative | cancelled
    start: datetime | None  # UTC-aware; None for tombstones without times or unusable times
    end: datetime | None
    all_day: bool
    transparency: str  # opaque | transparent
    event_type: str  # default | outOfOffice | focusTime | workingLocation | birthday | fromGmail
    response_status: str | None  # the host's own attendee entry (self: true), else None
    summary: str | None
    updated: datetime | None  # Google's `updated`, UTC
    recurring_event_id: str | None


def parse_event(event: Mapping[str, Any], calendar_time_zone: str) -> EventFacts:
    """Extract the facts of one `events.list` item.

    All-day dates become midnights in the *calendar's* time zone (Google gives all-day events
    no zone of their own). Never raises because of the event's content, only when the event
    has no usable `id` (nothing could be keyed by it) or the calendar zone is unknown.
    """
    calendar_zone = _zone(calendar_time_zone) if isinstance(calendar_time_zone, str) else None
    if calendar_zone is None:
        raise ValueError(f"unknown calendar time zone {calendar_time_zone!r}")
    event_id = event.get("id") if isinstance(event, Mapping) else None
    if not isinstance(event_id, str) or not event_id:
        raise ValueError("event has no id")

    start, end, all_day = _parse_times(event.get("start"), event.get("end"), calendar_zone)
    # A full sync keeps the facts of every event until it commits: values that repeat across
    # events (enumerations, the series id of recurring instances) are shared, not copied.
    return EventFacts(
        google_event_id=event_id,
        status=_shared_text(_string(event.get("status")) or "confirmed"),
        start=start,
        end=end,
        all_day=all_day,
        transparency=_shared_text(_string(event.get("transparency")) or "opaque"),
        event_type=_shared_text(_string(event.get("eventType")) or "default"),
        response_status=_shared(_own_response_status(event.get("attendees"))),
        summary=_string(event.get("summary")),
        updated=_parse_timestamp(event.get("updated"), UTC),
        recurring_event_id=_shared(_string(event.get("recurringEventId"))),
    )


def decide(facts: EventFacts, policy: BusyPolicy = BusyPolicy()) -> Reason:
    """Busy or the first reason it is not; the order of checks is DESIGN.md's contract."""
    if facts.status == "cancelled":
        return Reason.CANCELLED
    if facts.start is None or facts.end is None:
        return Reason.MALFORMED
    if facts.end <= facts.start:
        return Reason.ZERO_LENGTH
    if facts.event_type == "workingLocation":
        return Reason.WORKING_LOCATION
    if facts.event_type == "birthday":
        return Reason.BIRTHDAY
    if facts.transparency == "transparent":
        return Reason.FREE
    if facts.response_status == "declined" and not policy.declined_busy:
        return Reason.DECLINED
    if facts.response_status == "tentative" and not policy.tentative_busy:
        return Reason.TENTATIVE
    if facts.response_status == "needsAction" and not policy.tentative_busy:
        return Reason.NEEDS_ACTION
    if facts.event_type == "outOfOffice" and not policy.out_of_office_busy:
        return Reason.OUT_OF_OFFICE
    if facts.event_type == "focusTime" and not policy.focus_time_busy:
        return Reason.FOCUS_TIME
    if facts.all_day and not policy.all_day_busy:
        return Reason.ALL_DAY
    # Everything else blocks, including an organizer-level `status: tentative` and event types
    # calsync does not know: offering a slot wrongly is worse than hiding one.
    return Reason.BUSY


# --- parsing helpers -------------------------------------------------------------------------

# All-day dates; [0-9] on purpose: `\d` would accept other scripts.
_DATE = re.compile(r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})")


def _parse_times(
    start_field: Any, end_field: Any, calendar_zone: ZoneInfo
) -> tuple[datetime | None, datetime | None, bool]:
    """(start, end, all_day); both times None when either side is missing or unusable."""
    start_map = start_field if isinstance(start_field, Mapping) else {}
    end_map = end_field if isinstance(end_field, Mapping) else {}
    # Google sets exactly one of date/dateTime; dateTime wins if a producer sent both.
    all_day = "dateTime" not in start_map and "date" in start_map
    if all_day:
        start = _parse_all_day(start_map.get("date"), calendar_zone)
        end = _parse_all_day(end_map.get("date"), calendar_zone)  # a dateTime end: malformed
    else:
        start = _parse_event_time(start_map, calendar_zone)
        end = _parse_event_time(end_map, calendar_zone)
    if start is None or end is None:
        return None, None, all_day
    return start, end, all_day


def _parse_event_time(time_field: Mapping[str, Any], calendar_zone: ZoneInfo) -> datetime | None:
    # A zone-less dateTime is read in the event's own timeZone, as Google does on input.
    event_zone = _string(time_field.get("timeZone"))
    zone = (_zone(event_zone) if event_zone else None) or calendar_zone
    return _parse_timestamp(time_field.get("dateTime"), zone)


def _parse_timestamp(value: Any, zone_if_naive: tzinfo) -> datetime | None:
    # The offset is optional here only because Google accepts a zone-less time next to an
    # explicit `timeZone`; a leap second or anything else unusable makes the time None.
    if not isinstance(value, str):
        return None
    try:
        return parse_rfc3339(value, zone_if_naive=zone_if_naive)
    except Rfc3339Error:
        return None


def _parse_all_day(value: Any, calendar_zone: ZoneInfo) -> datetime | None:
    if not isinstance(value, str):
        return None
    match = _DATE.fullmatch(value)
    if match is None:
        return None
    try:
        day = date(int(match["year"]), int(match["month"]), int(match["day"]))
        # Midnight in the calendar's zone. If midnight falls in a DST gap (e.g. Chile), fold=0
        # resolves it to the transition instant, which is when that day really starts.
        midnight = datetime(day.year, day.month, day.day, tzinfo=calendar_zone)
        return midnight.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _own_response_status(attendees: Any) -> str | None:
    """responseStatus of the attendee entry Google marks `self: true` (the calendar's owner)."""
    if not isinstance(attendees, list):
        return None
    for attendee in attendees:
        if isinstance(attendee, Mapping) and attendee.get("self") is True:
            return _string(attendee.get("responseStatus"))
    return None


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _shared(value: str | None) -> str | None:
    return sys.intern(value) if type(value) is str else value  # intern refuses subclasses


def _shared_text(value: str) -> str:
    return sys.intern(value) if type(value) is str else value


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown, malformed or a directory
        return None
