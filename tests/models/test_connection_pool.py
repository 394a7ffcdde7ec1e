"""A thread-pool worker (the Procfile's outbound) keeps a pooled connection per thread, so
transactions running side by side reuse connections instead of opening a PostgreSQL
backend for each one beyond the usual five; other workers keep the usual five."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from celery.concurrency.prefork import TaskPool as PreforkTaskPool
from celery.concurrency.thread import TaskPool as ThreadTaskPool
from sqlalchemy import event, text

from core.settings import Settings
from models.db import KEPT_CONNECTIONS, get_engine, keep_connections, session_scope
from worker.celery_factory import _a_connection_per_thread

THREADS = 12


@pytest.fixture
def postgres(settings: Settings, db: None) -> Iterator[None]:
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only: the embedded SQLite database has no server backends")
    yield
    keep_connections(KEPT_CONNECTIONS)  # the next test's engine pools as usual


def connections_opened_by(rounds: int) -> int:
    """Connections the engine opened while `THREADS` threads ran a transaction each, all
    at once, `rounds` times."""
    opened = 0

    def count(*_args: object) -> None:
        nonlocal opened
        opened += 1

    engine = get_engine()
    event.listen(engine, "connect", count)
    together = threading.Barrier(THREADS)

    def transaction() -> None:
        with session_scope() as session:
            session.execute(text("SELECT 1"))
            together.wait(timeout=30)  # every thread holds its connection here

    try:
        for _ in range(rounds):
            threads = [threading.Thread(target=transaction) for _ in range(THREADS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        event.remove(engine, "connect", count)
    return opened


def test_a_thread_pool_worker_reuses_a_connection_per_thread(postgres: None) -> None:
    _a_connection_per_thread(instance=SimpleNamespace(pool_cls=ThreadTaskPool, concurrency=THREADS))
    assert get_engine().pool.size() == THREADS  # type: ignore[attr-defined]
    # The first round opens one per thread; the next ones open none.
    assert connections_opened_by(rounds=3) == THREADS


def test_other_workers_keep_five_and_open_the_rest_per_transaction(postgres: None) -> None:
    _a_connection_per_thread(instance=SimpleNamespace(pool_cls=PreforkTaskPool, concurrency=12))
    assert get_engine().pool.size() == KEPT_CONNECTIONS  # type: ignore[attr-defined]
    # What a thread-pool worker paid before: every round beyond the first opens again
    # connections the pool did not keep.
    assert connections_opened_by(rounds=3) > THREADS
