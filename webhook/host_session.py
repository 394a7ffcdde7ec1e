"""The host pages' session: a cookie signed by Flask (itsdangerous), set by a one-time
sign-in link, carrying the host id, its session epoch and a CSRF token.

The cookie is HttpOnly, SameSite=Lax, Secure unless the public URL is plain http, and lasts
30 days. Rotating the host's API token bumps the host's epoch: every cookie issued before
stops working. Forms carry the session's CSRF token; a POST without it is refused.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from flask import Flask, g, request, session

from core.settings import Settings
from models.credentials_box import signing_key
from models.hosts import Host
from webhook.errors import ApiError
from webhook.request_scope import request_session

SESSION_LIFETIME = timedelta(days=30)
COOKIE_NAME = "calsync_session"
CSRF_FIELD = "csrf_token"


def init_app(app: Flask, settings: Settings) -> None:
    # CALSYNC_SESSION_SECRET, else a key derived from CALSYNC_SECRET_KEY for this purpose only.
    app.secret_key = settings.session_secret or signing_key("host-session", settings).hex()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=not settings.public_url.startswith("http://"),
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        # Only the sign-in and sign-out change the cookie: reads don't re-send it.
        SESSION_REFRESH_EACH_REQUEST=False,
    )


def sign_in(host: Host) -> None:
    """Start a fresh session for `host` (a new CSRF token; nothing of an earlier one kept)."""
    session.clear()
    session.permanent = True
    session["host"] = host.id
    session["epoch"] = host.session_epoch or 0
    session["born"] = _born(host)
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def _born(host: Host) -> int:
    """When the host was created (microseconds): a database that reuses a deleted host's id
    (SQLite may) must not hand the new host to the old host's cookie."""
    return int(host.created_at.timestamp() * 1_000_000)


def sign_out() -> None:
    session.clear()


def session_host() -> Host | None:
    """The signed-in host, if the cookie is valid and not revoked (token rotated)."""
    if "calsync_session_host" in g:
        return g.calsync_session_host
    host = None
    host_id, epoch = session.get("host"), session.get("epoch")
    if isinstance(host_id, int) and isinstance(epoch, int):
        found = request_session().get(Host, host_id)
        if (
            found is not None
            and (found.session_epoch or 0) == epoch
            and session.get("born") == _born(found)
        ):
            host = found
    g.calsync_session_host = host
    return host


def csrf_token() -> str:
    token = session.get(CSRF_FIELD)
    return token if isinstance(token, str) else ""


def check_csrf() -> None:
    """Refuse a form whose CSRF token is missing or not this session's (400)."""
    expected = csrf_token()
    sent = request.form.get(CSRF_FIELD, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ApiError(
            400,
            "csrf_failed",
            "This form is out of date or was not sent by your page. Reload the page and try again.",
        )
