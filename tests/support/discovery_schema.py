"""Check response bodies against Google's own Calendar v3 discovery document.

The document ships inside google-api-python-client, so the emulator's responses are held to
the schema the real client was generated from: unknown fields and wrong types are problems.
Deliberately independent of emulator.timefmt so a bug there cannot hide here.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import googleapiclient.discovery_cache

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|([+-])(\d{2}):(\d{2}))",
    re.IGNORECASE,
)
_INT64 = re.compile(r"-?\d+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INT32_RANGE = (-(2**31), 2**31 - 1)
_UINT32_RANGE = (0, 2**32 - 1)


@cache
def discovery_document() -> dict[str, Any]:
    package_dir = Path(next(iter(googleapiclient.discovery_cache.__path__)))
    return json.loads((package_dir / "documents" / "calendar.v3.json").read_text("utf-8"))


@cache
def _methods() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}

    def walk(resource: dict[str, Any]) -> None:
        for method in resource.get("methods", {}).values():
            found[method["id"]] = method
        for child in resource.get("resources", {}).values():
            walk(child)

    walk(discovery_document())
    return found


def method(method_id: str) -> dict[str, Any]:
    """The discovery description of a method id such as "calendar.events.list"."""
    try:
        return _methods()[method_id]
    except KeyError:
        raise KeyError(f"no method {method_id!r} in calendar.v3.json") from None


def is_rfc3339(value: str) -> bool:
    match = _RFC3339.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    try:
        offset = timedelta(0)
        if match.group(9):
            if int(match.group(10)) > 23 or int(match.group(11)) > 59:
                return False
            offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError:
        return False
    return True


def _check(value: Any, schema: dict[str, Any], path: str, problems: list[str]) -> None:
    if "$ref" in schema:
        schema = discovery_document()["schemas"][schema["$ref"]]
    kind = schema.get("type")
    fmt = schema.get("format")
    if kind == "any":
        return
    if kind == "object":
        if not isinstance(value, dict):
            problems.append(f"{path}: expected object, got {type(value).__name__}")
            return
        properties = schema.get("properties", {})
        extra_schema = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                _check(item, properties[key], f"{path}.{key}", problems)
            elif extra_schema is not None:
                _check(item, extra_schema, f"{path}[{key!r}]", problems)
            else:
                problems.append(f"{path}.{key}: unknown field")
    elif kind == "array":
        if not isinstance(value, list):
            problems.append(f"{path}: expected array, got {type(value).__name__}")
            return
        for index, item in enumerate(value):
            _check(item, schema["items"], f"{path}[{index}]", problems)
    elif kind == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{path}: expected boolean, got {value!r}")
    elif kind == "integer":
        low, high = _UINT32_RANGE if fmt == "uint32" else _INT32_RANGE
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{path}: expected integer, got {value!r}")
        elif not low <= value <= high:
            problems.append(f"{path}: integer {value} out of {fmt} range")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(f"{path}: expected number, got {value!r}")
    elif kind == "string":
        if not isinstance(value, str):
            problems.append(f"{path}: expected string, got {value!r}")
        elif fmt == "date-time" and not is_rfc3339(value):
            problems.append(f"{path}: not an RFC 3339 date-time: {value!r}")
        elif fmt in ("int64", "uint64") and not _INT64.fullmatch(value):
            problems.append(f"{path}: not an {fmt} string: {value!r}")
        elif fmt == "date" and not _is_date(value):
            problems.append(f"{path}: not a YYYY-MM-DD date: {value!r}")
    else:
        problems.append(f"{path}: schema type {kind!r} not understood by the validator")


def _is_date(value: str) -> bool:
    if not _DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def validate_response(method_id: str, body: Any) -> list[str]:
    """Problems of a response body for method_id against the discovery schema; [] = valid.

    Methods without a response schema (e.g. "calendar.channels.stop") must have no body
    (None or empty).
    """
    response = method(method_id).get("response")
    if response is None:
        return [] if body in (None, {}, b"", "") else [f"{method_id}: expected no body"]
    problems: list[str] = []
    _check(body, response, response["$ref"], problems)
    return problems


_ERROR_ITEM_REQUIRED = {"domain": str, "reason": str, "message": str}
_ERROR_ITEM_OPTIONAL = {"location": str, "locationType": str}


def validate_error(body: Any, status: int | None = None) -> list[str]:
    """Problems of a Google error body {"error": {"code", "message", "errors": [...]}}; [] = valid.

    With status, error.code must equal it. Google also sends an optional string "status"
    (e.g. "NOT_FOUND") next to code; it is allowed, other extra fields are not.
    """
    if not isinstance(body, dict) or set(body) != {"error"}:
        return [f"expected exactly {{'error': ...}}, got {body!r}"]
    error = body["error"]
    if not isinstance(error, dict):
        return [f"error: expected object, got {error!r}"]
    problems: list[str] = []
    code = error.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        problems.append(f"error.code: expected integer, got {code!r}")
    elif not 400 <= code <= 599:
        problems.append(f"error.code: {code} is not an HTTP error status")
    elif status is not None and code != status:
        problems.append(f"error.code {code} differs from HTTP status {status}")
    if not isinstance(error.get("message"), str):
        problems.append(f"error.message: expected string, got {error.get('message')!r}")
    if "status" in error and not isinstance(error["status"], str):
        problems.append(f"error.status: expected string, got {error['status']!r}")
    for key in set(error) - {"code", "message", "errors", "status"}:
        problems.append(f"error.{key}: unknown field")
    items = error.get("errors")
    if not isinstance(items, list) or not items:
        problems.append(f"error.errors: expected a non-empty array, got {items!r}")
        return problems
    for index, item in enumerate(items):
        where = f"error.errors[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected object, got {item!r}")
            continue
        for key, kind in _ERROR_ITEM_REQUIRED.items():
            if not isinstance(item.get(key), kind):
                problems.append(f"{where}.{key}: expected string, got {item.get(key)!r}")
        for key, value in item.items():
            if key in _ERROR_ITEM_REQUIRED:
                continue
            if key not in _ERROR_ITEM_OPTIONAL:
                problems.append(f"{where}.{key}: unknown field")
            elif not isinstance(value, str):
                problems.append(f"{where}.{key}: expected string, got {value!r}")
    return problems
