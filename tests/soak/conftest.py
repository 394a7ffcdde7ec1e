"""One stack for the whole soak module (starting real processes is the expensive part).

Backends: with real services (CI=true or CALSYNC_TEST_BACKEND=services) the stack runs on a
PRIVATE PostgreSQL cluster and a PRIVATE redis-server, because the restart test stops and
empties them; otherwise on the embedded defaults (its own SQLite file and broker).
"""

from __future__ import annotations

import dataclasses
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from calsync.processes import child_env, free_port, settings_vars
from core.settings import Settings, configure
from models.db import dispose_engines
from models.migrate import upgrade
from tests.backends import Backend
from tests.conftest import isolated_settings, point_celery_at
from tests.soak.services import PrivatePostgres, PrivateRedis
from tests.soak.stack import SoakPlan, SoakReport, SoakStack, synced_and_watched, wait_for

LEASE_SECONDS = 5
SWEEP_AFTER_SECONDS = 2


@pytest.fixture(scope="module")
def soak_plan() -> SoakPlan:
    return SoakPlan.from_env()


@pytest.fixture(scope="module")
def soak_report(soak_plan: SoakPlan, tmp_path_factory: pytest.TempPathFactory) -> SoakReport:
    """Written after every test: to $CALSYNC_SOAK_REPORT, else under pytest's tmp dir."""
    chosen = os.environ.get("CALSYNC_SOAK_REPORT")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("soak") / "soak-report.json"
    return SoakReport(soak_plan, path)


@pytest.fixture(scope="module")
def soak_stack(
    backend: Backend,
    base_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    soak_plan: SoakPlan,
) -> Iterator[SoakStack]:
    postgres: PrivatePostgres | None = None
    redis: PrivateRedis | None = None
    stack: SoakStack | None = None
    began = time.monotonic()
    try:
        if backend.kind == "services":
            # Must fail, not skip, in CI: a missing initdb or redis-server raises here.
            data_dir = tmp_path_factory.mktemp("soak-data")
            postgres = PrivatePostgres().create()
            postgres.start()
            redis = PrivateRedis()
            redis.start()
            database_url = postgres.create_database(f"calsync_soak_{uuid.uuid4().hex[:8]}")
            settings = dataclasses.replace(
                base_settings,
                data_dir=data_dir,
                database_url=database_url,
                broker_url=redis.url,
            )
        else:
            isolated = isolated_settings(base_settings, backend, tmp_path_factory)
            database_url = f"sqlite:///{isolated.data_dir}/soak.db"
            settings = dataclasses.replace(isolated, database_url=database_url)
        upgrade(database_url)
        emulator_url = f"http://127.0.0.1:{free_port()}"
        web_port = free_port()
        settings = dataclasses.replace(
            settings,
            public_url=f"http://127.0.0.1:{web_port}",
            google_api_endpoint=emulator_url + "/calendar/v3/",
            google_token_uri=emulator_url + "/token",
            lease_seconds=LEASE_SECONDS,
            sweep_after_seconds=SWEEP_AFTER_SECONDS,
            # Dropped notifications are only recovered by the safety net: keep it short.
            safety_net_seconds=soak_plan.safety_net_seconds,
            poll_seconds=soak_plan.safety_net_seconds,
            push_intake="auto",  # the production default: the Redis intake on PG + Redis
        )
        configure(settings)
        point_celery_at(settings)
        stack = SoakStack(
            settings=settings,
            env=child_env(settings_vars(settings)),
            logs=tmp_path_factory.mktemp("soak-logs"),
            emulator_url=emulator_url,
            web_port=web_port,
            backend_kind=backend.kind,
            postgres=postgres,
            redis=redis,
        )
        stack.start(soak_plan)
        stack.calendars = [
            stack.attach(f"soak{n:03d}@example.com") for n in range(soak_plan.calendars)
        ]
        # Gets forged notifications only, never a real change.
        stack.canary = stack.attach("canary@example.com")
        ids = [cal.calendar_id for cal in [*stack.calendars, stack.canary]]
        wait_for(lambda: synced_and_watched(ids), 180, "first sync and watch", stack)
        stack.setup_seconds = time.monotonic() - began
        yield stack
    finally:
        if stack is not None:
            stack.stop()
        configure(None)
        dispose_engines()
        point_celery_at(base_settings)
        if redis is not None:
            redis.destroy()
        if postgres is not None:
            postgres.destroy()
