"""Google-shaped API errors: {"error": {"errors": [...], "code", "message"}}."""

from __future__ import annotations

from typing import Any

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    410: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class GoogleApiError(Exception):
    """An error the API answers with; body() is Google's JSON error envelope."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        domain: str = "global",
        location: str | None = None,
        location_type: str = "parameter",
    ) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.domain = domain
        self.location = location
        self.location_type = location_type

    def body(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "domain": self.domain,
            "reason": self.reason,
            "message": self.message,
        }
        if self.location is not None:
            item["location"] = self.location
            item["locationType"] = self.location_type
        error: dict[str, Any] = {"errors": [item], "code": self.code, "message": self.message}
        if self.code in _STATUS_NAMES:
            error["status"] = _STATUS_NAMES[self.code]
        return {"error": error}


def invalid(message: str, location: str | None = None) -> GoogleApiError:
    return GoogleApiError(400, "invalid", message, location=location)


def required(location: str) -> GoogleApiError:
    return GoogleApiError(400, "required", "Required", location=location)


def not_found(message: str = "Not Found") -> GoogleApiError:
    return GoogleApiError(404, "notFound", message)


def time_range_empty(location: str | None = None) -> GoogleApiError:
    return GoogleApiError(
        400, "timeRangeEmpty", "The specified time range is empty.", location=location
    )


def deleted() -> GoogleApiError:
    return GoogleApiError(410, "deleted", "Resource has been deleted")


def full_sync_required() -> GoogleApiError:
    return GoogleApiError(
        410,
        "fullSyncRequired",
        "Sync token is no longer valid, a full sync is required.",
        domain="calendar",
        location="syncToken",
    )


def auth_error() -> GoogleApiError:
    return GoogleApiError(
        401,
        "authError",
        "Invalid Credentials",
        location="Authorization",
        location_type="header",
    )


def injected(status: int) -> GoogleApiError:
    """The fault-injection errors, shaped like Google's quota and backend errors."""
    if status == 429:
        return GoogleApiError(429, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")
    if status == 403:
        return GoogleApiError(403, "rateLimitExceeded", "Rate Limit Exceeded", domain="usageLimits")
    if status == 500:
        return GoogleApiError(500, "backendError", "Backend Error")
    if status == 503:
        return GoogleApiError(503, "backendError", "Backend Error")
    raise ValueError(f"no injectable error for status {status}")


INJECTABLE_STATUSES = (429, 403, 500, 503)
