"""Browser OAuth connect flow: a host grants calsync read access to its Google calendar.

1. `GET /connect/google?host=<id>&token=<the host's feed token>[&calendar=<id>][&account=<id>]`
   (or a bearer header instead of `token`) redirects to Google's consent page.
2. Google sends the browser back to `GET /connect/google/callback?code=&state=`: the state is
   checked (signature, age, the browser's cookie) and spent (one use, across all web
   processes: `oauth_used_states`), the code is exchanged for a refresh token, and a page
   asks "Attach ann@example.com's calendar to host Ann Example?". Nothing is attached yet:
   a connect link forwarded to a stranger must not attach the stranger's calendar silently.
3. The page's form `POST`s to the same path: with its anti-forgery value and the browser's
   cookie (holding the grant, encrypted), the calendar is attached (or the account
   reconnected) once, and a sync and a watch are enqueued (the web process never calls the
   Calendar API itself).

The state, the browser cookie, the pending grant and the form value are signed with one key
but four salts, so none of them passes for another (the cookie's value is no valid state).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, redirect, request
from google_auth_oauthlib.flow import Flow
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from core.settings import Settings
from models import Calendar, GoogleAccount, Host
from models.credentials_box import (
    CredentialsError,
    decrypt_credentials,
    encrypt_credentials,
    signing_key,
)
from models.oauth_states import use_state_once
from models.registry import attach_calendar, replace_credentials
from webhook.api_input import parse_query
from webhook.api_schemas import ConnectQuery
from webhook.auth import page_access
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
COOKIE = "calsync_oauth"  # the browser's half of a state: nonce and PKCE verifier
PENDING_COOKIE = "calsync_oauth_pending"  # the exchanged grant, until confirmed
CALLBACK_PATH = "/connect/google/callback"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}

# One salt per kind of signed value: none is accepted in another's place.
STATE_SALT = "calsync-oauth-state"
COOKIE_SALT = "calsync-oauth-browser"
PENDING_SALT = "calsync-oauth-pending"
CONFIRM_SALT = "calsync-oauth-confirm"

# The confirmation page posts its form to this service only; nothing else may run.
CONFIRM_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def _serializer(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(signing_key("oauth-connect", settings), salt=salt)


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


@oauth_connect.get("/connect/google")
def start_connect() -> BaseResponse:
    settings = app_settings()
    query = parse_query(ConnectQuery)
    host_id, account_id = query.host, query.account
    page_access(host_id)
    if account_id is not None:
        account = request_session().get(GoogleAccount, account_id)
        if account is None or account.host_id != host_id:
            raise ApiError(404, "not_found", f"No account {account_id} for host {host_id}.")
    flow = _flow(settings)
    nonce = secrets.token_urlsafe(24)
    state = _serializer(settings, STATE_SALT).dumps(
        {"host": host_id, "account": account_id, "calendar": query.calendar, "nonce": nonce}
    )
    url, _ = flow.authorization_url(
        access_type="offline", prompt="consent", include_granted_scopes="true", state=state
    )
    response = redirect(url, code=302)
    cookie = _serializer(settings, COOKIE_SALT).dumps(
        {"nonce": nonce, "verifier": flow.code_verifier}
    )
    _set_cookie(response, COOKIE, cookie, settings)
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _set_cookie(response: BaseResponse, name: str, value: str, settings: Settings) -> None:
    response.set_cookie(
        name,
        value,
        max_age=STATE_MAX_AGE_SECONDS,
        httponly=True,
        secure=settings.public_url.startswith("https://"),
        samesite="Lax",  # sent on the top-level redirect back from Google
        path=CALLBACK_PATH,
    )


def _load_signed(value: str | None, what: str, salt: str) -> dict:
    if not value:
        raise ApiError(400, "invalid_state", f"The {what} is missing; start the connection again.")
    try:
        data = _serializer(app_settings(), salt).loads(value, max_age=STATE_MAX_AGE_SECONDS)
    except SignatureExpired:
        raise ApiError(400, "state_expired", "The link expired; start again.") from None
    except BadSignature:
        raise ApiError(400, "invalid_state", f"The {what} is not valid.") from None
    if not isinstance(data, dict) or not isinstance(data.get("nonce"), str):
        raise ApiError(400, "invalid_state", f"The {what} is not valid.")
    return data


def _spend(kind: str, nonce: str) -> None:
    """Use a state (or a confirmation) once: a second use anywhere is refused."""
    now = datetime.now(UTC)
    state_id = hashlib.sha256(f"{kind}:{nonce}".encode()).hexdigest()
    expires = now + timedelta(seconds=STATE_MAX_AGE_SECONDS + 60)
    if not use_state_once(request_session(), state_id, expires, now):
        raise ApiError(
            400, "state_used", "This connection was already used; start the connection again."
        )


@oauth_connect.get(CALLBACK_PATH)
def finish_connect() -> Response:
    settings = app_settings()
    if request.args.get("error"):
        raise ApiError(400, "consent_refused", "Google did not grant access; nothing was changed.")
    state = _load_signed(request.args.get("state"), "state", STATE_SALT)
    browser = _load_signed(request.cookies.get(COOKIE), "connection cookie", COOKIE_SALT)
    if not hmac.compare_digest(state["nonce"], browser["nonce"]):
        raise ApiError(400, "invalid_state", "This answer belongs to another browser session.")
    code = request.args.get("code")
    if not code:
        raise ApiError(400, "missing_parameter", "Google sent no authorization code.")
    _spend("state", state["nonce"])
    host = request_session().get(Host, int(state["host"]))
    if host is None:
        raise ApiError(404, "not_found", "The host to connect no longer exists.")
    flow = _flow(settings, code_verifier=browser.get("verifier"))
    try:
        flow.fetch_token(code=code)
    except Exception as exc:  # oauthlib/requests errors: the code was refused or Google is away
        log.warning("oauth_exchange_failed error=%s", type(exc).__name__)
        raise ApiError(
            502, "oauth_exchange_failed", "Google did not accept the authorization code."
        ) from None
    token = flow.oauth2session.token
    granted = set(token.get("scope") or SCOPES)
    if isinstance(token.get("scope"), str):
        granted = set(token["scope"].split())
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
    email = _email_from_id_token(token.get("id_token"))
    pending_nonce = secrets.token_urlsafe(24)
    pending = _serializer(settings, PENDING_SALT).dumps(
        {
            "nonce": pending_nonce,
            "host": host.id,
            "account": state.get("account"),
            "calendar": state.get("calendar"),
            "email": email,
            # Encrypted with the credential key: a cookie never holds a readable grant.
            "grant": encrypt_credentials(info).decode("ascii"),
        }
    )
    csrf = _serializer(settings, CONFIRM_SALT).dumps({"nonce": pending_nonce})
    question = _question(host, state.get("account"), state.get("calendar"), email)
    response = _html(_confirm_page(question, csrf))
    response.delete_cookie(COOKIE, path=CALLBACK_PATH)
    _set_cookie(response, PENDING_COOKIE, pending, settings)
    return response


@oauth_connect.post(CALLBACK_PATH)
def confirm_connect() -> Response:
    pending = _load_signed(request.cookies.get(PENDING_COOKIE), "connection cookie", PENDING_SALT)
    form = _load_signed(request.form.get("csrf"), "confirmation form", CONFIRM_SALT)
    if not hmac.compare_digest(pending["nonce"], form["nonce"]):
        raise ApiError(400, "invalid_state", "This confirmation belongs to another connection.")
    _spend("confirm", pending["nonce"])
    try:
        info = decrypt_credentials(str(pending["grant"]).encode("ascii"))
    except (CredentialsError, ValueError, KeyError):
        raise ApiError(400, "invalid_state", "The connection cookie is not valid.") from None
    account_id = pending.get("account")
    calendar_ids, sends = _store(int(pending["host"]), account_id, pending.get("calendar"), info)
    if sends.failed:
        # The data is committed. The work is not lost: the calendars are marked dirty
        # (reconnect) or never synced (attach), and beat's sweeper/safety net and channel
        # check pick them up.
        log.warning("oauth_enqueue_failed calendars=%s", len(calendar_ids))
    response = _html(_success_page(len(calendar_ids)))
    response.delete_cookie(PENDING_COOKIE, path=CALLBACK_PATH)
    return response


def _email_from_id_token(id_token: object) -> str | None:
    """The Google account's email from the OpenID id_token, when Google sent one. It came
    straight from the token endpoint over TLS, so its signature need not be checked (OpenID
    Connect Core 3.1.3.7); it is only shown to the person who consented, never trusted."""
    if not isinstance(id_token, str) or id_token.count(".") != 2:
        return None
    payload = id_token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    email = claims.get("email") if isinstance(claims, dict) else None
    return email if isinstance(email, str) and 0 < len(email) <= 320 else None


def _question(host: Host, account_id: Any, calendar: str | None, email: str | None) -> str:
    if account_id is not None:
        account = request_session().get(GoogleAccount, int(account_id))
        who = email or (account.email if account else None) or "this Google account"
        return f"Reconnect {who} to host {host.name}?"
    if email:
        return f"Attach {email}'s calendar to host {host.name}?"
    return f"Attach the Google calendar \u201c{calendar or 'primary'}\u201d to host {host.name}?"


def _html(body: str) -> Response:
    response = Response(body, mimetype="text/html")
    response.headers.update(CONFIRM_PAGE_HEADERS)
    return response


def _confirm_page(question: str, csrf: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Confirm · calsync</title>"
        "</head><body><h1>Connect Google Calendar</h1>"
        f"<p id='question'>{escape(question)}</p>"
        f"<form method='post' action='{CALLBACK_PATH}'>"
        f"<input type='hidden' name='csrf' value='{escape(csrf)}'>"
        "<button type='submit'>Yes, attach</button></form>"
        "<p>Not you, or not this host? Close this page: nothing is attached.</p>"
        "</body></html>"
    )


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
