"""Browser OAuth connect flow: a host grants calsync read access to its Google calendar.

`GET /connect/google?host=<id>&token=<host or admin token>[&calendar=<id>][&account=<id>]`
redirects to Google's consent page; Google sends the browser back to
`GET /connect/google/callback?code=&state=`, where the code is exchanged for a refresh token
that is stored encrypted. Then a sync and a watch are enqueued (the web process never calls
the Calendar API itself) and a small page says it worked.

`state` is signed and short-lived, carries the host (and the account being reconnected), and
is bound to the browser by a nonce in an HttpOnly cookie, so a code obtained by someone else
cannot be planted into this host (login CSRF).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from html import escape
from urllib.parse import urlsplit

from flask import Blueprint, Response, redirect, request
from google_auth_oauthlib.flow import Flow
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from core.settings import Settings
from models import Calendar, GoogleAccount
from models.credentials_box import CredentialsError, signing_key
from models.registry import attach_calendar, replace_credentials
from webhook.auth import require_host
from webhook.errors import ApiError
from webhook.request_scope import app_settings, request_session
from worker import enqueue as task_queue

log = logging.getLogger("calsync.webhook.oauth")

oauth_connect = Blueprint("oauth_connect", __name__)

SCOPES = ["https://www.googleapis.com/auth/calendar.readonly"]
# Either grant lets us read events; Google may answer with more scopes than asked.
READ_SCOPES = {
    "https://www.googleapis.com/auth/calendar.readonly",
    "https://www.googleapis.com/auth/calendar",
}
STATE_MAX_AGE_SECONDS = 15 * 60
COOKIE = "calsync_oauth"
CALLBACK_PATH = "/connect/google/callback"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(signing_key("oauth-connect", settings), salt="oauth-state")


def _callback_url(settings: Settings) -> str:
    return settings.public_url.rstrip("/") + CALLBACK_PATH


def _allow_plain_http_locally(settings: Settings) -> None:
    # oauthlib refuses http:// endpoints. The emulator (tests, dev) serves plain http on the
    # loopback address; only then is the check relaxed, never for a remote endpoint.
    uris = (settings.google_auth_uri, settings.google_token_uri, settings.public_url)
    if all(
        urlsplit(u).scheme == "https" or urlsplit(u).hostname in LOCAL_HOSTS for u in uris
    ) and any(urlsplit(u).scheme == "http" for u in uris):
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    # Google may grant more than asked (e.g. earlier grants); READ_SCOPES is checked below.
    os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")


def _flow(settings: Settings, code_verifier: str | None = None) -> Flow:
    if not (settings.google_client_id and settings.google_client_secret):
        raise ApiError(
            503,
            "oauth_not_configured",
            "Set CALSYNC_GOOGLE_CLIENT_ID and CALSYNC_GOOGLE_CLIENT_SECRET to connect accounts.",
        )
    _allow_plain_http_locally(settings)
    config = {
        "web": {
            "client_id": settings.google_client_id,
            "client_secret": settings.google_client_secret,
            "auth_uri": settings.google_auth_uri,
            "token_uri": settings.google_token_uri,
            "redirect_uris": [_callback_url(settings)],
        }
    }
    return Flow.from_client_config(
        config,
        scopes=SCOPES,
        redirect_uri=_callback_url(settings),
        code_verifier=code_verifier,
        autogenerate_code_verifier=code_verifier is None,
    )


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, "invalid_parameter", f"{name} must be a whole number.")
    return int(raw)


@oauth_connect.get("/connect/google")
def start_connect() -> Response:
    settings = app_settings()
    host_id = _int_arg("host")
    if host_id is None:
        raise ApiError(400, "missing_parameter", "Add ?host=<host id>.")
    require_host(host_id)
    account_id = _int_arg("account")
    if account_id is not None:
        account = request_session().get(GoogleAccount, account_id)
        if account is None or account.host_id != host_id:
            raise ApiError(404, "not_found", f"No account {account_id} for host {host_id}.")
    calendar = request.args.get("calendar") or None
    if calendar is not None and not (0 < len(calendar) <= 1024):
        raise ApiError(400, "invalid_parameter", "calendar must be 1 to 1024 characters.")
    flow = _flow(settings)
    nonce = secrets.token_urlsafe(24)
    state = _serializer(settings).dumps(
        {"host": host_id, "account": account_id, "calendar": calendar, "nonce": nonce}
    )
    url, _ = flow.authorization_url(
        access_type="offline", prompt="consent", include_granted_scopes="true", state=state
    )
    response = redirect(url, code=302)
    cookie = _serializer(settings).dumps({"nonce": nonce, "verifier": flow.code_verifier})
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=STATE_MAX_AGE_SECONDS,
        httponly=True,
        secure=settings.public_url.startswith("https://"),
        samesite="Lax",  # sent on the top-level redirect back from Google
        path=CALLBACK_PATH,
    )
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _load_signed(value: str | None, what: str) -> dict:
    if not value:
        raise ApiError(400, "invalid_state", f"The {what} is missing; start the connection again.")
    try:
        data = _serializer(app_settings()).loads(value, max_age=STATE_MAX_AGE_SECONDS)
    except SignatureExpired:
        raise ApiError(400, "state_expired", "The link expired; start again.") from None
    except BadSignature:
        raise ApiError(400, "invalid_state", f"The {what} is not valid.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_state", f"The {what} is not valid.")
    return data


@oauth_connect.get(CALLBACK_PATH)
def finish_connect() -> Response:
    settings = app_settings()
    if request.args.get("error"):
        raise ApiError(400, "consent_refused", "Google did not grant access; nothing was changed.")
    state = _load_signed(request.args.get("state"), "state")
    browser = _load_signed(request.cookies.get(COOKIE), "connection cookie")
    if not hmac.compare_digest(str(state.get("nonce")), str(browser.get("nonce"))):
        raise ApiError(400, "invalid_state", "This answer belongs to another browser session.")
    code = request.args.get("code")
    if not code:
        raise ApiError(400, "missing_parameter", "Google sent no authorization code.")
    flow = _flow(settings, code_verifier=browser.get("verifier"))
    try:
        flow.fetch_token(code=code)
    except Exception as exc:  # oauthlib/requests errors: the code was refused or Google is away
        log.warning("oauth_exchange_failed error=%s", type(exc).__name__)
        raise ApiError(
            502, "oauth_exchange_failed", "Google did not accept the authorization code."
        ) from None
    granted = set(flow.oauth2session.token.get("scope") or SCOPES)
    if isinstance(flow.oauth2session.token.get("scope"), str):
        granted = set(flow.oauth2session.token["scope"].split())
    credentials = flow.credentials
    if not credentials.refresh_token:
        raise ApiError(502, "no_refresh_token", "Google sent no refresh token; try again.")
    if not granted & READ_SCOPES:
        raise ApiError(400, "scope_missing", "Calendar read access was not granted.")
    info = {
        "type": "authorized_user",
        "client_id": settings.google_client_id,
        "client_secret": settings.google_client_secret,
        "refresh_token": credentials.refresh_token,
        "token_uri": settings.google_token_uri,
    }
    calendar_ids, sends = _store(
        int(state["host"]), state.get("account"), state.get("calendar"), info
    )
    if sends.failed:
        # The data is committed. The work is not lost: the calendars are marked dirty
        # (reconnect) or never synced (attach), and beat's sweeper/safety net and channel
        # check pick them up.
        log.warning("oauth_enqueue_failed calendars=%s", len(calendar_ids))
    response = Response(_success_page(len(calendar_ids)), mimetype="text/html")
    response.delete_cookie(COOKIE, path=CALLBACK_PATH)
    return response


def _store(
    host_id: int, account_id: int | None, calendar: str | None, info: dict
) -> tuple[list[int], task_queue.TaskBatch]:
    """Store the credentials; a sync and a watch of each calendar are sent after the commit."""
    session = request_session()
    try:
        if account_id is not None:
            account = session.get(GoogleAccount, account_id)
            if account is None or account.host_id != host_id:
                raise ApiError(404, "not_found", "The account to reconnect no longer exists.")
            replace_credentials(session, account, info)
            ids = list(
                session.scalars(select(Calendar.id).where(Calendar.account_id == account_id))
            )
        else:
            attached, _created = attach_calendar(session, host_id, calendar or "primary", info)
            ids = [attached.id]
        reconnect = account_id is not None
        sends = task_queue.TaskBatch()  # nothing to send when there is no calendar
        for calendar_id in ids:
            sends = task_queue.after_commit(
                session,
                task_queue.enqueue_sync,
                calendar_id,
                reason="reconnect" if reconnect else "attach",
                full=not reconnect,
                force=True,
            )
            task_queue.after_commit(session, task_queue.enqueue_watch, calendar_id)
        session.commit()
    except CredentialsError as exc:
        session.rollback()
        raise ApiError(502, "bad_credentials", str(exc)) from None
    return ids, sends


def _success_page(calendars: int) -> str:
    noun = "calendar" if calendars == 1 else "calendars"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Connected</title></head>"
        "<body><h1>Google Calendar connected</h1>"
        f"<p>{escape(str(calendars))} {noun} will sync in the background. "
        "You can close this page.</p></body></html>"
    )
