"""Expansion of a recurring master event into instances, Google-style (pure, no I/O).

Timed series expand in wall-clock time of the master's start.timeZone, so 09:00 stays 09:00
local across DST changes while the UTC instant moves. All-day series expand by date and are
placed on the calendar's day (its time zone) only to decide overlap with a window.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rruleset, rrulestr

from emulator.timefmt import (
    format_rfc3339_local,
    parse_date,
    parse_event_time,
    parse_local_datetime,
    zone,
)

_DATE_VALUE = re.compile(r"\d{8}")
_DATETIME_VALUE = re.compile(r"(\d{8})T(\d{6})(Z?)")


@dataclass(frozen=True)
class _Series:
    master: Mapping[str, Any]
    all_day: bool
    zone_name: str  # zone of expansion (timed) or of the calendar day (all-day)
    end_zone_name: str  # zone the instance end is rendered in (timed)
    dtstart: datetime  # timed: aware in zone; all-day: naive midnight
    duration: timedelta  # timed: wall-clock length; all-day: whole days
    rules: rruleset

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.zone_name)

    def instant(self, occurrence: datetime) -> datetime:
        """UTC instant at which an occurrence (or occurrence end) begins."""
        if self.all_day:
            return occurrence.replace(tzinfo=self.tz).astimezone(UTC)
        return occurrence.astimezone(UTC)

    def bounds(self, occurrence: datetime) -> tuple[datetime, datetime]:
        # Adding a timedelta to a ZoneInfo-aware datetime adds wall-clock time, as wanted.
        return self.instant(occurrence), self.instant(occurrence + self.duration)

    def event_time(self, occurrence: datetime, *, end: bool = False) -> dict[str, str]:
        if self.all_day:
            return {"date": occurrence.date().isoformat()}
        name = self.end_zone_name if end else self.zone_name
        return {"dateTime": format_rfc3339_local(occurrence, name), "timeZone": name}

    def occurrence_from_original(self, original: Mapping[str, Any]) -> datetime:
        """Map an originalStartTime object back onto this series' occurrence representation."""
        if "date" in original and original["date"] is not None:
            return _normalize(parse_date(original["date"]), self)
        return _normalize(parse_local_datetime(original["dateTime"], self.zone_name), self)

    def is_occurrence(self, occurrence: datetime) -> bool:
        return any(hit == occurrence for hit in self.rules.xafter(occurrence, count=1, inc=True))

    def occurrences(self, window_start: datetime, window_end: datetime) -> Iterator[datetime]:
        """Occurrences whose generated [start, end) overlaps the window; lazy and bounded."""
        slack = abs(self.duration) + timedelta(days=2)  # covers DST offsets and long events
        if self.all_day:
            first = window_start.astimezone(self.tz).replace(tzinfo=None) - slack
            first = datetime.combine(first.date(), time(0))
        else:
            first = window_start - slack
        for occurrence in self.rules.xafter(first, inc=True):
            start, end = self.bounds(occurrence)
            if start >= window_end:
                return
            if _overlaps(start, end, window_start, window_end):
                yield occurrence


def _overlaps(start: datetime, end: datetime, window_start: datetime, window_end: datetime) -> bool:
    # Google's events.list rule: end after timeMin (exclusive), start before timeMax.
    return start < window_end and end > window_start


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC)


def _normalize(value: date | datetime, series: _Series | _SeriesShape) -> datetime:
    """Bring an RDATE/EXDATE/UNTIL value into the series' occurrence representation."""
    if series.all_day:
        if isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(zone(series.zone_name))
            value = value.date()
        return datetime.combine(value, time(0))
    tz = zone(series.zone_name)
    if isinstance(value, datetime):
        if value.tzinfo is None:  # floating time: read in the series' zone
            return value.replace(tzinfo=tz)
        return value.astimezone(tz)
    # A bare date against a timed series means that day's occurrence.
    return datetime.combine(value, series.dtstart.timetz())


@dataclass(frozen=True)
class _SeriesShape:
    """What _normalize needs before the rule set exists."""

    all_day: bool
    zone_name: str
    dtstart: datetime


def _parse_ical_value(text: str, params: Mapping[str, str]) -> date | datetime:
    text = text.strip()
    if params.get("VALUE") == "DATE" or _DATE_VALUE.fullmatch(text):
        if not _DATE_VALUE.fullmatch(text):
            raise ValueError(f"bad DATE value {text!r}")
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    if params.get("VALUE") == "PERIOD" or "/" in text:
        text = text.split("/", 1)[0]  # a PERIOD's start is the occurrence
    match = _DATETIME_VALUE.fullmatch(text)
    if match is None:
        raise ValueError(f"bad DATE-TIME value {text!r}")
    day, clock, utc_flag = match.groups()
    moment = datetime(
        int(day[:4]),
        int(day[4:6]),
        int(day[6:8]),
        int(clock[:2]),
        int(clock[2:4]),
        int(clock[4:6]),
    )
    if utc_flag:
        return moment.replace(tzinfo=UTC)
    if "TZID" in params:
        return moment.replace(tzinfo=zone(params["TZID"]))
    return moment


def _split_line(line: str) -> tuple[str, dict[str, str], str]:
    """'EXDATE;TZID=Europe/Berlin:2026...' -> ('EXDATE', {'TZID': 'Europe/Berlin'}, '2026...')."""
    head, sep, value = line.strip().partition(":")
    if not sep:
        raise ValueError(f"bad recurrence line {line!r}")
    name, *param_parts = head.split(";")
    params: dict[str, str] = {}
    for part in param_parts:
        key, _, param_value = part.partition("=")
        params[key.strip().upper()] = param_value.strip().strip('"')
    return name.strip().upper(), params, value


def _build_rule(value: str, shape: _SeriesShape) -> rrule:
    # UNTIL is taken out and normalized here: dateutil insists UNTIL and DTSTART agree on
    # awareness, while Google writes UNTIL in UTC ("Z") or as a date for all-day series.
    parts = [part for part in value.strip().split(";") if part]
    until_text = None
    kept = []
    for part in parts:
        key, _, part_value = part.partition("=")
        if key.strip().upper() == "UNTIL":
            until_text = part_value.strip()
        else:
            kept.append(part)
    rule = rrulestr(";".join(kept), dtstart=shape.dtstart)
    if not isinstance(rule, rrule):
        raise ValueError(f"bad rule {value!r}")
    if until_text is not None:
        until_value = _parse_ical_value(until_text, {})
        if isinstance(until_value, datetime) or shape.all_day:
            until = _normalize(until_value, shape)
        else:  # a date UNTIL on a timed series: the whole of that local day counts
            until = datetime.combine(until_value, time(23, 59, 59), tzinfo=zone(shape.zone_name))
        rule = rule.replace(until=until)
    return rule


def _series(master: Mapping[str, Any]) -> _Series:
    start, end = master["start"], master["end"]
    calendar_zone = master.get("_calendarTimeZone") or "UTC"
    all_day = "date" in start and start.get("date") is not None
    if all_day:
        # An all-day day is the calendar's day; the master's own zone only as a fallback.
        zone_name = master.get("_calendarTimeZone") or start.get("timeZone") or "UTC"
        first_day = parse_date(start["date"])
        last_day = parse_date(end["date"]) if end.get("date") else first_day + timedelta(days=1)
        shape = _SeriesShape(True, zone_name, datetime.combine(first_day, time(0)))
        duration = timedelta(days=max((last_day - first_day).days, 0))
        end_zone_name = zone_name
    else:
        zone_name = start.get("timeZone") or calendar_zone
        tz = zone(zone_name)
        dtstart = parse_local_datetime(start["dateTime"], zone_name).astimezone(tz)
        end_zone_name = end.get("timeZone") or zone_name
        end_local = parse_local_datetime(end["dateTime"], end_zone_name).astimezone(tz)
        # Wall-clock length, so a 09:00-10:00 series is 09:00-10:00 on every day.
        duration = max(end_local.replace(tzinfo=None) - dtstart.replace(tzinfo=None), timedelta(0))
        shape = _SeriesShape(False, zone_name, dtstart)
    rules = rruleset()
    for line in master.get("recurrence") or []:
        name, params, value = _split_line(line)
        if name == "RRULE":
            rules.rrule(_build_rule(value, shape))
        elif name == "EXRULE":
            rules.exrule(_build_rule(value, shape))
        elif name in ("RDATE", "EXDATE"):
            add = rules.rdate if name == "RDATE" else rules.exdate
            for item in value.split(","):
                if item.strip():
                    add(_normalize(_parse_ical_value(item, params), shape))
        elif name == "DTSTART":
            continue  # Google omits it; start is authoritative
        else:
            raise ValueError(f"unsupported recurrence line {line!r}")
    return _Series(
        master=master,
        all_day=all_day,
        zone_name=zone_name,
        end_zone_name=end_zone_name,
        dtstart=shape.dtstart,
        duration=duration,
        rules=rules,
    )


def _id_suffix(occurrence: datetime, all_day: bool) -> str:
    if all_day:
        return occurrence.strftime("%Y%m%d")
    return occurrence.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def instance_id(master_id: str, original_start: Mapping[str, Any]) -> str:
    """Google-style instance id: "<master>_<YYYYMMDDTHHMMSSZ>" (UTC) or "<master>_<YYYYMMDD>".

    original_start is an originalStartTime object; an offset-less dateTime is read in its
    timeZone (UTC if none).
    """
    if "date" in original_start and original_start["date"] is not None:
        return f"{master_id}_{parse_date(original_start['date']).strftime('%Y%m%d')}"
    moment = parse_local_datetime(
        original_start["dateTime"], original_start.get("timeZone") or "UTC"
    )
    return f"{master_id}_{_id_suffix(moment, all_day=False)}"


def _generated_instance(series: _Series, occurrence: datetime) -> dict[str, Any]:
    master = series.master
    instance = {key: copy.deepcopy(value) for key, value in master.items() if key != "recurrence"}
    instance["id"] = f"{master['id']}_{_id_suffix(occurrence, series.all_day)}"
    instance["recurringEventId"] = master["id"]
    instance["originalStartTime"] = series.event_time(occurrence)
    instance["start"] = series.event_time(occurrence)
    instance["end"] = series.event_time(occurrence + series.duration, end=True)
    return instance


def _exception_instance(
    series: _Series, key: str, exception: Mapping[str, Any], occurrence: datetime
) -> dict[str, Any]:
    generated = _generated_instance(series, occurrence)
    instance = copy.deepcopy(dict(exception))
    instance["id"] = key
    instance["recurringEventId"] = series.master["id"]
    instance.setdefault("originalStartTime", generated["originalStartTime"])
    # A cancelled exception may be a bare tombstone; it still sits at its generated time.
    instance.setdefault("start", generated["start"])
    instance.setdefault("end", generated["end"])
    return instance


def _instance_bounds(series: _Series, instance: Mapping[str, Any]) -> tuple[datetime, datetime]:
    start = parse_event_time(instance["start"], series.zone_name)
    end = parse_event_time(instance["end"], series.zone_name)
    return start, end


def _exception_occurrence(series: _Series, key: str, exception: Mapping[str, Any]) -> datetime:
    original = exception.get("originalStartTime")
    if original:
        return series.occurrence_from_original(original)
    suffix = key.rsplit("_", 1)[-1]
    value = _parse_ical_value(suffix, {})
    return _normalize(value, series)


def expand_series(
    master: Mapping[str, Any],
    exceptions: Mapping[str, Mapping[str, Any]],
    *,
    window_start: datetime,
    window_end: datetime,
) -> list[dict[str, Any]]:
    """Instances of master overlapping [window_start, window_end), sorted by start.

    Exceptions (keyed by instance id) replace their generated instance and are kept or left
    out by their own, possibly moved, times; cancelled ones come back with status
    "cancelled". An exception whose original start is no occurrence of the series (e.g. the
    series was shortened since) is ignored.
    """
    window_start = _utc(window_start, "window_start")
    window_end = _utc(window_end, "window_end")
    series = _series(master)
    results: list[tuple[datetime, str, dict[str, Any]]] = []
    for occurrence in series.occurrences(window_start, window_end):
        instance = _generated_instance(series, occurrence)
        if instance["id"] in exceptions:
            continue  # decided below by the exception's own times
        results.append((series.instant(occurrence), instance["id"], instance))
    for key, exception in exceptions.items():
        occurrence = _exception_occurrence(series, key, exception)
        if not series.is_occurrence(occurrence):
            continue
        instance = _exception_instance(series, key, exception, occurrence)
        start, end = _instance_bounds(series, instance)
        if _overlaps(start, end, window_start, window_end):
            results.append((start, key, instance))
    results.sort(key=lambda item: (item[0], item[1]))
    return [instance for _, _, instance in results]


def original_starts(
    master: Mapping[str, Any], window_start: datetime, window_end: datetime
) -> list[dict[str, str]]:
    """originalStartTime objects of the generated occurrences overlapping the window
    (exceptions not applied)."""
    window_start = _utc(window_start, "window_start")
    window_end = _utc(window_end, "window_end")
    series = _series(master)
    occurrences = series.occurrences(window_start, window_end)
    return [series.event_time(occurrence) for occurrence in occurrences]
