"""A request's JSON body and query string read into the `webhook.api_schemas` models, or a
400 in the API's own words: `invalid_json`, `invalid_field` (with `field`) or
`invalid_parameter` (with `parameter`), the message starting with the name at fault.

One error is reported, in the order a client fixes them: unknown keys first, then missing
ones, then the first bad value in field order.
"""

from __future__ import annotations

import json
import typing
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from webhook.errors import ApiError

Model = TypeVar("Model", bound=BaseModel)

INVALID_FIELD = "invalid_field"
INVALID_PARAMETER = "invalid_parameter"
_FIRST_REPORTED = {"extra_forbidden": 0, "missing": 1}


def bad_field(name: str, message: str) -> ApiError:
    return ApiError(400, INVALID_FIELD, f"{name}: {message}", extra={"field": name})


def parse_body(model: type[Model], **context: Any) -> Model:
    """The request's JSON object validated as `model`; `context` reaches its validators."""
    return _validate(model, read_json_object(), INVALID_FIELD, context)


def parse_query(model: type[Model], **context: Any) -> Model:
    """The query string (first value of each name) validated as `model`."""
    return _validate(model, request.args.to_dict(), INVALID_PARAMETER, context)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def read_json_object() -> dict[str, Any]:
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
    return body


def _validate(model: type[Model], data: dict[str, Any], code: str, context: dict) -> Model:
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: _FIRST_REPORTED.get(e["type"], 2))
        raise _api_error(model, errors[0], code) from None


def _api_error(model: type[BaseModel], error: ErrorDetails, code: str) -> ApiError:
    loc = error["loc"]
    if error["type"] != "extra_forbidden":  # an unknown key is named as the client sent it
        loc = _on_the_wire(model, loc)
    name, inner = _split_location(loc)
    context = error.get("ctx") or {}
    message = _sentence(model, error)
    if "field" in context:  # the validator named the key at fault itself
        name, inner = context["field"], ""
    if inner:
        message = f"{inner}: {message}"
    if error["type"] == INVALID_PARAMETER:
        code = INVALID_PARAMETER
    extra_key = "parameter" if code == INVALID_PARAMETER else "field"
    return ApiError(400, code, f"{name}: {message}", extra={extra_key: name})


def _on_the_wire(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """`loc` with its first key as the client wrote it: pydantic names a field by its Python
    name when it checked the field's default (a missing required time), not by its alias."""
    field = model.model_fields.get(str(loc[0])) if loc else None
    if field is None or field.alias is None:
        return loc
    return (field.alias, *loc[1:])


def _split_location(loc: tuple[int | str, ...]) -> tuple[str, str]:
    """The name to report and the rest of the path. A list position and the key of the
    listed object belong to the name (`items[0].id`); a key inside a nested object such as
    `busyPolicy` goes to the message, the object's own key being the field at fault."""
    if not loc:
        return "body", ""
    name = str(loc[0])
    for position, part in enumerate(loc[1:], start=1):
        if isinstance(part, int):
            name += f"[{part}]"
        elif isinstance(loc[position - 1], int):
            name += f".{part}"
        else:
            return name, ".".join(str(p) for p in loc[position:])
    return name, ""


def _sentence(model: type[BaseModel], error: ErrorDetails) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind in (INVALID_FIELD, INVALID_PARAMETER):
        return str(context["message"])
    if kind == "value_error":
        return str(context["error"])
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, error["loc"][:-1])
        return f"unknown field (allowed: {', '.join(allowed) or 'none'})"
    if kind == "string_too_short":
        minimum = context.get("min_length", 1)
        return "must not be empty" if minimum == 1 else f"must be at least {minimum} characters"
    if kind == "string_too_long":
        return f"must be at most {context['max_length']} characters"
    if kind == "too_long":
        return f"at most {context['max_length']} items"
    return _SENTENCES.get(kind, error["msg"])


_SENTENCES = {
    "missing": "required",
    "string_type": "must be a string",
    "string_unicode": "must be valid Unicode text",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "list_type": "must be a list",
}


def _allowed_keys(model: type[BaseModel], path: tuple[int | str, ...]) -> list[str]:
    """The keys the object at `path` inside `model` may have."""
    for part in path:
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        annotation = field.annotation if field else None
        while typing.get_origin(annotation) is list:
            (annotation,) = typing.get_args(annotation)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(f.alias or n for n, f in model.model_fields.items())
