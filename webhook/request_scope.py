"""Per-app settings and the per-request database session.

The session is created on first use in a request and closed at teardown (an unfinished
transaction is rolled back), so a view never leaks a connection, even when it fails.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from calsync.settings import Settings
from models.db import session_factory

log = logging.getLogger("calsync.webhook")

_SETTINGS_KEY = "calsync.settings"


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions[_SETTINGS_KEY] = settings
    app.teardown_appcontext(close_request_session)


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


def close_request_session(_exc: BaseException | None = None) -> None:
    session: Session | None = g.pop("calsync_session", None)
    if session is not None:
        # close() rolls back whatever the view did not commit and returns the connection.
        try:
            session.close()
        except Exception as exc:  # a dead connection must not turn a sent answer into a 500
            log.warning("session_close_failed error=%s", type(exc).__name__)
