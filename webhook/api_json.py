"""Request bodies of the /v1 API: one JSON object, known keys only, typed fields.

Unknown keys are refused rather than ignored: a typo (`timezone` for `timeZone`) must not
silently leave a setting unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from flask import request

from webhook.errors import ApiError


def bad_field(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_field", f"{name}: {message}", extra={"field": name})


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_object(allowed: Collection[str], required: Collection[str] = ()) -> dict[str, Any]:
    """The request body as a dict, or a 400 saying what is wrong with it."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ApiError(400, "invalid_json", "The request needs a JSON object body.")
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ApiError(400, "invalid_json", f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_field(
            unknown[0], f"unknown field (allowed: {', '.join(sorted(allowed)) or 'none'})"
        )
    for name in required:
        if name not in body:
            raise bad_field(name, "required")
    return body


def string_field(
    body: dict[str, Any], name: str, *, max_length: int, min_length: int = 1
) -> str | None:
    """The string at `name` (None if absent), within the length limits."""
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, str):
        raise bad_field(name, "must be a string")
    if len(value) < min_length:
        raise bad_field(name, "must not be empty" if min_length == 1 else "too short")
    if len(value) > max_length:
        raise bad_field(name, f"must be at most {max_length} characters")
    if "\x00" in value:
        raise bad_field(name, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape cannot be stored
        raise bad_field(name, "must be valid Unicode text") from None
    return value
