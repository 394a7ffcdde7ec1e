"""The week view `/me`, its live part `/me/live`, the popover's `/me/explain`, and a new
booking-tool password."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import (
    Response,
    get_flashed_messages,
    jsonify,
    render_template,
    request,
)

from models import Host
from models.registry import rotate_feed_token
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
    host_zone,
    local_text,
)
from rules.week_grid import (
    Span,
    clock_choices,
    clock_text,
    local_range,
    monday_of,
    parse_clock,
    parse_week,
    short_reason,
    week_grid,
    week_label,
)
from webhook.api_explain import explain_answer
from webhook.errors import ApiError
from webhook.host_pages.block_form import BlockForm, empty_form
from webhook.host_pages.common import (
    REFRESH_SECONDS,
    host_pages,
    html_page,
    signed_in,
)
from webhook.host_session import check_csrf, csrf_token
from webhook.request_scope import app_settings, request_session

log = logging.getLogger("calsync.webhook.host_pages")


@dataclass(frozen=True)
class LegendItem:
    name: str
    colour_class: str


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


def render_week(host: Host, monday: date, form: BlockForm | None, status: int = 200) -> Response:
    now = datetime.now(UTC)
    zone, _ = host_zone(host.time_zone)
    context = _week_context(host, monday, now)
    today = now.astimezone(zone).date()
    default_day = today if monday <= today < monday + timedelta(days=7) else monday
    html = render_template(
        "host_week.html",
        **context,
        form=form or empty_form(default_day),
        clocks=clock_choices(),
        messages=get_flashed_messages(),
    )
    return html_page(html, status)


@host_pages.get("/me")
def week_view() -> Response:
    host = signed_in()
    zone, _ = host_zone(host.time_zone)
    monday = parse_week(request.args.get("week"), datetime.now(UTC).astimezone(zone).date())
    return render_week(host, monday, None)


@host_pages.get("/me/live")
def live_fragment() -> Response:
    """The part of the week view that changes by itself (banners, freshness, grid): the
    page's script fetches it every few seconds and swaps it in."""
    host = signed_in()
    zone, _ = host_zone(host.time_zone)
    monday = parse_week(request.args.get("week"), datetime.now(UTC).astimezone(zone).date())
    context = _week_context(host, monday, datetime.now(UTC))
    return html_page(render_template("host_live.html", **context))


@host_pages.get("/me/explain")
def explain_slot() -> Response:
    """Why the quarter hour at ?date=YYYY-MM-DD&time=HH:MM (host's zone) is (not) free."""
    host = signed_in()
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


@host_pages.post("/me/booking-tool")
def new_booking_tool_password() -> Response:
    """A new feed token (the booking tool's password), shown on this answer only: the old
    one stops working, so a connected booking tool needs the new values."""
    host = signed_in()
    check_csrf()
    session = request_session()
    token = rotate_feed_token(session, host)
    session.commit()
    log.info("host_feed_token_rotated host_id=%s by=session", host.id)
    values = connection_values(app_settings().public_url, host.id, token)
    html = render_template(
        "host_booking_tool.html", host=host, values=values, csrf_token=csrf_token()
    )
    return html_page(html)
