"""Suite-wide fixtures: settings pointing at the chosen backend, a migrated database that is
emptied between tests, and a clean broker."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient
from kombu import pools
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql

from core.settings import Settings, configure
from models import Base, FleetCount
from models.db import dispose_engines, get_engine
from tests.backends import Backend, create_backend, drop_backend

TEST_SECRET_KEY = "test-key-not-for-production-Xq3vR8tLm2ZpK7wN4bY6cJ"
TEST_ADMIN_TOKEN = "test-admin-token"

RAM_DISK = Path("/dev/shm")
RAM_DISK_MIN_FREE = 1 << 30  # the soak's private PostgreSQL cluster, logs, SQLite files


def pytest_configure(config: pytest.Config) -> None:
    """Temporary files (tmp_path, and through TMPDIR those of the processes the tests start)
    go to RAM when the machine has room there and nobody chose a place: SQLite syncs every
    commit to disk, which on a slow disk costs milliseconds per commit (the SQLite limiter's
    day of permits: 7 s on disk, 0.2 s in RAM). Nothing a test proves depends on the disk."""
    if os.environ.get("TMPDIR") or config.option.basetemp:
        return
    try:
        stats = os.statvfs(RAM_DISK)
    except OSError:
        return
    if stats.f_bavail * stats.f_frsize >= RAM_DISK_MIN_FREE and os.access(RAM_DISK, os.W_OK):
        os.environ["TMPDIR"] = str(RAM_DISK)
        tempfile.tempdir = None  # gettempdir() looks again


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    data_dir = tmp_path_factory.mktemp("calsync-data")
    chosen = create_backend(str(data_dir))
    from models.migrate import upgrade

    upgrade(chosen.database_url)
    yield chosen
    dispose_engines()
    drop_backend(chosen)


@pytest.fixture(scope="session")
def base_settings(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir = tmp_path_factory.mktemp("calsync-home")
    return Settings(
        data_dir=data_dir,
        database_url=backend.database_url,
        broker_url=backend.broker_url,
        secret_key=TEST_SECRET_KEY,
        admin_token=TEST_ADMIN_TOKEN,
        # Tests reuse account ids across tests; only the tests of the limiter itself may
        # make requests wait for quota.
        account_rate_per_minute=1_000_000,
        project_rate_per_minute=1_000_000,
        # In-process tests check the webhook's database effects right after a request: the
        # direct path. The Redis intake has its own tests (tests/webhook/test_push_intake.py),
        # and the process stacks (e2e, soak, benchmarks) run the production default, "auto".
        push_intake="direct",
    )


_redis_databases = iter(range(1, 12))  # 12 and 13 belong to tests/e2e/test_lifecycle_e2e.py


def point_celery_at(settings: Settings) -> None:
    """Make this process's Celery app publish to `settings.broker_url`.

    The app reads its broker once, at import; a test that starts a stack on another broker
    must move the already-imported app too, or its tasks go to a broker nobody consumes.
    """
    from worker.celery_app import app
    from worker.celery_factory import create_celery

    if app.conf.broker_url != settings.broker_url:
        _retarget(app, create_celery(settings))
    if settings.is_embedded_broker:
        from worker.celery_factory import declare_queue

        declare_queue(app)  # before the stack's processes race to create it


def _retarget(app: Celery, fresh: Celery) -> None:
    app.conf.broker_url = fresh.conf.broker_url
    app.conf.broker_transport = fresh.conf.broker_transport
    app.conf.broker_transport_options = fresh.conf.broker_transport_options
    # Drop connections and producers bound to the old broker (private, no public reset).
    # kombu keeps them in process-wide registries keyed by the broker URL: closed but left
    # there, they would come back closed ("Acquire on closed pool") when a later test
    # points the app at that broker again; reset() closes and forgets them all.
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


def isolated_settings(
    settings: Settings, backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings for one stack of real processes: its own data dir (rate limiter, metrics) and
    its own broker, so messages or permits left by one test module never reach another."""
    data_dir = tmp_path_factory.mktemp("stack-data")
    if backend.redis_url:
        broker_url = backend.redis_url.rsplit("/", 1)[0] + f"/{next(_redis_databases)}"
        import redis

        redis.Redis.from_url(broker_url).flushdb()
    else:
        broker_url = f"sqla+sqlite:///{data_dir}/broker.db"
    return dataclasses.replace(settings, data_dir=data_dir, broker_url=broker_url)


@pytest.fixture
def settings(base_settings: Settings) -> Iterator[Settings]:
    configure(base_settings)
    yield base_settings
    configure(None)


@pytest.fixture
def db(settings: Settings) -> Iterator[None]:
    """A migrated, empty database for this test."""
    _empty_all_tables(settings.database_url)
    yield
    _empty_all_tables(settings.database_url)


def _empty_all_tables(url: str) -> None:
    engine = get_engine(url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # One round trip for every table: this runs twice per test, and on a busy
            # machine each round trip to the server waits for the CPU.
            conn.exec_driver_sql(_DELETE_EVERY_TABLE)
        else:
            for table in _tables_in_deleting_order():
                conn.execute(delete(table))


def _tables_in_deleting_order() -> list:
    """Children before parents (the foreign keys); the fleet counts last, as deleting
    calendars and channels appends their changes there."""
    tables = [t for t in reversed(Base.metadata.sorted_tables) if t is not FleetCount.__table__]
    return [*tables, FleetCount.__table__]


# Compiled for PostgreSQL once.
_DELETE_EVERY_TABLE = "; ".join(
    str(delete(table).compile(dialect=postgresql.dialect()))
    for table in _tables_in_deleting_order()
)


@pytest.fixture
def session(db: None, settings: Settings):
    from models.db import session_factory

    s = session_factory(settings.database_url)()
    try:
        yield s
    finally:
        s.rollback()
        s.close()


@pytest.fixture
def app(settings: Settings, db: None) -> Flask:
    """The web app on the test database (API, webhook and status page tests)."""
    from webhook import create_app

    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
