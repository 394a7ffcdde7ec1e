"""Liveness (`/healthz`: the process answers, no I/O) and readiness (`/readyz`: the database
and the broker answer, so Google's pushes can be accepted rather than refused with 503).

`/readyz` needs no token, so its answer is kept for a second per process: a flood of probes
costs at most one database and one broker check per second and process."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from flask import Blueprint, Response, jsonify
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from models.db import get_engine
from webhook.errors import error_response
from webhook.request_scope import app_settings

log = logging.getLogger("calsync.webhook.health")

health = Blueprint("health", __name__)

# Readiness must answer quickly even when a dependency hangs.
CHECK_TIMEOUT_SECONDS = 1.0
READY_CACHE_SECONDS = 1.0

# (database url, broker url) -> (monotonic time checked, problems found); per process.
_ready_cache: dict[tuple[str, str], tuple[float, dict[str, str | None]]] = {}
_ready_lock = threading.Lock()
_monotonic = time.monotonic  # tests move it

# Each check returns None when healthy, else a short reason (never the URL: it may hold a
# password).


def _failure(exc: BaseException) -> str:
    return f"unreachable ({type(exc).__name__})"


def check_database(database_url: str) -> str | None:
    try:
        with get_engine(database_url).connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return _failure(exc)
    return None


def _check_redis(broker_url: str) -> str | None:
    import redis

    client = redis.Redis.from_url(
        broker_url,
        socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
        socket_timeout=CHECK_TIMEOUT_SECONDS,
    )
    try:
        client.ping()
    finally:
        client.close()
    return None


def _check_sqlite_file(path: Path) -> str | None:
    # kombu creates the file on first use, so a missing file is fine if it can be created.
    if not path.parent.is_dir():
        return "unreachable (directory missing)"
    if not os.access(path.parent, os.W_OK):
        return "unreachable (directory not writable)"
    if path.exists():
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=CHECK_TIMEOUT_SECONDS)
        try:
            conn.execute("SELECT 1")
        finally:
            conn.close()
    return None


def _check_sqla(broker_url: str) -> str | None:
    url = make_url(broker_url.removeprefix("sqla+"))
    if url.get_backend_name() == "sqlite":
        return _check_sqlite_file(Path(url.database or ""))
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    return None


def _check_kombu(broker_url: str) -> str | None:
    from kombu.connection import Connection

    with Connection(broker_url, connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
    return None


def check_broker(broker_url: str) -> str | None:
    scheme = broker_url.split(":", 1)[0].lower()
    try:
        if scheme in ("redis", "rediss"):
            return _check_redis(broker_url)
        if scheme.startswith("sqla+"):
            return _check_sqla(broker_url)
        if scheme == "memory":
            return None
        return _check_kombu(broker_url)
    except Exception as exc:
        return _failure(exc)


@health.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@health.get("/readyz")
def readyz() -> Response:
    settings = app_settings()
    problems = _readiness(settings.database_url, settings.broker_url)
    checks = {name: problem or "ok" for name, problem in problems.items()}
    down = [name for name, problem in problems.items() if problem]
    if not down:
        return jsonify({"status": "ok", "checks": checks})
    log.warning("not_ready down=%s", ",".join(down))
    return error_response(
        503,
        "not_ready",
        "Not ready: " + ", ".join(f"{name} {problems[name]}" for name in down) + ".",
        extra={"checks": checks},
    )


def _readiness(database_url: str, broker_url: str) -> dict[str, str | None]:
    """The checks' results, at most READY_CACHE_SECONDS old (one check at a time)."""
    key = (database_url, broker_url)
    with _ready_lock:
        cached = _ready_cache.get(key)
        if cached is not None and _monotonic() - cached[0] < READY_CACHE_SECONDS:
            return cached[1]
        problems = {"database": check_database(database_url), "broker": check_broker(broker_url)}
        _ready_cache[key] = (_monotonic(), problems)
        return problems


def forget_readiness() -> None:
    """Drop the cached answer (tests that change a dependency's health)."""
    with _ready_lock:
        _ready_cache.clear()
