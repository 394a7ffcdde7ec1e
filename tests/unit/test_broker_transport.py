"""The Redis transport the worker uses survives Redis going away while it waits for work."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from kombu import Connection

from core.settings import Settings
from tests.backends import use_services
from worker.broker_transport import TRANSPORT_PATH
from worker.celery_factory import create_celery


@pytest.fixture
def redis_url() -> Iterator[str]:
    if shutil.which("redis-server") is None:
        message = "redis-server not found (Debian package redis-server)"
        if use_services():
            pytest.fail(message)
        pytest.skip(message)
    from bench.harness import PrivateRedis

    server = PrivateRedis()
    server.start()
    try:
        yield server.url
    finally:
        server.destroy()


def test_closing_after_the_transport_was_torn_down_does_not_crash(redis_url: str) -> None:
    # What Celery's reconnect path does when Redis dies during BRPOP: the channel could not
    # be closed (Redis gone), the transport is torn down, then the connection is closed,
    # which closes the channel and tries to restore the unacknowledged message. The stock
    # transport raises AttributeError there, and the worker exits instead of reconnecting.
    connection = Connection(redis_url, transport=TRANSPORT_PATH)
    queue = connection.SimpleQueue("soak-restore")
    queue.put({"n": 1})
    assert queue.get(timeout=5).payload == {"n": 1}  # delivered, not acknowledged
    connection._do_close_transport()
    try:
        connection.close()
    except tuple(connection.connection_errors):
        pass  # ignored by kombu and Celery, which then reconnect


def test_redis_brokers_use_it_and_others_keep_their_scheme(tmp_path) -> None:
    on_redis = create_celery(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0"))
    assert on_redis.conf.broker_transport == TRANSPORT_PATH
    embedded = create_celery(Settings(data_dir=tmp_path))
    assert embedded.conf.broker_transport is None


def test_publishing_reuses_one_client_per_channel_and_pool(redis_url: str) -> None:
    # kombu's stock channel builds a new redis.Redis for every publish; ours keeps one
    # (bound to the channel's pool) and still delivers every message.
    connection = Connection(redis_url, transport=TRANSPORT_PATH)
    try:
        channel = connection.default_channel
        first = channel._create_client()
        assert channel._create_client() is first
        assert first.connection_pool is channel.pool
        queue = connection.SimpleQueue("reuse")
        for n in range(3):
            queue.put({"n": n})
        assert [queue.get(timeout=5).payload["n"] for _ in range(3)] == [0, 1, 2]
        channel._pool = None  # a rebuilt pool (reconnect) gets a client of its own
        assert channel._create_client() is not first
    finally:
        connection.close()
