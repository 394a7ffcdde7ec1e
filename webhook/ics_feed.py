"""`GET /feeds/{host}/{feedToken}.ics`: a host's busy time as an ICS feed (iCalendar), for
booking tools and calendar apps that subscribe to a URL (Cal.com's ICS-feed app, Google or
Outlook subscriptions). They send no headers, so the feed token is in the path.

One VEVENT per busy source from now - 1 day to now + CALSYNC_FEED_DAYS (rules/busy_feed.py);
`?freebusy=1` answers one VFREEBUSY instead. Stale calendars are named in `X-CALSYNC-STALE`
and in words in `X-WR-CALDESC`; `?strict=1` answers 503 while any calendar is stale, for a
tool that treats an error as "busy". The ETag is a hash of the body (which follows from the
busy set and freshness alone), so `If-None-Match` answers 304 until something changes.
A wrong, rotated or another host's token answers 404, as an unknown host does.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, request

from rules.busy_feed import body_etag, busy_calendar, freebusy_calendar
from webhook.auth import feed_token_host
from webhook.errors import ApiError
from webhook.feed_data import feed_window, host_staleness, window_sources
from webhook.request_scope import app_settings, read_only_session

ics_feed = Blueprint("ics_feed", __name__)

FEED_PATH = "/feeds/<int:host_id>/<string:feed_file>"
ICS_CONTENT_TYPE = "text/calendar; charset=utf-8"
# The URL holds a secret, so no shared cache may keep the answer; a client keeps it but
# asks again every time (If-None-Match makes that cheap): a change reaches it at once.
CACHE_CONTROL = "private, no-cache"
_TRUE = {"1", "true", "yes"}


def _flag(name: str) -> bool:
    return request.args.get(name, "").lower() in _TRUE


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "No such feed. Ask the host for a new link.")


def feed_now() -> datetime:
    """Now, to the minute: the window (and a VFREEBUSY's bounds) move once a minute, so
    repeated fetches within a minute get the same bytes and ETag."""
    return datetime.now(UTC).replace(second=0, microsecond=0)


@ics_feed.get(FEED_PATH)
def feed(host_id: int, feed_file: str) -> Response:
    if not feed_file.endswith(".ics"):
        raise _not_found()
    session = read_only_session()
    host = feed_token_host(host_id, feed_file.removesuffix(".ics"))
    if host is None:
        raise _not_found()
    now = feed_now()
    window = feed_window(now, app_settings().feed_days)
    freshness = host_staleness(session, host.id, now)
    if _flag("strict") and freshness.stale:
        names = ", ".join(f"{c.google_calendar_id} ({c.state})" for c in freshness.stale)
        raise ApiError(
            503,
            "stale_calendars",
            f"Busy time may be wrong: calendar {names} is not up to date. Retry later.",
            headers={"Retry-After": "30"},
        )
    sources = window_sources(session, host.id, window.start, window.end, freshness)
    if _flag("freebusy"):
        body = freebusy_calendar(
            sources,
            window.start,
            window.end,
            stamp=now,
            uid=f"freebusy-{host.id}@calsync",
            stale=freshness.stale,
        )
    else:
        body = busy_calendar(sources, freshness.stale)
    etag = body_etag(body)
    last_modified = max((s.changed_at for s in sources), default=host.created_at)
    if request.if_none_match.contains_weak(etag.strip('"')):
        response = Response(status=304)
    else:
        response = Response(body, content_type=ICS_CONTENT_TYPE)
    response.headers["ETag"] = etag
    response.last_modified = last_modified
    response.headers["Cache-Control"] = CACHE_CONTROL
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
