"""Bearer-token access for the /v1 API and the status page.

The admin token (CALSYNC_ADMIN_TOKEN) may do everything; a host's token reaches only its own
host and calendars. Another host's resources answer 404, so ids cannot be probed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from flask import g, request
from sqlalchemy import bindparam, select

from models import Calendar, Host
from models.registry import hash_api_token
from webhook.errors import ApiError
from webhook.request_scope import app_settings, request_session

_HOST_BY_TOKEN_HASH = select(Host).where(Host.api_token_hash == bindparam("hash"))


@dataclass(frozen=True)
class Caller:
    is_admin: bool
    host_id: int | None  # the host a host token belongs to
    host: Host | None = None  # its row, loaded with the token: require_host needs no query


def _presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # The status page is opened by a person in a browser: allow ?token= there.
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
