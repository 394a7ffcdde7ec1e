"""One outbound fan-out per coalescing window (worker/fan_out_window.py) on a real Redis:
the first commit of a window sends a fan-out of every due host, the others in the window
send nothing; without Redis or without a window each commit sends its own."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from core.settings import Settings, configure
from tests.backends import Backend
from worker import fan_out_window
from worker.fan_out_window import fan_out_target

OWN_DB = 15  # 14: tests/unit/test_beat_leader.py


@pytest.fixture
def redis_settings(backend: Backend, settings: Settings) -> Iterator[Settings]:
    url = backend.redis_url or os.environ.get("CALSYNC_TEST_REDIS_URL")
    if url is None:
        pytest.skip("needs Redis: runs in CI or with CALSYNC_TEST_BACKEND=services")
    parts = urlsplit(url)
    own = urlunsplit((parts.scheme, parts.netloc, f"/{OWN_DB}", "", ""))
    client = redis.Redis.from_url(own)
    client.delete(fan_out_window.KEY)
    configured = dataclasses.replace(settings, broker_url=own)
    configure(configured)
    yield configured
    configure(settings)
    client.delete(fan_out_window.KEY)
    client.close()


def test_without_redis_each_commit_sends_its_own(settings: Settings) -> None:
    configure(dataclasses.replace(settings, broker_url="sqla+sqlite:////tmp/x.db"))
    try:
        assert fan_out_target(7, 0.2) == (True, 7)
        assert fan_out_target(7, 0.2) == (True, 7)
    finally:
        configure(settings)


def test_one_fan_out_of_every_host_per_window(redis_settings: Settings) -> None:
    assert fan_out_target(7, 0.3) == (True, None)  # the first: every due host
    assert fan_out_target(8, 0.3) == (False, None)  # same window: already on its way
    time.sleep(0.4)
    assert fan_out_target(9, 0.3) == (True, None)  # the next window sends again
    # Without a window every commit is its own fan-out.
    assert fan_out_target(9, 0) == (True, 9)
    assert fan_out_target(9, 0) == (True, 9)
