"""GET /status/{host}: the sync status as a page a host reads in a browser.

Server-rendered, no JavaScript, refreshes itself every 30 seconds. Opened with
`?token=<the host's feed token>` (a URL never carries an admin or API token; those only as a
Bearer header). The feed token appears in the reconnect link to this service's own connect
flow (which accepts it) and, folded away until opened, as the password and in the ICS URL of
"Connect to Cal.com" (it is the token already in the page's address); and the page asks
browsers not to send its address onward as Referer. Opened with a bearer header, the page
shows no token at all: "Connect to Cal.com" then says how to get the password.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from flask import Blueprint, Response, render_template, request

from core.settings import Settings
from models.busy_queries import host_busy
from models.hosts import Host
from models.status_view import busy_by_calendar, host_calendars, manual_blocks_with_notes
from models.sync_status import calendar_status
from rules.busy_feed import connection_values
from rules.status_presenter import (
    CALENDAR_COLOURS,
    MANUAL_COLOUR,
    Source,
    calendar_card,
    day_windows,
    host_zone,
    local_text,
    timeline,
)
from webhook.api_schemas import parse_id
from webhook.auth import page_access, url_token
from webhook.errors import ApiError
from webhook.request_scope import app_settings, request_session

REFRESH_SECONDS = 30
TIMELINE_DAYS = 7

status_page = Blueprint("status_page", __name__, template_folder="templates")

# No script may run, styles only inline; the URL (with its token) is never sent as Referer.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def _page(html: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = Response(html, status=status, mimetype="text/html")
    response.headers.update(SECURITY_HEADERS)
    response.headers.update(headers or {})
    return response


@status_page.get("/status/<host_ref>")
def host_status(host_ref: str) -> Response:
    host_id = parse_id(host_ref)
    try:
        if host_id is None:
            raise ApiError(404, "not_found", "No such host.")
        access = page_access(host_id)
    except ApiError as error:
        if error.status == 401:
            html = render_template(
                "status_message.html",
                title="This page needs your calsync token",
                problem="The token in this link is not valid."
                if url_token() or request.headers.get("Authorization")
                else "This link has no token.",
                open_path=f"/status/{host_id}" if host_id else "/status/HOST",
            )
            return _page(html, 401, error.headers)
        html = render_template(
            "status_message.html",
            title="No such status page",
            problem=f"There is no host {host_ref} that this token may see.",
            open_path=None,
        )
        return _page(html, 404)
    return _page(_render_host(access.host, access.feed_token))


def _with_token(url: str, token: str | None, settings: Settings) -> str:
    if not token or not url.startswith(settings.public_url.rstrip("/") + "/"):
        return url
    return url + ("&" if "?" in url else "?") + urlencode({"token": token})


@dataclass(frozen=True)
class ConnectValues:
    """What a host pastes into a booking tool. `password` and `ics_url` only when the page
    was opened with the feed token (the password itself): never an admin or API token."""

    caldav_url: str
    username: str
    password: str | None
    ics_url: str | None


def connect_values(settings: Settings, host_id: int, feed_token: str | None) -> ConnectValues:
    values = connection_values(settings.public_url, host_id, feed_token or "")
    return ConnectValues(
        caldav_url=str(values["caldavUrl"]),
        username=str(values["username"]),
        password=feed_token or None,
        ics_url=str(values["icsUrl"]) if feed_token else None,
    )


def _render_host(host: Host, link_token: str | None) -> str:
    session = request_session()
    settings = app_settings()
    now = datetime.now(UTC)
    zone, zone_name = host_zone(host.time_zone)
    # The connect flow accepts the same feed token; only the feed token this page was opened
    # with (never a header's admin or API token) goes into its link, and only to this
    # service's own public address.
    fallback_reconnect = (
        settings.public_url.rstrip("/") + "/connect/google?" + urlencode({"host": host.id})
    )
    calendars = host_calendars(session, host.id)
    cards = []
    for index, calendar in enumerate(calendars):
        status = calendar_status(session, calendar.calendar_id, now, runs=0)
        if status is None:  # removed between the two reads
            continue
        cards.append(
            calendar_card(
                status,
                name=calendar.summary or calendar.google_calendar_id,
                now=now,
                zone=zone,
                reconnect_url=_with_token(
                    status.get("reconnectUrl") or fallback_reconnect, link_token, settings
                ),
                polling_seconds=settings.poll_seconds,
                colour=CALENDAR_COLOURS[index % len(CALENDAR_COLOURS)],
            )
        )

    windows = day_windows(now, zone, TIMELINE_DAYS)
    time_min, time_max = windows[0][1], windows[-1][2]
    per_calendar = busy_by_calendar(session, [c.calendar_id for c in cards], time_min, time_max)
    sources = [
        Source(
            card.name,
            card.colour,
            "calendar",
            [(i.start, i.end, "") for i in per_calendar[card.calendar_id]],
        )
        for card in cards
    ]
    manual = manual_blocks_with_notes(session, host.id, time_min, time_max)
    sources.append(
        Source("Manual blocks", MANUAL_COLOUR, "manual", [(b.start, b.end, b.note) for b in manual])
    )
    all_busy = [(i.start, i.end) for i in host_busy(session, host.id, time_min, time_max)]
    days = timeline(sources, all_busy, now=now, zone=zone, days=TIMELINE_DAYS)

    attention = [card for card in cards if card.tone != "good"]
    return render_template(
        "status.html",
        host=host,
        zone_name=zone_name,
        cards=cards,
        attention=attention,
        sources=sources,
        days=days,
        refresh_seconds=REFRESH_SECONDS,
        data_as_of=local_text(now, zone, seconds=True),
        data_as_of_iso=now.isoformat(),
        connect=connect_values(settings, host.id, link_token),
    )
