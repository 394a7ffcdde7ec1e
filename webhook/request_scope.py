"""Per-app settings and the per-request database session (or autocommit connection).

Both are created on first use in a request and closed at teardown (an unfinished
transaction is rolled back), so a view never leaks a connection, even when it fails.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, g
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from core.settings import Settings
from models.db import autocommit_engine, session_factory

log = logging.getLogger("calsync.webhook")

_SETTINGS_KEY = "core.settings"


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions[_SETTINGS_KEY] = settings
    app.teardown_appcontext(close_request_session)
    app.teardown_appcontext(close_request_connection)


def app_settings() -> Settings:
    """The settings the current app was created with."""
    return current_app.extensions[_SETTINGS_KEY]


def request_session() -> Session:
    """This request's session (created on first use)."""
    session: Session | None = g.get("calsync_session")
    if session is None:
        # session_factory resolves the engine per process, so gunicorn workers forked after
        # the app was built still get their own connections.
        session = session_factory(app_settings().database_url)()
        g.calsync_session = session
    return session


def read_only_session() -> Session:
    """This request's session on a connection in autocommit mode, for views that only
    SELECT: without a transaction there is no BEGIN and no ROLLBACK (two of the five round
    trips of a busy read otherwise). Each SELECT sees the latest commit. Must run before the
    request's first query."""
    session = request_session()
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return session


def close_request_session(_exc: BaseException | None = None) -> None:
    # close() rolls back whatever the view did not commit and returns the connection.
    _close_quietly(g.pop("calsync_session", None), "session")


def request_connection() -> Connection:
    """This request's connection in autocommit mode: each statement is its own transaction,
    with no BEGIN or COMMIT round trips. For views whose every write is one statement."""
    connection: Connection | None = g.get("calsync_connection")
    if connection is None:
        # Per process, like session_factory above.
        connection = autocommit_engine(app_settings().database_url).connect()
        g.calsync_connection = connection
    return connection


def close_request_connection(_exc: BaseException | None = None) -> None:
    _close_quietly(g.pop("calsync_connection", None), "connection")


def _close_quietly(resource: Session | Connection | None, what: str) -> None:
    if resource is None:
        return
    try:
        resource.close()
    except Exception as exc:  # a dead connection must not turn a sent answer into a 500
        log.warning("%s_close_failed error=%s", what, type(exc).__name__)
