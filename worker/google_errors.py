"""What a failed Google call means for us. Pure: classifies exceptions, does no I/O.

- transient: retry with backoff (429, 403 rate limits, 5xx, network trouble)
- sync_token_gone: 410 fullSyncRequired, so a full resync, never a retry
- auth_revoked: refresh failed with invalid_grant, so the host must reconnect
- calendar_gone: 404 / 403 forbidden on the calendar, so stop calling until fixed
- permanent: anything else (a bug or a request Google will never accept)
"""

from __future__ import annotations

import enum
import json
import socket
import ssl
from dataclasses import dataclass

import httplib2
from google.auth.exceptions import RefreshError, TransportError
from googleapiclient.errors import HttpError

RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded"}


class ErrorKind(enum.StrEnum):
    TRANSIENT = "transient"
    SYNC_TOKEN_GONE = "sync_token_gone"
    AUTH_REVOKED = "auth_revoked"
    CALENDAR_GONE = "calendar_gone"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Classified:
    kind: ErrorKind
    code: str  # machine code stored in SyncState.last_error_code
    message: str  # a sentence a person can read; never contains a token
    status: int | None = None


def google_reasons(error: HttpError) -> list[str]:
    try:
        body = json.loads(error.content.decode("utf-8", "replace"))
        return [e.get("reason", "") for e in body["error"].get("errors", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        return []


def classify(exc: BaseException) -> Classified:
    if isinstance(exc, HttpError):
        return _classify_http(exc)
    if isinstance(exc, RefreshError):
        text = str(exc.args[0]) if exc.args else ""
        if "invalid_grant" in text or "invalid_client" in text or "unauthorized_client" in text:
            return Classified(
                ErrorKind.AUTH_REVOKED,
                "auth_revoked",
                "Google access was revoked or expired; the host must reconnect the account.",
            )
        if getattr(exc, "retryable", False):
            return Classified(ErrorKind.TRANSIENT, "token_refresh_failed", "Token refresh failed.")
        return Classified(ErrorKind.TRANSIENT, "token_refresh_failed", "Token refresh failed.")
    if isinstance(exc, TransportError | httplib2.HttpLib2Error | socket.timeout | ssl.SSLError):
        return Classified(
            ErrorKind.TRANSIENT,
            "network",
            f"Network error talking to Google ({type(exc).__name__}).",
        )
    if isinstance(exc, ConnectionError | OSError):
        return Classified(
            ErrorKind.TRANSIENT,
            "network",
            f"Network error talking to Google ({type(exc).__name__}).",
        )
    return Classified(ErrorKind.PERMANENT, "internal", f"Unexpected error: {type(exc).__name__}.")


def _classify_http(error: HttpError) -> Classified:
    status = int(error.resp.status)
    reasons = set(google_reasons(error))
    if status == 410:
        return Classified(
            ErrorKind.SYNC_TOKEN_GONE,
            "full_sync_required",
            "Google invalidated the sync token; a full resync is needed.",
            status,
        )
    if status == 429 or (status == 403 and reasons & RATE_LIMIT_REASONS):
        return Classified(
            ErrorKind.TRANSIENT, "rate_limited", "Google rate limit hit; backing off.", status
        )
    if status == 403 and reasons & QUOTA_REASONS:
        return Classified(
            ErrorKind.TRANSIENT, "quota_exceeded", "Google API quota exhausted for now.", status
        )
    if status >= 500 or status == 408:
        return Classified(
            ErrorKind.TRANSIENT,
            "google_unavailable",
            f"Google answered {status}; retrying.",
            status,
        )
    if status == 401:
        # google-auth refreshes on 401 by itself; one reaching us means the new token failed too.
        return Classified(
            ErrorKind.TRANSIENT, "unauthorized", "Google refused the access token.", status
        )
    if status == 404:
        return Classified(
            ErrorKind.CALENDAR_GONE,
            "calendar_not_found",
            "Google says this calendar does not exist or the account lost access to it.",
            status,
        )
    if status == 403:
        return Classified(
            ErrorKind.CALENDAR_GONE,
            "forbidden",
            "Google refused access to this calendar (permissions changed).",
            status,
        )
    return Classified(
        ErrorKind.PERMANENT, f"http_{status}", f"Google rejected the request ({status}).", status
    )
