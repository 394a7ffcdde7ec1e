"""One error shape for every response that is not a success:
`{"error": {"code": "...", "message": "..."}}` with the matching status.

Clients (Google, booking frontends, curl) never get an HTML page, and bad input never turns
into a 500: werkzeug's HTTP errors, our own `ApiError`, database outages (503) and
unexpected exceptions (500, logged with the traceback) all leave through `error_response`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from models.db import DATABASE_UNAVAILABLE_ERRORS

log = logging.getLogger("calsync.webhook.errors")

# Stable machine codes for werkzeug's errors; anything else falls back to its snake-cased name.
HTTP_ERROR_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}


class ApiError(Exception):
    """An error a view raises to answer with a given status, machine code and sentence."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def to_response(self) -> Response:
        return error_response(
            self.status, self.code, self.message, extra=self.extra, headers=self.headers
        )


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The JSON error body; `extra` adds top-level keys beside "error" (e.g. readiness checks)."""
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    body.update(extra or {})
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _http_error_code(exc: HTTPException) -> str:
    status = exc.code or 500
    return HTTP_ERROR_CODES.get(status) or (exc.name or "error").lower().replace(" ", "_")


def _handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    # Keep protocol headers werkzeug attaches (Allow on 405, WWW-Authenticate on 401).
    headers = {
        name: value
        for name, value in exc.get_headers()
        if name.lower() not in ("content-type", "content-length")
    }
    message = exc.description or exc.name or "error"
    return error_response(status, _http_error_code(exc), message, headers=headers)


def _handle_api_error(exc: ApiError) -> Response:
    return exc.to_response()


def _handle_database_unavailable(exc: Exception) -> Response:
    log.warning("database_unavailable error=%s", type(exc).__name__)
    return error_response(503, "database_unavailable", "The database is unavailable; retry later.")


def _handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled_error error=%s", type(exc).__name__)
    return error_response(500, "internal_error", "An unexpected error occurred.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(ApiError, _handle_api_error)
    # The client should retry later (503), not conclude its request was wrong.
    for error_type in DATABASE_UNAVAILABLE_ERRORS:
        app.register_error_handler(error_type, _handle_database_unavailable)
    app.register_error_handler(Exception, _handle_unexpected)
