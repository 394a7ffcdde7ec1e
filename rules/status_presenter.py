"""What the status page shows, as plain data: words, colours and timeline geometry.

Pure: no I/O, no Flask. The view (webhook/status_page.py) loads rows and hands them here;
the template only lays the result out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rules.health import CalendarState

# Tone = the colour family of a state; the template maps each to a CSS class.
TONES: dict[str, str] = {
    CalendarState.OK: "good",
    CalendarState.SYNCING: "info",
    CalendarState.LAGGING: "warn",
    CalendarState.NOT_WATCHED: "warn",
    CalendarState.FAILING: "bad",
    CalendarState.NEEDS_REAUTH: "bad",
}

# Distinct from the green/amber/red of the health states, so a bar is never read as health.
CALENDAR_COLOURS = ("#3b5bdb", "#0c8599", "#9c36b5", "#c2255c", "#846358", "#1864ab")
EN_DASH = "\u2013"  # between two clock times
MANUAL_COLOUR = "#495057"
ALL_BUSY_COLOUR = "#212529"

# Per error code: what happened in plain words, and what the host should do about it.
ERROR_WORDS: dict[str, tuple[str, str]] = {
    "auth_revoked": (
        "Google access was revoked or has expired.",
        "Reconnect the Google account; syncing resumes by itself afterwards.",
    ),
    "calendar_not_found": (
        "Google says this calendar no longer exists, or the connected account lost access.",
        "Check that the calendar still exists and is shared with the connected account, "
        "then reconnect it (or remove it from calsync).",
    ),
    "forbidden": (
        "Google refused access to this calendar; its sharing settings may have changed.",
        "Share the calendar with the connected account again, or reconnect it.",
    ),
    "rate_limited": (
        "Google asked calsync to slow down.",
        "Nothing to do: calsync waits and retries by itself.",
    ),
    "quota_exceeded": (
        "The Google API quota is used up for now.",
        "calsync retries by itself; if this lasts, ask the operator to raise the quota.",
    ),
    "google_unavailable": (
        "Google Calendar was temporarily unavailable.",
        "Nothing to do: calsync retries by itself.",
    ),
    "network": (
        "calsync could not reach Google.",
        "calsync retries by itself; if this lasts, ask the operator to check the network.",
    ),
    "token_refresh_failed": (
        "Google did not renew calsync's access this time.",
        "calsync retries by itself; if this lasts, reconnect the Google account.",
    ),
    "unauthorized": (
        "Google did not accept calsync's access.",
        "calsync retries by itself; if this lasts, reconnect the Google account.",
    ),
    "full_sync_required": (
        "Google asked calsync to re-read the whole calendar.",
        "Nothing to do: calsync does a full re-sync by itself.",
    ),
}
UNKNOWN_ERROR_FIX = "If this keeps happening, tell the operator of calsync."


@dataclass(frozen=True)
class Moment:
    """A point in time as a reader wants it: exact (host's zone) and relative to now."""

    iso: str  # UTC, for <time datetime=…>
    local: str
    relative: str


@dataclass(frozen=True)
class CalendarCard:
    calendar_id: int
    name: str
    google_calendar_id: str
    state: str
    tone: str
    headline: str
    reason: str | None  # why, when the headline alone does not say (e.g. watch problem)
    lag: str
    last_sync: Moment | None
    last_notification: Moment | None
    channel_expiry: Moment | None
    error: str | None
    fix: str | None
    action_label: str | None = None
    action_url: str | None = None
    colour: str = CALENDAR_COLOURS[0]
    audit: AuditLine | None = None  # None: never audited
    differs_from_google: bool = False


@dataclass(frozen=True)
class AuditLine:
    """The calendar's last audit against Google's own free/busy answer, in words."""

    at: Moment
    matched: bool
    words: str
    differences: list[str]  # local time ranges, never titles


@dataclass(frozen=True)
class Bar:
    left_pct: float
    width_pct: float
    label: str  # e.g. "09:00-10:00 Work calendar: note"


@dataclass(frozen=True)
class Lane:
    name: str
    colour: str
    kind: str  # "all" | "calendar" | "manual"
    bars: list[Bar] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    """One line of a day's text list (the same facts as the bars, readable without colour)."""

    times: str
    source: str
    colour: str
    kind: str
    note: str = ""


@dataclass(frozen=True)
class DayRow:
    label: str
    is_today: bool
    now_pct: float | None
    lanes: list[Lane]
    entries: list[Entry]


@dataclass(frozen=True)
class Source:
    """One timeline source: a calendar or the manual blocks, with its busy spans."""

    name: str
    colour: str
    kind: str
    spans: list[tuple[datetime, datetime, str]]  # start, end (UTC), note


def host_zone(name: str | None) -> tuple[tzinfo, str]:
    """The host's zone and its name; UTC when the stored name is unknown."""
    try:
        return ZoneInfo(name or "UTC"), name or "UTC"
    except (ZoneInfoNotFoundError, ValueError):
        return UTC, "UTC"


def plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def duration_words(seconds: float) -> str:
    """'45 seconds', '4 minutes', '3 hours', '2 days' (rounded to the nearest whole unit)."""
    seconds = max(0, int(seconds))
    if seconds < 90:
        return plural(seconds, "second")
    if seconds < 90 * 60:
        return plural(round(seconds / 60), "minute")
    if seconds < 36 * 3600:
        return plural(round(seconds / 3600), "hour")
    return plural(round(seconds / 86400), "day")


def relative_words(moment: datetime, now: datetime) -> str:
    delta = (moment - now).total_seconds()
    if abs(delta) < 5:
        return "just now"
    words = duration_words(abs(delta))
    return f"in {words}" if delta > 0 else f"{words} ago"


def local_text(moment: datetime, zone: tzinfo, *, seconds: bool = False) -> str:
    local = moment.astimezone(zone)
    clock = "%H:%M:%S" if seconds else "%H:%M"
    return f"{local.strftime('%a %d %b %Y, ' + clock)} {local.tzname()}"


def moment(value: str | datetime | None, now: datetime, zone: tzinfo) -> Moment | None:
    if value is None:
        return None
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return Moment(at.astimezone(UTC).isoformat(), local_text(at, zone), relative_words(at, now))


def calendar_card(
    status: dict[str, Any],
    *,
    name: str,
    now: datetime,
    zone: tzinfo,
    reconnect_url: str,
    polling_seconds: int,
    colour: str,
) -> CalendarCard:
    """The card for one calendar, from `models.sync_status.calendar_status` output."""
    state = status["state"]
    lag_seconds = status["lagSeconds"]
    error, fix = error_words(status.get("lastError"))
    reason = None
    action_label = action_url = None
    if state == CalendarState.OK:
        headline = "Up to date"
    elif state == CalendarState.SYNCING:
        headline = "Syncing now" if status["lastSuccessAt"] else "First sync in progress"
    elif state == CalendarState.LAGGING:
        headline = f"Behind by {duration_words(lag_seconds or 0)}"
        fix = fix or (
            "Nothing to do yet: calsync is catching up. If it stays behind, tell the operator."
        )
    elif state == CalendarState.NOT_WATCHED:
        minutes = max(1, round(polling_seconds / 60))
        headline = "Not receiving push notifications — polling every " + plural(minutes, "minute")
        reason = status.get("watchProblem") or _channel_gone(status, now, zone)
        retry = moment(status.get("watchRetryAt"), now, zone)
        if status.get("watchProblem") and retry is not None:
            reason = f"{reason} Google refused the watch; next try at {retry.local}."
        fix = fix or (
            f"Changes still arrive, but up to {plural(minutes, 'minute')} late. calsync "
            "retries the watch by itself; if this lasts, tell the operator."
        )
    elif state == CalendarState.NEEDS_REAUTH:
        headline = "Google access was revoked — reconnect"
        error = error or ERROR_WORDS["auth_revoked"][0]
        fix = (
            "Reconnect the Google account; syncing resumes by itself afterwards. Until then, "
            "new events in this calendar do not block time."
        )
        action_label, action_url = "Reconnect Google Calendar", reconnect_url
    else:  # failing
        headline = "Sync is failing"
        fix = fix or UNKNOWN_ERROR_FIX
    audit = audit_line(status.get("lastAudit"), now, zone)
    differs = bool(status.get("differsFromGoogle"))
    tone = TONES.get(state, "bad")
    if differs and state not in (CalendarState.FAILING, CalendarState.NEEDS_REAUTH):
        # Sync itself works, but its result disagrees with Google: the louder news.
        headline, tone = "Differs from Google", "bad"
        reason = (
            "An audit found busy time that differs from Google's own free/busy answer, and "
            "a full re-sync did not repair it."
        )
        fix = (
            "Booking pages may offer times you are busy (or hide free ones) in the ranges "
            "shown under Last audit. Check the events at those times in Google Calendar. "
            "calsync audits again by itself and this clears when an audit matches; if it "
            "stays, tell the operator."
        )
    return CalendarCard(
        calendar_id=status["calendarId"],
        name=name,
        google_calendar_id=status["googleCalendarId"],
        state=state,
        tone=tone,
        headline=headline,
        reason=reason,
        lag=(
            "Unknown — calsync cannot read this calendar until it is reconnected"
            if state == CalendarState.NEEDS_REAUTH
            else _lag_words(lag_seconds)
        ),
        last_sync=moment(status["lastSuccessAt"], now, zone),
        last_notification=moment(status["lastNotificationAt"], now, zone),
        channel_expiry=moment(status["channelExpiresAt"], now, zone),
        error=error,
        fix=fix,
        action_label=action_label,
        action_url=action_url,
        colour=colour,
        audit=audit,
        differs_from_google=differs,
    )


def audit_line(last: dict[str, Any] | None, now: datetime, zone: tzinfo) -> AuditLine | None:
    """From the sync status's `lastAudit` (the newest audit with a verdict)."""
    if not last:
        return None
    at = moment(last["at"], now, zone)
    assert at is not None
    ranges = [_range_words(r["start"], r["end"], zone) for r in last.get("differences") or []]
    if last["matched"]:
        words = f"Matched Google {at.relative}"
    else:
        differing = duration_words(last["differingSeconds"])
        words = f"Differed from Google {at.relative} ({differing} differing)"
    return AuditLine(at, bool(last["matched"]), words, ranges)


def _range_words(start: str, end: str, zone: tzinfo) -> str:
    begin = datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(zone)
    finish = datetime.fromisoformat(end.replace("Z", "+00:00")).astimezone(zone)
    same_day = begin.date() == finish.date()
    tail = finish.strftime("%H:%M") if same_day else local_text(finish, zone)
    return f"{local_text(begin, zone)}{EN_DASH}{tail}"


def _channel_gone(status: dict[str, Any], now: datetime, zone: tzinfo) -> str:
    expired = moment(status.get("channelExpiresAt"), now, zone)
    if expired is None:
        return "No push channel is open for this calendar."
    return f"The push channel expired {expired.relative} ({expired.local})."


def _lag_words(lag_seconds: float | None) -> str:
    if lag_seconds is None:
        return "Not synced yet"
    if lag_seconds < 1:
        return "None — every known change is applied"
    return f"{duration_words(lag_seconds)} since the first unapplied change"


def error_words(last_error: dict[str, str] | None) -> tuple[str | None, str | None]:
    """An error code (and Google's message) as what happened and what to do, in words."""
    if not last_error:
        return None, None
    known = ERROR_WORDS.get(last_error.get("code") or "")
    if known:
        return known
    return last_error.get("message") or "An unknown error occurred.", UNKNOWN_ERROR_FIX


def day_windows(
    now: datetime, zone: tzinfo, days: int = 7
) -> list[tuple[date, datetime, datetime]]:
    """Each local day from today on: its date and its [start, end) in UTC (DST-correct)."""
    today = now.astimezone(zone).date()
    windows = []
    for offset in range(days):
        day = today + timedelta(days=offset)
        start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
        windows.append((day, start, end))
    return windows


def _clock(moment_utc: datetime, zone: tzinfo, day_end: datetime) -> str:
    return "24:00" if moment_utc >= day_end else moment_utc.astimezone(zone).strftime("%H:%M")


def _place(
    start: datetime, end: datetime, day_start: datetime, day_end: datetime, zone: tzinfo
) -> tuple[float, float, str] | None:
    """A span's left edge and width in percent of the day, and its local times."""
    start, end = max(start, day_start), min(end, day_end)
    if start >= end:
        return None
    length = (day_end - day_start).total_seconds()
    left = (start - day_start).total_seconds() / length * 100
    width = (end - start).total_seconds() / length * 100
    times = f"{_clock(start, zone, day_end)}{EN_DASH}{_clock(end, zone, day_end)}"
    # A 5-minute block must still be visible.
    return round(left, 3), round(max(width, 0.4), 3), times


def timeline(
    sources: list[Source],
    all_busy: list[tuple[datetime, datetime]],
    *,
    now: datetime,
    zone: tzinfo,
    days: int = 7,
) -> list[DayRow]:
    """Per local day: one lane for everything together, then one per source; spans crossing
    midnight are cut at the day's edge."""
    rows = []
    for day, day_start, day_end in day_windows(now, zone, days):
        length = (day_end - day_start).total_seconds()
        all_lane = Lane("All busy time (what booking pages see)", ALL_BUSY_COLOUR, "all")
        for start, end in all_busy:
            placed = _place(start, end, day_start, day_end, zone)
            if placed:
                all_lane.bars.append(Bar(placed[0], placed[1], f"{placed[2]} busy"))
        lanes = [all_lane]
        entries: list[tuple[datetime, Entry]] = []
        for source in sources:
            lane = Lane(source.name, source.colour, source.kind)
            for start, end, note in sorted(source.spans, key=lambda span: span[:2]):
                placed = _place(start, end, day_start, day_end, zone)
                if not placed:
                    continue
                label = f"{placed[2]} {source.name}" + (f": {note}" if note else "")
                lane.bars.append(Bar(placed[0], placed[1], label))
                entry = Entry(placed[2], source.name, source.colour, source.kind, note)
                entries.append((max(start, day_start), entry))
            lanes.append(lane)
        is_today = day_start <= now < day_end
        now_pct = round((now - day_start).total_seconds() / length * 100, 3) if is_today else None
        entries.sort(key=lambda pair: pair[0])
        rows.append(
            DayRow(
                label=("Today, " if is_today else "") + day.strftime("%a %d %b"),
                is_today=is_today,
                now_pct=now_pct,
                lanes=lanes,
                entries=[entry for _at, entry in entries],
            )
        )
    return rows
