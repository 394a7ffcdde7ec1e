"""In-memory calendars and events with a per-calendar change sequence.

Stored event dicts are never mutated after they are stored (a change stores a new dict),
so listings and page snapshots can hold references without copying. Keys starting with
"_" are internal and stripped before anything is sent.
"""

from __future__ import annotations

import bisect
import random
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from emulator import errors
from emulator.clock import Clock
from emulator.faults import Faults
from emulator.freebusy import busy_intervals
from emulator.recurrence import expand_series
from emulator.sync_tokens import (
    PageCache,
    Snapshot,
    SyncToken,
    decode_sync_token,
    encode_sync_token,
)
from emulator.timefmt import parse_rfc3339

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BASE32HEX = "0123456789abcdefghijklmnopqrstuv"
_CLIENT_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
EVENT_TYPES = {"default", "outOfOffice", "focusTime", "workingLocation", "birthday", "fromGmail"}
# Fields a client may write (all exist in the discovery Event schema); others are ignored.
WRITABLE_FIELDS = {
    "anyoneCanAddSelf",
    "attachments",
    "attendees",
    "birthdayProperties",
    "colorId",
    "conferenceData",
    "description",
    "end",
    "endTimeUnspecified",
    "eventType",
    "extendedProperties",
    "focusTimeProperties",
    "gadget",
    "guestsCanInviteOthers",
    "guestsCanModify",
    "guestsCanSeeOtherGuests",
    "location",
    "outOfOfficeProperties",
    "recurrence",
    "reminders",
    "sequence",
    "source",
    "start",
    "status",
    "summary",
    "transparency",
    "visibility",
    "workingLocationProperties",
}
# Forbidden together with syncToken (Google answers 400).
SYNC_FORBIDDEN = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)


def format_updated(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as Google writes `updated` and `created`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def format_z(moment: datetime) -> str:
    """RFC 3339 UTC with "Z", milliseconds only when non-zero (freeBusy style)."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return format_updated(moment)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def public(event: dict[str, Any]) -> dict[str, Any]:
    """The event as sent: without internal keys."""
    if any(key.startswith("_") for key in event):
        return {k: v for k, v in event.items() if not k.startswith("_")}
    return event


def is_master(event: dict[str, Any]) -> bool:
    return bool(event.get("recurrence"))


def cancelled_stub(event: dict[str, Any]) -> dict[str, Any]:
    """What incremental sync sends for a deleted event or instance."""
    stub = {
        "kind": "calendar#event",
        "etag": event.get("etag", '"0"'),
        "id": event["id"],
        "status": "cancelled",
    }
    for key in ("recurringEventId", "originalStartTime"):
        if key in event:
            stub[key] = event[key]
    return stub


def parse_api_time(text: str, location: str) -> datetime:
    """timeMin/timeMax style parameter: RFC 3339 with an offset, else 400."""
    try:
        moment = parse_rfc3339(text)
    except (ValueError, TypeError) as exc:
        raise errors.invalid(f"Bad Request: {location}", location=location) from exc
    if moment.tzinfo is None:
        raise errors.invalid(f"Bad Request: {location}", location=location)
    return moment.astimezone(UTC)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise errors.GoogleApiError(
            400, "timeZoneInvalid", f"Invalid time zone definition: {name}"
        ) from exc


def point_in_time(value: dict[str, Any], calendar_zone: str) -> datetime:
    """An EventDateTime as a UTC instant; dates are midnight in the calendar's zone."""
    if "dateTime" in value:
        text = value["dateTime"]
        try:
            moment = parse_rfc3339(text)
        except (ValueError, TypeError):
            moment = None
        if moment is None or moment.tzinfo is None:
            # Google accepts a dateTime without offset when timeZone names the zone.
            if not value.get("timeZone"):
                raise errors.invalid("Invalid start time.")
            try:
                naive = datetime.fromisoformat(text)
            except ValueError as exc:
                raise errors.invalid("Invalid start time.") from exc
            moment = naive.replace(tzinfo=_zone(value["timeZone"]))
        return moment.astimezone(UTC)
    day = date.fromisoformat(value["date"])
    return datetime.combine(day, time(0), _zone(calendar_zone)).astimezone(UTC)


def event_bounds(event: dict[str, Any], calendar_zone: str) -> tuple[datetime, datetime]:
    return (
        point_in_time(event["start"], calendar_zone),
        point_in_time(event["end"], calendar_zone),
    )


def _validate_datetime(value: Any, location: str) -> None:
    if not isinstance(value, dict):
        raise errors.invalid(f"Invalid value for {location}.", location=location)
    has_date, has_time = "date" in value, "dateTime" in value
    if has_date == has_time:
        raise errors.invalid(
            f"Exactly one of date and dateTime is required for {location}.", location=location
        )
    if value.get("timeZone") is not None:
        _zone(value["timeZone"])
    if has_date:
        if not isinstance(value["date"], str) or not _DATE_RE.match(value["date"]):
            raise errors.invalid(f"Invalid {location} date.", location=location)
        try:
            date.fromisoformat(value["date"])
        except ValueError as exc:
            raise errors.invalid(f"Invalid {location} date.", location=location) from exc
    elif not isinstance(value["dateTime"], str):
        raise errors.invalid(f"Invalid {location} time.", location=location)
    else:
        try:
            point_in_time(value, "UTC")
        except errors.GoogleApiError as exc:
            raise errors.invalid(f"Invalid {location} time.", location=location) from exc


@dataclass(slots=True)
class CalendarState:
    """One calendar. A fleet of 100,000 mostly idle calendars must fit in memory: slots, and
    the containers are made on first use (most calendars never have recurring series,
    exceptions or changes; an empty dict or set costs 64-216 bytes)."""

    id: str
    owner: str
    time_zone: str
    summary: str
    watchable: bool
    resource_id: str
    generation: str
    updated: str
    seq: int = 0
    tokens_valid_after_serial: int = 0
    _events: dict[str, dict[str, Any]] | None = field(default=None, repr=False)
    _exceptions: dict[str, dict[str, dict[str, Any]]] | None = field(default=None, repr=False)
    _exception_master: dict[str, str] | None = field(default=None, repr=False)
    _seen_instances: dict[str, dict[str, dict[str, Any]]] | None = field(default=None, repr=False)
    _was_single: set[str] | None = field(default=None, repr=False)
    _change_seqs: list[int] | None = field(default=None, repr=False)
    _change_ids: list[str] | None = field(default=None, repr=False)

    @property
    def events(self) -> dict[str, dict[str, Any]]:
        """Singles and masters."""
        if self._events is None:
            self._events = {}
        return self._events

    @property
    def exceptions(self) -> dict[str, dict[str, dict[str, Any]]]:
        if self._exceptions is None:
            self._exceptions = {}
        return self._exceptions

    @property
    def exception_master(self) -> dict[str, str]:
        """Instance id -> master id."""
        if self._exception_master is None:
            self._exception_master = {}
        return self._exception_master

    @property
    def seen_instances(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every instance id a master ever expanded to (-> originalStartTime), so a series
        edit can cancel instances that vanished."""
        if self._seen_instances is None:
            self._seen_instances = {}
        return self._seen_instances

    @property
    def was_single(self) -> set[str]:
        if self._was_single is None:
            self._was_single = set()
        return self._was_single

    @property
    def change_seqs(self) -> list[int]:
        if self._change_seqs is None:
            self._change_seqs = []
        return self._change_seqs

    @property
    def change_ids(self) -> list[str]:
        if self._change_ids is None:
            self._change_ids = []
        return self._change_ids


@dataclass
class ListQuery:
    """events.list parameters after parsing."""

    sync_token: str | None = None
    page_token: str | None = None
    max_results: int = 250
    single_events: bool = False
    show_deleted: bool = False
    time_min: datetime | None = None
    time_max: datetime | None = None
    order_by: str | None = None
    q: str | None = None
    ical_uid: str | None = None
    updated_min: datetime | None = None
    event_types: tuple[str, ...] = ()
    # privateExtendedProperty / sharedExtendedProperty constraints (name, value); all must hold.
    private_properties: tuple[tuple[str, str], ...] = ()
    shared_properties: tuple[tuple[str, str], ...] = ()


class Store:
    """All calendars and events; every public method takes the one store lock."""

    def __init__(
        self,
        clock: Clock,
        faults: Faults,
        seed: int = 0,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.faults = faults
        self.on_change = on_change or (lambda calendar_id: None)
        self.calendars: dict[str, CalendarState] = {}
        self.pages = PageCache()
        self._ids = random.Random(f"{seed}-ids")
        self._etag_counter = 0
        self._token_serial = 0
        self._silent = False

    @contextmanager
    def silently(self) -> Iterator[None]:
        """Fault: changes made inside are stored but not recorded in the change sequence and
        not pushed, so incremental syncs never see them (full listings and freeBusy do)."""
        with self.lock:
            self._silent = True
            try:
                yield
            finally:
                self._silent = False

    def reset(self, seed: int) -> None:
        with self.lock:
            self.calendars.clear()
            self.pages.clear()
            self._ids = random.Random(f"{seed}-ids")
            self._etag_counter = 0
            self._token_serial = 0

    # ----- ids, etags, time -------------------------------------------------------------
    def _new_id(self, length: int = 26) -> str:
        return "".join(self._ids.choice(BASE32HEX) for _ in range(length))

    def _new_etag(self) -> str:
        self._etag_counter += 1
        return f'"{3_300_000_000_000_000 + self._etag_counter}"'

    def _horizon_end(self) -> datetime:
        days = self.faults.config.single_events_horizon_days
        return self.clock.now() + timedelta(days=days)

    # ----- calendars --------------------------------------------------------------------
    def create_calendar(
        self,
        calendar_id: str,
        time_zone: str,
        owner: str,
        summary: str | None = None,
        watchable: bool = True,
    ) -> CalendarState:
        if not calendar_id:
            raise ValueError("calendar id is required")
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
            raise ValueError(f"unknown time zone {time_zone!r}") from exc
        with self.lock:
            if calendar_id in self.calendars:
                raise ValueError(f"calendar {calendar_id!r} already exists")
            calendar = CalendarState(
                id=calendar_id,
                owner=owner,
                time_zone=time_zone,
                summary=summary if summary is not None else calendar_id,
                watchable=watchable,
                resource_id=self._new_id(27),
                generation=secrets.token_hex(6),
                updated=format_updated(self.clock.now()),
            )
            self.calendars[calendar_id] = calendar
            return calendar

    def current_sync_token(self, calendar_id: str, single_events: bool = True) -> str:
        """The nextSyncToken a full listing would end with now (fleets loaded for
        benchmarks start as already synced)."""
        with self.lock:
            calendar = self.calendars[calendar_id]
            self._token_serial += 1
            return encode_sync_token(
                SyncToken(
                    calendar.id,
                    calendar.generation,
                    calendar.seq,
                    single_events,
                    self.clock.now().timestamp(),
                    self._token_serial,
                )
            )

    def delete_calendar(self, calendar_id: str) -> None:
        with self.lock:
            if self.calendars.pop(calendar_id, None) is None:
                raise KeyError(calendar_id)

    def get_calendar(self, calendar_id: str) -> CalendarState:
        with self.lock:
            calendar = self.calendars.get(calendar_id)
            if calendar is None:
                raise errors.not_found()
            return calendar

    def calendars_of(self, owner: str) -> list[CalendarState]:
        with self.lock:
            return [c for c in self.calendars.values() if c.owner == owner]

    def invalidate_sync_tokens(self, calendar_id: str) -> None:
        with self.lock:
            calendar = self.get_calendar(calendar_id)
            calendar.tokens_valid_after_serial = self._token_serial

    # ----- change log -------------------------------------------------------------------
    def _record_change(self, calendar: CalendarState, changed_id: str) -> None:
        if self._silent:
            return
        calendar.seq += 1
        calendar.change_seqs.append(calendar.seq)
        calendar.change_ids.append(changed_id)
        calendar.updated = format_updated(self.clock.now())
        self.on_change(calendar.id)

    def _stamp(self, event: dict[str, Any]) -> dict[str, Any]:
        event["etag"] = self._new_etag()
        event["updated"] = format_updated(self.clock.now())
        return event

    # ----- expansion --------------------------------------------------------------------
    def _expand(
        self,
        calendar: CalendarState,
        master: dict[str, Any],
        window_start: datetime,
        window_end: datetime,
        with_exceptions: bool = True,
    ) -> list[dict[str, Any]]:
        source = dict(master)
        source["_calendarTimeZone"] = calendar.time_zone
        found = calendar.exceptions.get(master["id"], {}) if with_exceptions else {}
        instances = expand_series(source, found, window_start=window_start, window_end=window_end)
        return [public(instance) for instance in instances]

    def _note_instances(self, calendar: CalendarState, master: dict[str, Any]) -> None:
        """Remember every instance id this version of a series expands to (to the horizon)."""
        if not is_master(master) or master.get("status") == "cancelled":
            return
        seen = calendar.seen_instances.setdefault(master["id"], {})
        for instance in self._expand(
            calendar, master, EPOCH, self._horizon_end(), with_exceptions=False
        ):
            seen.setdefault(instance["id"], instance["originalStartTime"])

    def _find_instance(
        self, calendar: CalendarState, instance_id: str
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(master, current instance) for an id of a current occurrence, or None."""
        master_id = instance_id.rpartition("_")[0]
        master = calendar.events.get(master_id)
        if master is None or not is_master(master):
            return None
        generated = self._generated_instance(calendar, master, instance_id)
        if generated is None:
            return None  # also hides exceptions orphaned by a series edit
        existing = calendar.exceptions.get(master_id, {}).get(instance_id)
        instance = existing if existing is not None else generated
        if master.get("status") == "cancelled" and instance.get("status") != "cancelled":
            instance = {**instance, "status": "cancelled"}
        return master, instance

    def _generated_instance(
        self, calendar: CalendarState, master: dict[str, Any], instance_id: str
    ) -> dict[str, Any] | None:
        """The unmodified occurrence an instance id names, if the series still has it."""
        stamp = instance_id.rpartition("_")[2]
        try:
            if len(stamp) == 8:
                moment = datetime.strptime(stamp, "%Y%m%d").replace(tzinfo=UTC)
            else:
                moment = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
        start, end = event_bounds(master, calendar.time_zone)
        slack = (end - start) + timedelta(days=2)
        for instance in self._expand(
            calendar, master, moment - slack, moment + slack, with_exceptions=False
        ):
            if instance["id"] == instance_id:
                return instance
        return None

    # ----- writes -----------------------------------------------------------------------
    def _normalized(
        self,
        calendar: CalendarState,
        body: dict[str, Any],
        base: dict[str, Any] | None,
        replace: bool,
    ) -> dict[str, Any]:
        """Merge a client body onto base (patch) or replace base's writable fields (update)."""
        if not isinstance(body, dict):
            raise errors.invalid("The request body must be a JSON object.")
        if base is None:
            merged: dict[str, Any] = {}
        elif replace:
            merged = {k: v for k, v in base.items() if k not in WRITABLE_FIELDS}
        else:
            merged = dict(base)
        for key, value in body.items():
            if key not in WRITABLE_FIELDS:
                continue
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        for location in ("start", "end"):
            if location not in merged:
                raise errors.required(location)
            _validate_datetime(merged[location], location)
        if ("date" in merged["start"]) != ("date" in merged["end"]):
            raise errors.invalid(
                "Start and end must both be dates or both be date-times.", location="end"
            )
        start, end = event_bounds(merged, calendar.time_zone)
        if end < start:
            raise errors.time_range_empty()
        if merged.get("transparency", "opaque") not in ("opaque", "transparent"):
            raise errors.invalid("Invalid transparency value.", location="transparency")
        merged.setdefault("eventType", "default")
        if merged["eventType"] not in EVENT_TYPES:
            raise errors.invalid("Invalid event type.", location="eventType")
        merged.setdefault("status", "confirmed")
        if merged["status"] not in ("confirmed", "tentative", "cancelled"):
            raise errors.invalid("Invalid status value.", location="status")
        if "recurrence" in merged:
            self._validate_recurrence(calendar, merged)
        if "attendees" in merged:
            merged["attendees"] = self._attendees(calendar, merged["attendees"])
        return merged

    def _validate_recurrence(self, calendar: CalendarState, event: dict[str, Any]) -> None:
        lines = event["recurrence"]
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            raise errors.invalid("Invalid recurrence rule.", location="recurrence")
        if not lines:
            del event["recurrence"]
            return
        for line in lines:
            if not line.upper().startswith(("RRULE:", "EXRULE:", "RDATE", "EXDATE")):
                raise errors.invalid("Invalid recurrence rule.", location="recurrence")
        start, _ = event_bounds(event, calendar.time_zone)
        probe = dict(event, id=event.get("id", "probe0"))
        try:
            self._expand(calendar, probe, start, start + timedelta(days=400), with_exceptions=False)
        except errors.GoogleApiError:
            raise
        except Exception as exc:  # the rule parser's own error types vary
            raise errors.invalid("Invalid recurrence rule.", location="recurrence") from exc

    @staticmethod
    def _attendees(calendar: CalendarState, attendees: Any) -> list[dict[str, Any]]:
        if not isinstance(attendees, list) or not all(isinstance(a, dict) for a in attendees):
            raise errors.invalid("Invalid attendees.", location="attendees")
        result = []
        for attendee in attendees:
            attendee = dict(attendee)
            attendee.setdefault("responseStatus", "needsAction")
            email = str(attendee.get("email", "")).lower()
            if email and email in (calendar.id.lower(), calendar.owner.lower()):
                attendee.setdefault("self", True)
            result.append(attendee)
        return result

    def insert_event(self, calendar_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            calendar = self.get_calendar(calendar_id)
            event = self._normalized(calendar, body, None, replace=False)
            event_id = body.get("id") if isinstance(body, dict) else None
            if event_id is None:
                event_id = self._new_id()
            elif not isinstance(event_id, str) or not _CLIENT_ID_RE.match(event_id):
                raise errors.invalid("Invalid resource id value.", location="id")
            if event_id in calendar.events or event_id in calendar.exception_master:
                raise errors.GoogleApiError(
                    409, "duplicate", "The requested identifier already exists."
                )
            now = format_updated(self.clock.now())
            event.update(
                {
                    "kind": "calendar#event",
                    "id": event_id,
                    "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
                    "created": now,
                    "creator": {"email": calendar.owner, "self": True},
                    "organizer": {
                        "email": calendar.id,
                        "displayName": calendar.summary,
                        "self": True,
                    },
                    "iCalUID": f"{event_id}@google.com",
                    "sequence": int(event.get("sequence", 0)),
                    "reminders": event.get("reminders", {"useDefault": True}),
                }
            )
            self._stamp(event)
            calendar.events[event_id] = event
            if not is_master(event):
                calendar.was_single.add(event_id)
            self._note_instances(calendar, event)
            self._record_change(calendar, event_id)
            return public(event)

    def modify_event(
        self, calendar_id: str, event_id: str, body: dict[str, Any], replace: bool
    ) -> dict[str, Any]:
        """events.patch (replace=False) and events.update (replace=True)."""
        with self.lock:
            calendar = self.get_calendar(calendar_id)
            old = calendar.events.get(event_id)
            if old is None:
                return self._modify_instance(calendar, event_id, body, replace)
            new = self._normalized(calendar, body, old, replace)
            if any(new.get(k) != old.get(k) for k in ("start", "end", "recurrence", "status")):
                new["sequence"] = int(old.get("sequence", 0)) + 1
            self._stamp(new)
            self._note_instances(calendar, old)
            calendar.events[event_id] = new
            if not is_master(new):
                calendar.was_single.add(event_id)
            self._note_instances(calendar, new)
            self._record_change(calendar, event_id)
            return public(new)

    def _modify_instance(
        self, calendar: CalendarState, instance_id: str, body: dict[str, Any], replace: bool
    ) -> dict[str, Any]:
        found = self._find_instance(calendar, instance_id)
        if found is None:
            raise errors.not_found()
        master, instance = found
        if master.get("status") == "cancelled":
            raise errors.deleted()
        new = self._normalized(calendar, body, instance, replace)
        for key in ("id", "recurringEventId", "originalStartTime"):
            new[key] = instance[key]
        new.pop("recurrence", None)
        self._store_exception(calendar, master["id"], new)
        return public(new)

    def _store_exception(
        self, calendar: CalendarState, master_id: str, exception: dict[str, Any]
    ) -> None:
        self._stamp(exception)
        calendar.exceptions.setdefault(master_id, {})[exception["id"]] = exception
        calendar.exception_master[exception["id"]] = master_id
        self._record_change(calendar, exception["id"])

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        with self.lock:
            calendar = self.get_calendar(calendar_id)
            old = calendar.events.get(event_id)
            if old is None:
                found = self._find_instance(calendar, event_id)
                if found is None:
                    raise errors.not_found()
                master, instance = found
                if instance.get("status") == "cancelled":
                    raise errors.deleted()
                self._store_exception(calendar, master["id"], {**instance, "status": "cancelled"})
                return
            if old.get("status") == "cancelled":
                raise errors.deleted()
            self._note_instances(calendar, old)
            calendar.events[event_id] = self._stamp({**old, "status": "cancelled"})
            self._record_change(calendar, event_id)

    # ----- reads ------------------------------------------------------------------------
    def get_event(self, calendar_id: str, event_id: str) -> dict[str, Any]:
        with self.lock:
            calendar = self.get_calendar(calendar_id)
            event = calendar.events.get(event_id)
            if event is not None:
                return public(event)
            found = self._find_instance(calendar, event_id)
            if found is None:
                raise errors.not_found()
            return public(found[1])

    def instances(self, calendar_id: str, event_id: str, query: ListQuery) -> dict[str, Any]:
        with self.lock:
            calendar = self.get_calendar(calendar_id)
            master = calendar.events.get(event_id)
            if master is None:
                raise errors.not_found()
            key = (
                "instances",
                calendar.id,
                calendar.generation,
                event_id,
                query.show_deleted,
                query.time_min,
                query.time_max,
            )
            if query.page_token:
                return self._continue_page(calendar, key, query)
            if not is_master(master):
                items = [public(master)]
            else:
                items = self._expand(
                    calendar, master, query.time_min or EPOCH, query.time_max or self._horizon_end()
                )
                if master.get("status") == "cancelled":
                    items = [{**item, "status": "cancelled"} for item in items]
                if not query.show_deleted:
                    items = [item for item in items if item.get("status") != "cancelled"]
            return self._first_page(calendar, key, items, query, next_sync_token=None)

    def list_events(self, calendar_id: str, query: ListQuery) -> dict[str, Any]:
        with self.lock:
            calendar = self.get_calendar(calendar_id)
            key = (
                "list",
                calendar.id,
                calendar.generation,
                query.sync_token,
                query.single_events,
                query.show_deleted,
                query.time_min,
                query.time_max,
                query.order_by,
                query.q,
                query.ical_uid,
                query.updated_min,
                query.event_types,
                query.private_properties,
                query.shared_properties,
            )
            if query.page_token:
                return self._continue_page(calendar, key, query)
            if query.sync_token is not None:
                token = self._check_sync_token(calendar, query)
                items = self._incremental(calendar, token.seq, query.single_events)
            else:
                items = self._full(calendar, query)
            self._token_serial += 1
            next_token = encode_sync_token(
                SyncToken(
                    calendar.id,
                    calendar.generation,
                    calendar.seq,
                    query.single_events,
                    self.clock.now().timestamp(),
                    self._token_serial,
                )
            )
            return self._first_page(calendar, key, items, query, next_sync_token=next_token)

    def _check_sync_token(self, calendar: CalendarState, query: ListQuery) -> SyncToken:
        assert query.sync_token is not None
        token = decode_sync_token(query.sync_token)
        if token is None or token.calendar_id != calendar.id:
            raise errors.invalid("Invalid sync token value.", location="syncToken")
        if token.single_events != query.single_events:
            raise errors.invalid(
                "The singleEvents parameter must match the one of the "
                "request that issued the sync token.",
                location="singleEvents",
            )
        config = self.faults.config
        age = self.clock.now().timestamp() - token.issued_at
        if (
            token.generation != calendar.generation
            or token.serial <= calendar.tokens_valid_after_serial
            or token.seq > calendar.seq
            or (
                config.sync_token_max_age_seconds is not None
                and age > config.sync_token_max_age_seconds
            )
            or (
                config.sync_token_410_rate > 0 and self.faults.random() < config.sync_token_410_rate
            )
        ):
            raise errors.full_sync_required()
        return token

    def _first_page(
        self,
        calendar: CalendarState,
        key: tuple[Any, ...],
        items: list[dict[str, Any]],
        query: ListQuery,
        next_sync_token: str | None,
    ) -> dict[str, Any]:
        page = items[: query.max_results]
        response = self._envelope(calendar, page)
        if len(items) > query.max_results:
            snapshot = Snapshot(key, items, next_sync_token)
            response["nextPageToken"] = self.pages.put(snapshot, query.max_results)
        elif next_sync_token is not None:
            response["nextSyncToken"] = next_sync_token
        return response

    def _continue_page(
        self, calendar: CalendarState, key: tuple[Any, ...], query: ListQuery
    ) -> dict[str, Any]:
        assert query.page_token is not None
        found = self.pages.get(query.page_token)
        if found is None or found[0].key != key:
            raise errors.invalid("Invalid page token value.", location="pageToken")
        snapshot, offset = found
        end = offset + query.max_results
        response = self._envelope(calendar, snapshot.items[offset:end])
        if end < len(snapshot.items):
            response["nextPageToken"] = self.pages.next_token(query.page_token, end)
        elif snapshot.next_sync_token is not None:
            response["nextSyncToken"] = snapshot.next_sync_token
        return response

    @staticmethod
    def _envelope(calendar: CalendarState, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "kind": "calendar#events",
            "etag": f'"p{calendar.generation}{calendar.seq:010d}"',
            "summary": calendar.summary,
            "description": "",
            "updated": calendar.updated,
            "timeZone": calendar.time_zone,
            "accessRole": "owner",
            "defaultReminders": [],
            "items": items,
        }

    def _incremental(
        self, calendar: CalendarState, after_seq: int, single_events: bool
    ) -> list[dict[str, Any]]:
        start = bisect.bisect_right(calendar.change_seqs, after_seq)
        changed: dict[str, None] = {}
        for changed_id in calendar.change_ids[start:]:
            changed.pop(changed_id, None)
            changed[changed_id] = None  # ordered by the latest change
        items: dict[str, dict[str, Any]] = {}
        for changed_id in changed:
            for item in self._changed_items(calendar, changed_id, single_events):
                items.pop(item["id"], None)
                items[item["id"]] = item
        return list(items.values())

    def _changed_items(
        self, calendar: CalendarState, changed_id: str, single_events: bool
    ) -> Iterator[dict[str, Any]]:
        event = calendar.events.get(changed_id)
        if event is None:  # an exception (modified or cancelled instance)
            master_id = calendar.exception_master[changed_id]
            master = calendar.events[master_id]
            exception = calendar.exceptions[master_id][changed_id]
            gone = (
                master.get("status") == "cancelled"
                or not is_master(master)
                or exception.get("status") == "cancelled"
                or self._generated_instance(calendar, master, changed_id) is None
            )
            if gone:
                yield cancelled_stub(exception)
            else:
                yield public(exception)
            return
        cancelled = event.get("status") == "cancelled"
        if not single_events:
            yield cancelled_stub(event) if cancelled else public(event)
            return
        seen = calendar.seen_instances.get(changed_id, {})
        current: dict[str, dict[str, Any]] = {}
        if is_master(event) and not cancelled:
            for instance in self._expand(calendar, event, EPOCH, self._horizon_end()):
                current[instance["id"]] = instance
        for instance_id, original_start in seen.items():
            if instance_id not in current:
                yield {
                    "kind": "calendar#event",
                    "etag": event["etag"],
                    "id": instance_id,
                    "status": "cancelled",
                    "recurringEventId": changed_id,
                    "originalStartTime": original_start,
                }
        if is_master(event):
            if changed_id in calendar.was_single:
                yield cancelled_stub(event)
            for instance in current.values():
                yield (
                    cancelled_stub(instance) if instance.get("status") == "cancelled" else instance
                )
        else:
            yield cancelled_stub(event) if cancelled else public(event)

    def _full(self, calendar: CalendarState, query: ListQuery) -> list[dict[str, Any]]:
        if query.order_by == "startTime" and not query.single_events:
            raise errors.invalid(
                "The requested ordering is not available for the particular query.",
                location="orderBy",
            )
        window_start = query.time_min or EPOCH
        window_end = query.time_max or self._horizon_end()
        windowed = query.time_min is not None or query.time_max is not None
        # updatedMin: "entries deleted since this time will always be included regardless of
        # showDeleted"; older deletions fall to the updatedMin filter in _matches anyway.
        show_deleted = query.show_deleted or query.updated_min is not None
        # (item as listed, stored event it stands for): filters look at the stored event, so
        # cancelled stubs keep their `updated`, extended properties, iCalUID.
        pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for event in calendar.events.values():
            cancelled = event.get("status") == "cancelled"
            if is_master(event):
                pairs.extend(
                    self._full_series(
                        calendar, event, query, show_deleted, window_start, window_end, windowed
                    )
                )
            elif cancelled and not show_deleted:
                continue
            elif not windowed or self._overlaps(calendar, event, window_start, window_end):
                pairs.append((public(event), event))
        items = [item for item, source in pairs if self._matches(source, query)]
        if query.order_by == "startTime":
            items.sort(key=lambda item: self._sort_start(calendar, item))
        elif query.order_by == "updated":
            items.sort(key=lambda item: item.get("updated", ""))
        return items

    def _full_series(
        self,
        calendar: CalendarState,
        master: dict[str, Any],
        query: ListQuery,
        show_deleted: bool,
        window_start: datetime,
        window_end: datetime,
        windowed: bool,
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        cancelled = master.get("status") == "cancelled"
        if query.single_events:
            if cancelled:
                if not show_deleted:
                    return []
                return [
                    (
                        {
                            "kind": "calendar#event",
                            "etag": master["etag"],
                            "id": instance_id,
                            "status": "cancelled",
                            "recurringEventId": master["id"],
                            "originalStartTime": original,
                        },
                        master,
                    )
                    for instance_id, original in calendar.seen_instances.get(
                        master["id"], {}
                    ).items()
                    if window_start <= point_in_time(original, calendar.time_zone) < window_end
                ]
            instances = self._expand(calendar, master, window_start, window_end)
            return [
                (instance, instance)
                for instance in instances
                if show_deleted or instance.get("status") != "cancelled"
            ]
        if cancelled and not show_deleted:
            return []
        if windowed and not self._expand(calendar, master, window_start, window_end):
            return []
        # Cancelled exceptions come along even without showDeleted (as at Google).
        result = [(cancelled_stub(master) if cancelled else public(master), master)]
        for exception in calendar.exceptions.get(master["id"], {}).values():
            if self._generated_instance(calendar, master, exception["id"]) is None:
                continue  # orphaned by a series edit
            if not windowed or self._overlaps(calendar, exception, window_start, window_end):
                gone = cancelled or exception.get("status") == "cancelled"
                item = cancelled_stub(exception) if gone else public(exception)
                result.append((item, exception))
        return result

    @staticmethod
    def _overlaps(
        calendar: CalendarState, event: dict[str, Any], window_start: datetime, window_end: datetime
    ) -> bool:
        if event.get("status") == "cancelled" and "originalStartTime" in event:
            start = point_in_time(event["originalStartTime"], calendar.time_zone)
            return window_start <= start < window_end
        start, end = event_bounds(event, calendar.time_zone)
        if start == end:
            return window_start <= start < window_end
        return end > window_start and start < window_end

    @staticmethod
    def _sort_start(calendar: CalendarState, item: dict[str, Any]) -> datetime:
        if "start" in item:
            return point_in_time(item["start"], calendar.time_zone)
        if "originalStartTime" in item:
            return point_in_time(item["originalStartTime"], calendar.time_zone)
        return EPOCH

    @staticmethod
    def _matches(item: dict[str, Any], query: ListQuery) -> bool:
        if query.ical_uid is not None and item.get("iCalUID") != query.ical_uid:
            return False
        if query.private_properties or query.shared_properties:
            properties = item.get("extendedProperties") or {}
            for scope, wanted in (
                ("private", query.private_properties),
                ("shared", query.shared_properties),
            ):
                have = properties.get(scope) or {}
                if any(have.get(name) != value for name, value in wanted):
                    return False
        if query.event_types and item.get("eventType", "default") not in query.event_types:
            return False
        if query.updated_min is not None:
            updated = item.get("updated")
            if updated is None or parse_rfc3339(updated) < query.updated_min:
                return False
        if query.q:
            needle = query.q.lower()
            text = " ".join(str(item.get(k, "")) for k in ("summary", "description", "location"))
            if needle not in text.lower():
                return False
        return True

    # ----- free/busy --------------------------------------------------------------------
    def single_events_between(
        self, calendar_id: str, time_min: datetime, time_max: datetime
    ) -> list[dict[str, Any]]:
        """Every single event and instance overlapping the window (cancelled ones included)."""
        with self.lock:
            calendar = self.get_calendar(calendar_id)
            result: list[dict[str, Any]] = []
            for event in calendar.events.values():
                if event.get("status") == "cancelled":
                    continue
                if is_master(event):
                    result.extend(self._expand(calendar, event, time_min, time_max))
                elif self._overlaps(calendar, event, time_min, time_max):
                    result.append(public(event))
            return result

    def busy(
        self, calendar_id: str, time_min: datetime, time_max: datetime
    ) -> list[tuple[datetime, datetime]]:
        with self.lock:
            calendar = self.get_calendar(calendar_id)
            events = self.single_events_between(calendar_id, time_min, time_max)
            return busy_intervals(events, calendar.time_zone, time_min, time_max)
