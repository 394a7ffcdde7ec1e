"""Who may call: bearer tokens for the /v1 API, and the pages a browser opens.

Scopes: the admin token (CALSYNC_ADMIN_TOKEN) may do everything; a host's API token reaches
only its own host and calendars; both only ever as an `Authorization: Bearer` header. A URL
(`?token=`) may carry only a host's feed token: read-only, one host, and accepted only by the
pages a browser or calendar client opens without headers (status page, connect flow). So an
admin or API token never ends up in a browser history, a proxy log or a Referer. Another
host's resources answer 404, so ids cannot be probed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from flask import g, request
from sqlalchemy import bindparam, select

from models import Calendar, Host
from models.registry import FEED_TOKEN_PREFIX, hash_api_token
from webhook.errors import ApiError
from webhook.host_session import session_host
from webhook.request_scope import app_settings, request_session

_HOST_BY_TOKEN_HASH = select(Host).where(Host.api_token_hash == bindparam("hash"))
_HOST_BY_FEED_TOKEN_HASH = select(Host).where(Host.feed_token_hash == bindparam("hash"))


@dataclass(frozen=True)
class Caller:
    is_admin: bool
    host_id: int | None  # the host a host token belongs to
    host: Host | None = None  # its row, loaded with the token: require_host needs no query


def _presented_token() -> str | None:
    """The bearer token of the Authorization header; a token in the URL is never one."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def url_token() -> str | None:
    """The `?token=` of a page's address (only ever checked as a feed token)."""
    return request.args.get("token") or None


def current_caller() -> Caller:
    """Who is calling; 401 without a valid token."""
    cached = g.get("calsync_caller")
    if cached is not None:
        return cached
    token = _presented_token()
    if token is None:
        raise ApiError(
            401,
            "unauthorized",
            "Send 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": 'Bearer realm="calsync"'},
        )
    admin = app_settings().admin_token
    if admin and hmac.compare_digest(token.encode(), admin.encode()):
        caller = Caller(True, None)
    else:
        # The whole row, not just the id: require_host then needs no second query.
        host = request_session().scalar(_HOST_BY_TOKEN_HASH, {"hash": hash_api_token(token)})
        if host is None:
            raise ApiError(
                401,
                "unauthorized",
                "The token is not valid.",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        caller = Caller(False, host.id, host)
    g.calsync_caller = caller
    return caller


def require_admin() -> Caller:
    caller = current_caller()
    if not caller.is_admin:
        raise ApiError(403, "forbidden", "Only the operator's admin token may do this.")
    return caller


def require_host(host_id: int) -> Host:
    """The host, if the caller may see it; 404 otherwise (also for another host's id)."""
    caller = current_caller()
    if caller.host is not None and caller.host_id == host_id:
        return caller.host
    host = request_session().get(Host, host_id) if caller.is_admin else None
    if host is None:
        raise ApiError(404, "not_found", f"No host {host_id}.")
    return host


def require_calendar(calendar_id: int) -> Calendar:
    """The calendar, if the caller may see it; 404 otherwise."""
    caller = current_caller()
    calendar = request_session().get(Calendar, calendar_id)
    if calendar is None or not (caller.is_admin or caller.host_id == calendar.host_id):
        raise ApiError(404, "not_found", f"No calendar {calendar_id}.")
    return calendar


@dataclass(frozen=True)
class PageAccess:
    host: Host
    # The feed token the page was opened with, for its own links; None with a header.
    feed_token: str | None


def page_access(host_id: int) -> PageAccess:
    """Access to a page of `host_id` opened in a browser: a bearer header (admin or the
    host's API token), else `?token=` holding this host's feed token, else the host's
    signed-in session (webhook/host_session.py). 401 without a valid one, 404 for another
    host's feed token."""
    if request.headers.get("Authorization"):
        return PageAccess(require_host(host_id), None)
    token = url_token()
    signed_in = session_host() if token is None else None
    if signed_in is not None and signed_in.id == host_id:
        return PageAccess(signed_in, None)
    if token is None:
        raise ApiError(
            401,
            "unauthorized",
            "Open this page with ?token=<the host's feed token>, or send a bearer header.",
            headers={"WWW-Authenticate": 'Bearer realm="calsync"'},
        )
    host = request_session().scalar(_HOST_BY_FEED_TOKEN_HASH, {"hash": hash_api_token(token)})
    if host is None:
        raise ApiError(
            401,
            "unauthorized",
            "The token in this link is not valid. A link carries only a host's feed token, "
            "never an admin or API token.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    if host.id != host_id:
        raise ApiError(404, "not_found", f"No host {host_id}.")
    return PageAccess(host, token)


def feed_token_host(host_id: int, token: str) -> Host | None:
    """The host `token` is the feed token of, if it is `host_id`; None otherwise (a wrong,
    rotated or another host's token: the caller answers without saying which)."""
    if not token.startswith(FEED_TOKEN_PREFIX) or len(token) > 200:
        return None
    host = request_session().scalar(_HOST_BY_FEED_TOKEN_HASH, {"hash": hash_api_token(token)})
    if host is None or host.id != host_id:
        return None
    return host
