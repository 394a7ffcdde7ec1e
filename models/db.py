"""Engines and sessions. One engine per database URL per process."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from core.private_files import private_file
from core.settings import get_settings

# "The database cannot be reached or is overloaded right now": worth a retry later (a 503 to
# a client, a quiet retry in the intake drainer), unlike a bug or bad data (IntegrityError,
# ProgrammingError, ...), which must show its traceback. OperationalError: a refused or lost
# connection, a statement or lock timeout, SQLite's "database is locked" or "unable to open
# database file"; InterfaceError: a connection already closed; the pool's TimeoutError: every
# pooled connection is busy; OSError: an engine that cannot even create its SQLite file's
# directory (make_engine).
DATABASE_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    PoolTimeoutError,
    OSError,
)

_engines: dict[str, Engine] = {}
_autocommit_engines: dict[Engine, Engine] = {}  # cleared with _engines
_session_makers: dict[str, sessionmaker[Session]] = {}
_engine_pid: int | None = None
# Connections a process's pool keeps between uses. Five serve a prefork child or a web
# worker's threads; a thread-pool worker keeps one per thread (keep_connections): with
# fewer, every connection beyond them was opened for one transaction and closed after it,
# each a new PostgreSQL backend (a fork, its catalog caches, its prepared statements lost).
KEPT_CONNECTIONS = 5
_kept_connections = KEPT_CONNECTIONS


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (web) run while a sync writes; busy_timeout waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            # The data dir 0700, the database 0600: it holds credentials and token hashes.
            private_file(Path(parsed.database))
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    # A silent database host must fail fast (the webhook answers 503), not hang a request.
    engine = create_engine(
        url,
        pool_size=_kept_connections,
        max_overflow=10,
        connect_args={"connect_timeout": 3},
    )
    event.listen(engine.pool, "checkin", _note_checkin)
    event.listen(engine.pool, "checkout", _ping_if_idle(engine))
    return engine


# pool_pre_ping would cost a round trip on every checkout, i.e. on every webhook request.
# A connection in steady use is known to be alive; one that sat idle (across a database
# restart, say) is pinged first and replaced if dead. A restart within the last second
# still fails the request that meets it; the pool then drops the other connections.
PING_AFTER_IDLE_SECONDS = 1.0


def _note_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    record.info["checked_in_at"] = time.monotonic()


def _ping_if_idle(engine: Engine) -> Callable[..., None]:
    def ping(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < PING_AFTER_IDLE_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("connection died while idle in the pool") from exc
        if not alive:
            raise DisconnectionError("connection died while idle in the pool")

    return ping


def keep_connections(threads: int) -> None:
    """Keep a pooled connection for each of this process's `threads` (at least the usual
    five): for a worker whose threads run transactions side by side. Engines made before
    are dropped, so the next use builds one with the larger pool."""
    global _kept_connections
    wanted = max(KEPT_CONNECTIONS, threads)
    if wanted != _kept_connections:
        _kept_connections = wanted
        dispose_engines()


def get_engine(url: str | None = None) -> Engine:
    """The process's engine for `url` (default: the configured database).

    Engines are never shared across a fork: a child process gets fresh connections.
    """
    global _engine_pid
    if _engine_pid != os.getpid():
        _forget_engines()
        _engine_pid = os.getpid()
    url = url or get_settings().database_url
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = make_engine(url)
    return engine


def autocommit_engine(url: str | None = None) -> Engine:
    """`get_engine(url)` (same pool) with each statement committing on its own: no BEGIN or
    COMMIT round trips, for work whose every write is one atomic statement."""
    engine = get_engine(url)  # after a fork this also forgets the parent's engines
    autocommit = _autocommit_engines.get(engine)
    if autocommit is None:
        autocommit = _autocommit_engines[engine] = engine.execution_options(
            isolation_level="AUTOCOMMIT"
        )
    return autocommit


def _forget_engines() -> None:
    _engines.clear()
    _autocommit_engines.clear()
    _session_makers.clear()


def dispose_engines(*, after_fork: bool = False) -> None:
    """Drop pooled connections. After a fork the parent's sockets are left alone (closing
    them would break the parent), otherwise they are closed."""
    for engine in _engines.values():
        engine.dispose(close=not after_fork)
    _forget_engines()


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    """The process's sessionmaker for `url`, made once per engine: each sessionmaker builds
    a Session subclass with its own event setup, too slow to repeat per request."""
    engine = get_engine(url)
    key = url or get_settings().database_url
    maker = _session_makers.get(key)
    if maker is None or maker.kw["bind"] is not engine:
        maker = _session_makers[key] = sessionmaker(engine, expire_on_commit=False)
    return maker


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error."""
    session = session_factory(url)()
    try:
        with session.begin():
            yield session
    finally:
        session.close()
