"""The host's own pages: sign in with a one-time link, the week view `/me` with manual blocks
by the hour, and the sync log `/me/log` (and `/me/log.csv`).

Server-rendered; one script (static/host.js) adds drag-select, the "why is this free"
popover and a self-refresh of the live part every few seconds, and every action also works
as a plain form with JavaScript off (POST, then redirect, then GET). The signed-in host is
the only host these pages know: a block id of another host answers 404, like an unknown one.
No script runs inline (Content-Security-Policy), and no token is ever in a URL after the
sign-in link itself.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    flash,
    get_flashed_messages,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as BaseResponse

from models import Host, ManualBlock
from models.host_log import host_audits, host_channel_openings, host_runs
from models.registry import rotate_feed_token
from models.sign_in_links import LinkProblem, use_sign_in_link
from models.status_view import (
    busy_by_calendar,
    host_calendars,
    manual_blocks_with_notes,
    nonblocking_events,
)
from models.sync_status import calendar_status
from rules.busy_feed import connection_values
from rules.status_presenter import (
    CALENDAR_COLOURS,
    CalendarCard,
    calendar_card,
    error_words,
    host_zone,
    local_text,
)
from rules.sync_log import RunFacts, is_failure, seconds_text, week_summary
from rules.week_grid import (
    Span,
    clock_choices,
    clock_text,
    local_midnight,
    local_range,
    monday_of,
    parse_clock,
    parse_week,
    short_reason,
    week_grid,
    week_label,
    weekly_dates,
)
from webhook.api_explain import explain_answer
from webhook.errors import ApiError
from webhook.host_session import check_csrf, csrf_token, session_host, sign_in, sign_out
from webhook.request_scope import app_settings, request_session

log = logging.getLogger("calsync.webhook.host_pages")

# Its script and stylesheet are the app's static files (webhook/static/, served at /static/).
host_pages = Blueprint("host_pages", __name__, template_folder="templates")

REFRESH_SECONDS = 3
LOG_DAYS = 7
NOTE_MAX = 500

# Scripts and styles only from this app's own files; nothing inline, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@host_pages.after_request
def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@host_pages.errorhandler(ApiError)
def _error_page(error: ApiError) -> Response | tuple[Response, int]:
    if request.path.startswith("/me/explain"):
        return error.to_response()
    html = render_template(
        "host_message.html", title="That did not work", problem=error.message, actions=[]
    )
    return Response(html, status=error.status, mimetype="text/html")


def _html(html: str, status: int = 200) -> Response:
    return Response(html, status=status, mimetype="text/html")


# Sign-in ------------------------------------------------------------------------------------

LINK_PROBLEMS = {
    LinkProblem.EXPIRED: (
        "This sign-in link has expired",
        "A sign-in link works for 15 minutes after it is made.",
    ),
    LinkProblem.USED: (
        "This sign-in link was already used",
        "A sign-in link works once. If that was not you, ask the operator to rotate your "
        "API token: that signs every browser out.",
    ),
    LinkProblem.UNKNOWN: (
        "This sign-in link is not valid",
        "Check that the whole link was copied.",
    ),
}


def _ask_for_link_actions() -> list[str]:
    return [
        "Ask the operator of calsync for a new sign-in link. They make one with "
        "`calsync hosts link HOST` or `POST /v1/hosts/HOST/sign-in-link`.",
    ]


@host_pages.get("/sign-in/<token>")
def open_sign_in_link(token: str) -> BaseResponse:
    session = request_session()
    check = use_sign_in_link(session, token, datetime.now(UTC))
    host = session.get(Host, check.host_id) if check.host_id is not None else None
    if check.problem is not None or host is None:
        title, problem = LINK_PROBLEMS[check.problem or LinkProblem.UNKNOWN]
        session.rollback()
        html = render_template(
            "host_message.html", title=title, problem=problem, actions=_ask_for_link_actions()
        )
        return _html(html, 410 if check.problem != LinkProblem.UNKNOWN else 404)
    session.commit()
    sign_in(host)
    log.info("host_signed_in host_id=%s", host.id)
    # The address bar must not keep the link: a redirect to a URL with no token at all.
    return redirect(url_for("host_pages.week_view"), code=303)


@host_pages.post("/sign-out")
def sign_out_view() -> BaseResponse:
    if session_host() is not None:
        check_csrf()
    sign_out()
    html = render_template(
        "host_message.html",
        title="You are signed out",
        problem="This browser no longer has access to your page.",
        actions=["To come back, open a new sign-in link."],
    )
    return _html(html)


def _signed_in() -> Host:
    host = session_host()
    if host is None:
        raise _NotSignedIn()
    return host


class _NotSignedIn(Exception):
    pass


@host_pages.errorhandler(_NotSignedIn)
def _sign_in_page(_error: _NotSignedIn) -> Response:
    if request.path.startswith("/me/explain") or request.path.startswith("/me/live"):
        return ApiError(401, "unauthorized", "Sign in again with a new link.").to_response()
    html = render_template(
        "host_message.html",
        title="Sign in to your calsync page",
        problem="This browser is not signed in (or your session ended: sessions last 30 days "
        "and end when your API token is rotated).",
        actions=_ask_for_link_actions(),
    )
    return _html(html, 401)


# Week view -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LegendItem:
    name: str
    colour_class: str


@dataclass(frozen=True)
class BlockForm:
    """The block form's values (as typed) and its problems, per field."""

    day: str
    start: str
    end: str
    note: str
    repeat_until: str
    errors: dict[str, str]
    block_id: int | None = None
    # A block longer than its first local day (made with the API): this form cannot hold it.
    spans_days: str = ""


def _empty_form(default_day: date) -> BlockForm:
    return BlockForm(default_day.isoformat(), "09:00", "10:00", "", "", {})


def _cards(host: Host, now: datetime) -> list[CalendarCard]:
    session = request_session()
    settings = app_settings()
    zone, _ = host_zone(host.time_zone)
    cards = []
    for index, calendar in enumerate(host_calendars(session, host.id)):
        status = calendar_status(session, calendar.calendar_id, now, runs=0)
        if status is None:
            continue
        reconnect = status.get("reconnectUrl") or (
            settings.public_url.rstrip("/") + f"/connect/google?host={host.id}"
        )
        cards.append(
            calendar_card(
                status,
                name=calendar.summary or calendar.google_calendar_id,
                now=now,
                zone=zone,
                reconnect_url=reconnect,
                polling_seconds=settings.poll_seconds,
                colour=CALENDAR_COLOURS[index % len(CALENDAR_COLOURS)],
            )
        )
    return cards


def _week_context(host: Host, monday: date, now: datetime) -> dict[str, Any]:
    session = request_session()
    zone, zone_name = host_zone(host.time_zone)
    cards = _cards(host, now)
    start = monday - timedelta(days=1)  # a span from Sunday night reaches into Monday
    time_min = datetime.combine(start, datetime.min.time(), tzinfo=UTC)
    time_max = time_min + timedelta(days=10)
    calendar_ids = [card.calendar_id for card in cards]
    per_calendar = busy_by_calendar(session, calendar_ids, time_min, time_max)
    colour_of = {
        card.calendar_id: index % len(CALENDAR_COLOURS) for index, card in enumerate(cards)
    }
    spans: list[Span] = []
    for card in cards:
        for interval in per_calendar[card.calendar_id]:
            spans.append(
                Span(
                    interval.start, interval.end, card.name, colour_of[card.calendar_id], "calendar"
                )
            )
    for event in nonblocking_events(session, calendar_ids, time_min, time_max):
        title = event.summary or "(no title)"
        spans.append(
            Span(
                event.start,
                event.end,
                f"{title} — {short_reason(event.reason)} (does not block)",
                colour_of.get(event.calendar_id, 0),
                "nonblocking",
            )
        )
    for block in manual_blocks_with_notes(session, host.id, time_min, time_max):
        label = "Blocked by you" + (f": {block.note}" if block.note else "")
        spans.append(Span(block.start, block.end, label, -1, "manual", block.block_id, block.note))
    days = week_grid(monday, zone, now, spans)
    legend = [LegendItem(card.name, f"c{colour_of[card.calendar_id]}") for card in cards]
    legend.append(LegendItem("Blocked by you", "manual"))
    attention = [card for card in cards if card.tone != "good"]
    return {
        "host": host,
        "zone_name": zone_name,
        "monday": monday,
        "week_label": week_label(monday),
        "previous_week": (monday - timedelta(days=7)).isoformat(),
        "next_week": (monday + timedelta(days=7)).isoformat(),
        "this_week": monday_of(now.astimezone(zone).date()),
        "days": days,
        "hours": [f"{hour:02d}:00" for hour in range(24)],
        "legend": legend,
        "cards": cards,
        "attention": attention,
        "data_as_of": local_text(now, zone, seconds=True),
        "data_as_of_iso": now.isoformat(),
        "refresh_seconds": REFRESH_SECONDS,
        "csrf_token": csrf_token(),
        "booking_tool": connection_values(app_settings().public_url, host.id, ""),
        "has_feed_token": host.feed_token_hash is not None,
    }


def _render_week(host: Host, monday: date, form: BlockForm | None, status: int = 200) -> Response:
    now = datetime.now(UTC)
    zone, _ = host_zone(host.time_zone)
    context = _week_context(host, monday, now)
    today = now.astimezone(zone).date()
    default_day = today if monday <= today < monday + timedelta(days=7) else monday
    html = render_template(
        "host_week.html",
        **context,
        form=form or _empty_form(default_day),
        clocks=clock_choices(),
        messages=get_flashed_messages(),
    )
    return _html(html, status)


@host_pages.get("/me")
def week_view() -> Response:
    host = _signed_in()
    zone, _ = host_zone(host.time_zone)
    monday = parse_week(request.args.get("week"), datetime.now(UTC).astimezone(zone).date())
    return _render_week(host, monday, None)


@host_pages.get("/me/live")
def live_fragment() -> Response:
    """The part of the week view that changes by itself (banners, freshness, grid): the
    page's script fetches it every few seconds and swaps it in."""
    host = _signed_in()
    zone, _ = host_zone(host.time_zone)
    monday = parse_week(request.args.get("week"), datetime.now(UTC).astimezone(zone).date())
    context = _week_context(host, monday, datetime.now(UTC))
    return _html(render_template("host_live.html", **context))


@host_pages.get("/me/explain")
def explain_slot() -> Response:
    """Why the quarter hour at ?date=YYYY-MM-DD&time=HH:MM (host's zone) is (not) free."""
    host = _signed_in()
    zone, _ = host_zone(host.time_zone)
    try:
        day = date.fromisoformat(request.args.get("date", ""))
    except ValueError:
        raise ApiError(400, "invalid_date", "Send ?date=YYYY-MM-DD.") from None
    minutes = parse_clock(request.args.get("time", ""))
    if minutes is None or minutes >= 24 * 60:
        raise ApiError(400, "invalid_time", "Send ?time=HH:MM on a quarter hour.")
    start, end = local_range(day, minutes, minutes + 15, zone)
    middle = start + (end - start) / 2
    answer = explain_answer(host.id, middle, (end - start) / 2)
    items = []
    for item in answer["items"]:
        title = item["summary"] or ("Blocked by you" if item["type"] == "manual" else "(no title)")
        items.append(
            {
                "title": title,
                "busy": item["busy"],
                "short": short_reason(item["reason"])
                if item["type"] == "event"
                else "blocked by you",
                "explanation": item["explanation"],
            }
        )
    return jsonify(
        {
            "slot": f"{day.strftime('%a %d %b')}, {clock_text(start, zone, day)}\u2013"
            f"{clock_text(end, zone, day)}",
            "busy": any(item["busy"] for item in items),
            "items": items,
            "calendars": [
                {"explanation": c["explanation"], "coverage": c["coverage"]}
                for c in answer["calendars"]
                if c["coverage"] != "synced"
            ],
        }
    )


# Manual blocks -------------------------------------------------------------------------------


def _form_from_request(block_id: int | None = None) -> BlockForm:
    return BlockForm(
        day=request.form.get("date", "").strip(),
        start=request.form.get("start", "").strip(),
        end=request.form.get("end", "").strip(),
        note=request.form.get("note", "").strip(),
        repeat_until=request.form.get("repeat_until", "").strip(),
        errors={},
        block_id=block_id,
    )


@dataclass(frozen=True)
class ParsedBlock:
    days: list[date]
    start_minutes: int
    end_minutes: int
    note: str


def _parse_form(form: BlockForm, allow_repeat: bool) -> ParsedBlock | BlockForm:
    """The form's values checked; the form with its problems when they don't make sense."""
    errors: dict[str, str] = {}
    day: date | None = None
    try:
        day = date.fromisoformat(form.day)
    except ValueError:
        errors["date"] = "Give a date like 2026-12-08."
    start, end = parse_clock(form.start), parse_clock(form.end)
    if start is None or start >= 24 * 60:
        errors["start"] = "Pick a start time on a quarter hour (e.g. 14:00 or 14:15)."
    if end is None or end == 0:
        errors["end"] = "Pick an end time on a quarter hour (e.g. 16:30)."
    both_times = start is not None and end is not None and not errors.keys() & {"start", "end"}
    if both_times and end <= start:  # type: ignore[operator]
        errors["end"] = "The end must be after the start."
    if len(form.note) > NOTE_MAX:
        errors["note"] = f"Keep the note under {NOTE_MAX} characters."
    until: date | None = None
    if form.repeat_until and allow_repeat:
        try:
            until = date.fromisoformat(form.repeat_until)
        except ValueError:
            errors["repeat_until"] = "Give a date like 2027-03-01, or leave it empty."
        else:
            if day is not None and until < day:
                errors["repeat_until"] = "Repeat until a date on or after the first day."
            elif day is not None and until > day + timedelta(days=366):
                errors["repeat_until"] = "Repeat for a year at most."
    if errors or day is None or start is None or end is None:
        return BlockForm(**{**form.__dict__, "errors": errors})
    return ParsedBlock(weekly_dates(day, until), start, end, form.note)


def _utc_ranges(parsed: ParsedBlock, form: BlockForm, zone: Any) -> list[tuple] | BlockForm:
    """Each day's [start, end) in UTC; the form with a problem when the clocks change inside
    the range so that nothing (or less than nothing) is left of it that day."""
    ranges = []
    for day in parsed.days:
        start, end = local_range(day, parsed.start_minutes, parsed.end_minutes, zone)
        if end <= start:
            problem = (
                f"On {day.strftime('%a %d %b')} the clocks change and {form.start}\u2013"
                f"{form.end} does not exist; pick another time."
            )
            return BlockForm(**{**form.__dict__, "errors": {"start": problem}})
        ranges.append((start, end))
    return ranges


def _week_of(day_text: str, host: Host) -> date:
    zone, _ = host_zone(host.time_zone)
    return parse_week(day_text, datetime.now(UTC).astimezone(zone).date())


@host_pages.post("/me/blocks")
def create_block() -> BaseResponse:
    host = _signed_in()
    check_csrf()
    form = _form_from_request()
    parsed = _parse_form(form, allow_repeat=True)
    if isinstance(parsed, BlockForm):
        return _render_week(host, _week_of(form.day, host), parsed, 400)
    zone, _ = host_zone(host.time_zone)
    ranges = _utc_ranges(parsed, form, zone)
    if isinstance(ranges, BlockForm):
        return _render_week(host, _week_of(form.day, host), ranges, 400)
    session = request_session()
    for start, end in ranges:
        session.add(ManualBlock(host_id=host.id, start=start, end=end, note=parsed.note))
    session.commit()
    first = parsed.days[0]
    times = f"{form.start}\u2013{form.end}"
    repeat = (
        f", every week until {parsed.days[-1].strftime('%a %d %b')}" if len(parsed.days) > 1 else ""
    )
    flash(f"Blocked {first.strftime('%a %d %b')} {times}{repeat}.")
    return redirect(url_for("host_pages.week_view", week=first.isoformat()), code=303)


def _own_block(host: Host, block_id: int) -> ManualBlock:
    block = request_session().get(ManualBlock, block_id)
    if block is None or block.host_id != host.id:
        raise ApiError(404, "not_found", "There is no such block on your page.")
    return block


def _form_of(block: ManualBlock, host: Host) -> BlockForm:
    zone, _ = host_zone(host.time_zone)
    day = block.start.astimezone(zone).date()
    spans_days = ""
    if block.end > local_midnight(day + timedelta(days=1), zone):
        spans_days = (
            f"{local_text(block.start, zone)} to {local_text(block.end, zone)}: longer than "
            "one day, so this form cannot change it. Delete it here, or change it with the API."
        )
    return BlockForm(
        day.isoformat(),
        clock_text(block.start, zone, day),
        clock_text(block.end, zone, day),
        block.note or "",
        "",
        {},
        block.id,
        spans_days,
    )


def _render_edit(host: Host, form: BlockForm, status: int = 200) -> Response:
    html = render_template(
        "host_block.html",
        host=host,
        form=form,
        clocks=clock_choices(),
        csrf_token=csrf_token(),
        zone_name=host_zone(host.time_zone)[1],
    )
    return _html(html, status)


@host_pages.get("/me/blocks/<int:block_id>")
def edit_block(block_id: int) -> Response:
    host = _signed_in()
    return _render_edit(host, _form_of(_own_block(host, block_id), host))


@host_pages.post("/me/blocks/<int:block_id>")
def update_block(block_id: int) -> BaseResponse:
    host = _signed_in()
    block = _own_block(host, block_id)
    check_csrf()
    if _form_of(block, host).spans_days:
        raise ApiError(
            400, "spans_days", "This block is longer than a day; change it with the API."
        )
    form = _form_from_request(block_id)
    parsed = _parse_form(form, allow_repeat=False)
    if isinstance(parsed, BlockForm):
        return _render_edit(host, parsed, 400)
    zone, _ = host_zone(host.time_zone)
    ranges = _utc_ranges(parsed, form, zone)
    if isinstance(ranges, BlockForm):
        return _render_edit(host, ranges, 400)
    block.start, block.end = ranges[0]
    block.note = parsed.note
    request_session().commit()
    flash(f"Block changed to {parsed.days[0].strftime('%a %d %b')} {form.start}\u2013{form.end}.")
    return redirect(url_for("host_pages.week_view", week=parsed.days[0].isoformat()), code=303)


@host_pages.post("/me/blocks/<int:block_id>/delete")
def delete_block(block_id: int) -> BaseResponse:
    host = _signed_in()
    block = _own_block(host, block_id)
    check_csrf()
    zone, _ = host_zone(host.time_zone)
    day = block.start.astimezone(zone).date()
    session = request_session()
    session.delete(block)
    session.commit()
    flash(f"Block on {day.strftime('%a %d %b')} deleted.")
    return redirect(url_for("host_pages.week_view", week=day.isoformat()), code=303)


# Booking tool --------------------------------------------------------------------------------


@host_pages.post("/me/booking-tool")
def new_booking_tool_password() -> Response:
    """A new feed token (the booking tool's password), shown on this answer only: the old
    one stops working, so a connected booking tool needs the new values."""
    host = _signed_in()
    check_csrf()
    session = request_session()
    token = rotate_feed_token(session, host)
    session.commit()
    log.info("host_feed_token_rotated host_id=%s by=session", host.id)
    values = connection_values(app_settings().public_url, host.id, token)
    html = render_template(
        "host_booking_tool.html", host=host, values=values, csrf_token=csrf_token()
    )
    return _html(html)


# Sync log ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogRow:
    facts: RunFacts
    local_time: str
    iso: str
    failed: bool


@dataclass(frozen=True)
class LogFilter:
    """`?failures=1` and `?calendar=ID` of the log and its CSV."""

    failures_only: bool
    calendar_id: int | None

    def query(self, **extra: Any) -> dict[str, Any]:
        """The filter as query arguments for a link (only what is set)."""
        args: dict[str, Any] = {}
        if self.failures_only:
            args["failures"] = 1
        if self.calendar_id is not None:
            args["calendar"] = self.calendar_id
        return {**args, **extra}


def _log_filter(names: dict[int, str]) -> LogFilter:
    calendar_text = request.args.get("calendar", "")
    calendar_id = None
    if calendar_text:
        calendar_id = int(calendar_text) if calendar_text.isdigit() else -1
        if calendar_id not in names:
            raise ApiError(404, "not_found", "There is no such calendar on your page.")
    return LogFilter(request.args.get("failures") == "1", calendar_id)


def _calendar_names(host: Host) -> dict[int, str]:
    return {
        c.calendar_id: c.summary or c.google_calendar_id
        for c in host_calendars(request_session(), host.id)
    }


def _log_rows(host: Host, now: datetime, names: dict[int, str], chosen: LogFilter) -> list[LogRow]:
    zone, _ = host_zone(host.time_zone)
    since = now - timedelta(days=LOG_DAYS)
    found = host_runs(
        request_session(),
        host.id,
        since,
        failures_only=chosen.failures_only,
        calendar_id=chosen.calendar_id,
    )
    rows = []
    for run, calendar_id in found:
        error = None
        if run.error_code or run.error_message:
            error, _fix = error_words(
                {"code": run.error_code or "", "message": run.error_message or ""}
            )
        facts = RunFacts(
            calendar=names.get(calendar_id, f"calendar {calendar_id}"),
            started_at=run.started_at,
            kind=run.kind,
            trigger=run.trigger,
            events_seen=run.events_seen,
            blocks_added=run.blocks_upserted,
            blocks_removed=run.blocks_deleted,
            duration_ms=run.duration_ms,
            lag_ms=run.notification_lag_ms,
            outcome=run.outcome,
            error=error,
        )
        rows.append(
            LogRow(
                facts,
                local_text(run.started_at, zone, seconds=True),
                run.started_at.isoformat(),
                is_failure(run.outcome),
            )
        )
    return rows


@host_pages.get("/me/log")
def sync_log() -> Response:
    host = _signed_in()
    now = datetime.now(UTC)
    zone, zone_name = host_zone(host.time_zone)
    names = _calendar_names(host)
    chosen = _log_filter(names)
    since = now - timedelta(days=LOG_DAYS)
    rows = _log_rows(host, now, names, chosen)
    # The summary covers every run of the chosen calendars, also when only failures show.
    everything = LogFilter(False, chosen.calendar_id)
    all_rows = _log_rows(host, now, names, everything) if chosen.failures_only else rows
    session = request_session()
    audits = [
        {
            "calendar": names.get(audit.calendar_id, str(audit.calendar_id)),
            "at": local_text(audit.at, zone),
            "outcome": audit.outcome,
            "words": "Matched Google"
            if audit.matched
            else f"Differed from Google by {seconds_text(int(audit.differing_seconds * 1000))}",
        }
        for audit in host_audits(session, host.id, since)
        if chosen.calendar_id in (None, audit.calendar_id)
    ]
    renewals = host_channel_openings(session, host.id, since, calendar_id=chosen.calendar_id)
    html = render_template(
        "host_log.html",
        host=host,
        zone_name=zone_name,
        rows=rows,
        chosen=chosen,
        calendars=names,
        summary=week_summary([row.facts for row in all_rows], renewals, zone),
        audits=audits,
        seconds_text=seconds_text,
        csrf_token=csrf_token(),
        data_as_of=local_text(now, zone, seconds=True),
    )
    return _html(html)


CSV_COLUMNS = (
    "started_at",
    "calendar",
    "kind",
    "trigger",
    "events_seen",
    "blocks_added",
    "blocks_removed",
    "duration_ms",
    "lag_ms",
    "outcome",
    "error",
)


@host_pages.get("/me/log.csv")
def sync_log_csv() -> Response:
    host = _signed_in()
    names = _calendar_names(host)
    rows = _log_rows(host, datetime.now(UTC), names, _log_filter(names))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        f = row.facts
        writer.writerow(
            [
                row.iso,
                f.calendar,
                f.kind,
                f.trigger or "",
                f.events_seen,
                f.blocks_added,
                f.blocks_removed,
                "" if f.duration_ms is None else f.duration_ms,
                "" if f.lag_ms is None else f.lag_ms,
                f.outcome,
                f.error or "",
            ]
        )
    response = Response(out.getvalue(), mimetype="text/csv")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    response.headers["Content-Disposition"] = f'attachment; filename="calsync-sync-log-{stamp}.csv"'
    return response
