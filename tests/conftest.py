"""Suite-wide fixtures: settings pointing at the chosen backend, a migrated database that is
emptied between tests, and a clean broker."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import delete

from calsync.settings import Settings, configure
from models import Base
from models.db import dispose_engines, get_engine
from tests.backends import Backend, create_backend, drop_backend

TEST_SECRET_KEY = "test-secret-key-not-for-production"
TEST_ADMIN_TOKEN = "test-admin-token"


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
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process (worker, web) see the same settings."""
    env = dict(os.environ)
    for name in (
        "data_dir",
        "database_url",
        "broker_url",
        "public_url",
        "google_api_endpoint",
        "google_token_uri",
        "google_auth_uri",
        "secret_key",
        "admin_token",
        "stale_after_seconds",
        "sync_horizon_days",
        "lease_seconds",
        "sweep_after_seconds",
        "safety_net_seconds",
        "channel_ttl_seconds",
        "renew_before_seconds",
    ):
        value = getattr(settings, name)
        if value is not None:
            env["CALSYNC_" + name.upper()] = str(value)
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    return env


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
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(delete(table))


@pytest.fixture
def session(db: None, settings: Settings):
    from models.db import session_factory

    s = session_factory(settings.database_url)()
    try:
        yield s
    finally:
        s.rollback()
        s.close()
