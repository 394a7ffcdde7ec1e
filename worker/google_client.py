"""Building the real google-api-python-client for an account, and paging events.list.

Every request goes through `execute_with_retry`: tenacity retries transient errors with
truncated exponential backoff and full jitter, then gives up by re-raising (the task decides
what a give-up means: a Celery retry with countdown).

Every HTTP request to Google (an API call, its repeat after a 401, a token refresh) first
waits for a permit of the shared rate limiter (worker/rate_limit.py), counted for the Google
user the credentials belong to: the account's transport takes it (`_PermitHttp`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httplib2
from google.oauth2.credentials import Credentials
from google_auth_httplib2 import AuthorizedHttp
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from core import metrics
from core.settings import Settings
from worker import rate_limit
from worker.google_errors import ErrorKind, classify

PAGE_SIZE = 2500  # Google's maximum for events.list
REQUEST_TIMEOUT_SECONDS = 20
RETRY_ATTEMPTS = 5
RETRY_MAX_WAIT_SECONDS = 8
RETRY_MAX_TOTAL_SECONDS = 30


# Per (thread, credentials): the account's client. Bounded: a process serving many accounts
# keeps only the recent ones (rebuilding one costs a token refresh).
_services: dict[tuple[int, str], AccountService] = {}
_shared: dict[tuple[int, str], tuple[Any, httplib2.Http]] = {}
MAX_CACHED_ACCOUNTS = 5000


def google_user_key(credentials_info: dict, email: str | None = None) -> str:
    """Who Google counts a request against ("600 per minute per user per project"), as a
    key for the limiter: a hash, so no address is kept in Redis or the limiter file.

    The user is named by the Google account's email: the one the connect flow read from the
    id_token (the account row's `email`), else the `account` field google-auth and the
    emulator put into authorized-user JSON. Two calsync accounts of one Google user thus
    share a budget. The OAuth client id is part of the key: the quota is per project, and
    the client belongs to one. Credentials that name no user fall back to their grant
    (client id + refresh token): one grant is one user, so such an account is counted on its
    own (two such grants of one user are not recognized as one without asking Google)."""
    who = (email or credentials_info.get("account") or "").strip().lower()
    client = str(credentials_info.get("client_id", ""))
    if who:
        identity = f"user:{client}:{who}"
    else:
        identity = f"grant:{client}:{credentials_info.get('refresh_token', '')}"
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


class _PermitHttp:
    """The thread's transport as seen by one Google user's client: each request waits for a
    permit of that user (and of the project) first. Token refreshes go through it too:
    google-auth refreshes through a `Request` wrapped around this same object."""

    def __init__(self, transport: httplib2.Http, user_key: str, settings: Settings) -> None:
        self._transport = transport
        self.user_key = user_key
        self._settings = settings

    def request(self, *args: Any, **kwargs: Any) -> Any:
        rate_limit.acquire(self.user_key, self._settings)
        return self._transport.request(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class AccountService:
    """One account's Calendar client: the thread's single client (built once per endpoint;
    building one from the discovery document takes milliseconds and about half a megabyte,
    too much per account when a worker serves thousands) with this account's authorized
    transport put on every request it makes. Used like the client: `.events().list(...)`."""

    def __init__(self, shared: Any, http: AuthorizedHttp) -> None:
        self._shared_service = shared
        self._http = http

    @property
    def credentials(self) -> Credentials:
        return self._http.credentials

    def __getattr__(self, name: str) -> Callable[[], _BoundResource]:
        def resource() -> _BoundResource:
            return _BoundResource(_resource(self._shared_service, name), self._http)

        return resource


class _BoundResource:
    def __init__(self, resource: Any, http: AuthorizedHttp) -> None:
        self._resource, self._http = resource, http

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._resource, name)

        def make_request(*args: Any, **kwargs: Any) -> Any:
            request = method(*args, **kwargs)
            request.http = self._http
            return request

        return make_request


_resources: dict[tuple[int, str], Any] = {}


def _resource(shared: Any, name: str) -> Any:
    # Building a resource object (service.events()) walks the discovery document: keep it.
    key = (id(shared), name)
    found = _resources.get(key)
    if found is None:
        found = _resources[key] = getattr(shared, name)()
    return found


def _shared_service(settings: Settings) -> tuple[Any, httplib2.Http]:
    key = (threading.get_ident(), settings.google_api_endpoint)
    found = _shared.get(key)
    if found is None:
        # httplib2.Http is not thread-safe: one transport (and its kept-alive connection)
        # per thread, shared by the accounts that thread serves.
        transport = httplib2.Http(timeout=REQUEST_TIMEOUT_SECONDS)
        service = build(
            "calendar",
            "v3",
            http=transport,
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": settings.google_api_endpoint},
        )
        found = _shared[key] = (service, transport)
    return found


def build_service(
    credentials_info: dict, settings: Settings, email: str | None = None
) -> AccountService:
    """A Calendar v3 client for these credentials, cached per process (and thread).
    `email`: the Google account's address when known (the account row's), which names the
    user the rate limiter counts (`google_user_key`).

    The cache key is a hash of the credentials, so new credentials get a new client and the
    access token is refreshed once per process rather than once per task.
    """
    key = hashlib.sha256(
        (
            json.dumps(credentials_info, sort_keys=True)
            + settings.google_api_endpoint
            + (email or "")
        ).encode()
    ).hexdigest()
    cache_key = (threading.get_ident(), key)
    service = _services.get(cache_key)
    if service is None:
        if len(_services) >= MAX_CACHED_ACCOUNTS:
            _services.clear()
        shared, transport = _shared_service(settings)
        # The token endpoint comes from our configuration only, never from the stored JSON:
        # a refresh token must not be sent wherever an uploaded document says.
        credentials = Credentials.from_authorized_user_info(credentials_info).with_token_uri(
            settings.google_token_uri
        )
        permits = _PermitHttp(transport, google_user_key(credentials_info, email), settings)
        service = _services[cache_key] = AccountService(
            shared, AuthorizedHttp(credentials, http=permits)
        )
    return service


def refreshed_credentials(service: AccountService, stored: dict) -> dict | None:
    """`stored` with the access token the client refreshed while it worked, or None if it
    did not: stored again, it spares every other process (and thread) a refresh of its
    own for the token's hour; each would otherwise refresh once per account it serves."""
    credentials = service.credentials
    if not credentials.token or credentials.token == stored.get("token"):
        return None
    fresh = dict(stored, token=credentials.token)
    if credentials.expiry is not None:  # google-auth keeps it as naive UTC
        fresh["expiry"] = credentials.expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    return fresh


def forget_services() -> None:
    """Drop cached clients (after credentials changed or were revoked)."""
    _services.clear()
    _shared.clear()
    _resources.clear()


def _is_transient(exc: BaseException) -> bool:
    return classify(exc).kind is ErrorKind.TRANSIENT


def execute_with_retry(request: Any, method: str) -> dict:
    """Run one API request; transient failures are retried here, briefly. Every attempt
    waits for a permit of the shared rate limiter in the account's transport."""

    def attempt() -> dict:
        try:
            response = request.execute(num_retries=0)
        except HttpError as exc:
            metrics.observe_google_request(method, int(exc.resp.status))
            raise
        except Exception:
            metrics.observe_google_request(method, "error")
            raise
        metrics.observe_google_request(method, 200)
        return response

    retrying = Retrying(
        retry=retry_if_exception(_is_transient),
        wait=wait_random_exponential(multiplier=0.25, max=RETRY_MAX_WAIT_SECONDS),
        stop=stop_after_attempt(RETRY_ATTEMPTS) | stop_after_delay(RETRY_MAX_TOTAL_SECONDS),
        before_sleep=lambda _state: metrics.observe_google_retry(method),
        reraise=True,
    )
    return retrying(attempt)


def list_event_pages(
    service: Any,
    google_calendar_id: str,
    *,
    sync_token: str | None,
    time_min: datetime | None = None,
    time_max: datetime | None = None,
) -> Iterator[dict]:
    """Pages of events.list: incremental with a sync token, else a full listing in a window.

    One page at a time, so memory stays flat however big the calendar is.
    """
    params: dict[str, Any] = {
        "calendarId": google_calendar_id,
        "singleEvents": True,
        "showDeleted": True,
        "maxResults": PAGE_SIZE,
    }
    if sync_token:
        params["syncToken"] = sync_token
    else:
        if time_min is not None:
            params["timeMin"] = time_min.isoformat()
        if time_max is not None:
            params["timeMax"] = time_max.isoformat()
    page_token = None
    while True:
        if page_token:
            params["pageToken"] = page_token
        page = execute_with_retry(service.events().list(**params), "events.list")
        yield page
        page_token = page.get("nextPageToken")
        if not page_token:
            return


def get_calendar(service: Any, google_calendar_id: str) -> dict:
    return execute_with_retry(
        service.calendars().get(calendarId=google_calendar_id), "calendars.get"
    )


def query_freebusy(
    service: Any,
    google_calendar_ids: list[str],
    time_min: datetime,
    time_max: datetime,
) -> dict:
    """One freeBusy.query for up to 50 calendars of one account (Google's limit); the
    permit is taken by the account's transport (`build_service`)."""
    if not 0 < len(google_calendar_ids) <= 50:
        raise ValueError("freeBusy.query takes 1 to 50 calendars")
    body = {
        "timeMin": time_min.isoformat(),
        "timeMax": time_max.isoformat(),
        "items": [{"id": calendar_id} for calendar_id in google_calendar_ids],
    }
    return execute_with_retry(service.freebusy().query(body=body), "freebusy.query")
