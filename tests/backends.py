"""Which database and broker the suite runs on.

In CI (`CI=true`) the suite runs on the real PostgreSQL and Redis and fails if either is
missing. Elsewhere it runs on the embedded defaults (SQLite file, SQLAlchemy broker) unless
`CALSYNC_TEST_BACKEND=services` asks for the real services.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass

PG_ADMIN_URL = os.environ.get(
    "CALSYNC_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CALSYNC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def use_services() -> bool:
    return (
        os.environ.get("CI", "").lower() in ("1", "true", "yes")
        or os.environ.get("CALSYNC_TEST_BACKEND") == "services"
    )


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Backend:
    database_url: str
    broker_url: str
    redis_url: str | None
    kind: str  # "services" | "embedded"
    pg_db_name: str | None = None


def create_backend(data_dir: str) -> Backend:
    if not use_services():
        return Backend(
            database_url=f"sqlite:///{data_dir}/calsync.db",
            broker_url=f"sqla+sqlite:///{data_dir}/broker.db",
            redis_url=None,
            kind="embedded",
        )
    missing = [
        name
        for name, port in (("PostgreSQL", 5432), ("Redis", 6379))
        if not port_open("127.0.0.1", port)
    ]
    if missing:
        raise RuntimeError(
            f"{' and '.join(missing)} not reachable on 127.0.0.1; CI must run on real services"
        )
    from sqlalchemy import create_engine, text

    name = f"calsync_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return Backend(
        database_url=f"{base}/{name}",
        broker_url=REDIS_URL,
        redis_url=REDIS_URL,
        kind="services",
        pg_db_name=name,
    )


def drop_backend(backend: Backend) -> None:
    if backend.pg_db_name is None:
        return
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{backend.pg_db_name}" WITH (FORCE)'))
    admin.dispose()
