"""Structured logs for web and worker: key=value lines (or JSON), with the calendar, task
and run ids of the work in progress bound through a context variable.

Every line also passes a redaction step, so a bearer token, an OAuth token or a client
secret that some library puts into a message is masked before it is written: also a
`token=` in a logged URL (access logs, request errors), calsync's own tokens by their shape
(`cs_…` API tokens, `csf_…` feed tokens, `csl_…` sign-in links; see models/registry.py and
models/sign_in_links.py) wherever they appear, and
all of these inside quoted JSON (`\"refresh_token\": \"…\"` in a JSON line).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import IO

CONTEXT_FIELDS = ("calendar_id", "task_id", "task", "run_id")
_context: ContextVar[dict[str, str]] = ContextVar("calsync_log_context", default={})  # noqa: B039

REDACTED = "[redacted]"
_QUOTE = r"(?:\\*['\"])"  # a quote, possibly escaped (a JSON line quoting JSON)
_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s'\",\\]+"),
    # key=value, key: value, "key": "value" for credential-like keys
    re.compile(
        r"(?i)((?:access_token|refresh_token|id_token|client_secret|password|api_token|"
        r"apitoken|feed_token|feedtoken|admin_token|metrics_token|channel_token|"
        r"x-goog-channel-token|authorization|(?<![a-z_])token)"
        rf"{_QUOTE}?\s*[:=]\s*{_QUOTE}?)"
        r"[^\s'\",&}\\]+"
    ),
    # calsync's own tokens by shape: cs_ (API), csf_ (feed) and csl_ (sign-in link, in an
    # access log's path) + 43 URL-safe characters.
    re.compile(r"(?<![0-9A-Za-z_-])cs[fl]?_[0-9A-Za-z_-]{20,}"),
    re.compile(r"ya29\.[0-9A-Za-z._-]+"),  # Google access tokens
    re.compile(r"1//[0-9A-Za-z._-]{10,}"),  # Google refresh tokens
)
# Libraries that log request URLs or bodies at INFO/DEBUG.
_QUIET_LOGGERS = ("googleapiclient.discovery", "urllib3", "google.auth", "oauthlib", "httplib2")


def redact(text: str) -> str:
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


def bind(**fields: object) -> Token[dict[str, str]]:
    """Add fields to the current context; undo with `unbind(token)`."""
    current = dict(_context.get())
    current.update({k: str(v) for k, v in fields.items() if v is not None})
    return _context.set(current)


def unbind(token: Token[dict[str, str]]) -> None:
    _context.reset(token)


@contextmanager
def bound(**fields: object) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def current_context() -> dict[str, str]:
    return dict(_context.get())


def _quote(value: str) -> str:
    if value and not re.search(r"[\s\"=]", value):
        return value
    return json.dumps(value)


class _ProcessFormatter(logging.Formatter):
    def __init__(self, process: str = "") -> None:
        super().__init__()
        self.process_name = process


class KeyValueFormatter(_ProcessFormatter):
    """`ts=… level=… logger=… msg=… calendar_id=… task_id=…` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        parts = [
            f"ts={datetime.fromtimestamp(record.created, UTC).isoformat(timespec='milliseconds')}",
            f"level={record.levelname}",
            f"logger={record.name}",
            f"msg={_quote(message)}",
        ]
        if self.process_name:
            parts.append(f"process={self.process_name}")
        for key, value in _context.get().items():
            if f"{key}=" not in message:
                parts.append(f"{key}={_quote(value)}")
        line = " ".join(parts)
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return redact(line)


class JsonFormatter(_ProcessFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "process": self.process_name,
            **_context.get(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str))


class _CalsyncHandler(logging.StreamHandler):
    """Marks the handler this module installed, so configuring twice replaces it."""


def configure_logging(
    process: str,
    *,
    fmt: str = "keyvalue",
    level: int | str = logging.INFO,
    stream: IO | None = None,
) -> logging.Handler:
    handler = _CalsyncHandler(stream or sys.stderr)
    formatter = JsonFormatter if fmt == "json" else KeyValueFormatter
    handler.setFormatter(formatter(process))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CalsyncHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
