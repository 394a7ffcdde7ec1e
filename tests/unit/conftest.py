"""Fixtures of the unit tests that need a real Redis (beat's leader lock, the fan-out gate)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from tests.backends import Backend

OWN_DB = 14  # 1-11: stacks (tests/conftest.py), 12-13: tests/e2e/test_lifecycle_e2e.py


@pytest.fixture
def redis_url(backend: Backend) -> Iterator[str]:
    """A Redis database of the unit tests' own, empty before and after each test; skipped
    where the suite has no Redis (outside CI; in CI the backend fails without one)."""
    url = backend.redis_url or os.environ.get("CALSYNC_TEST_REDIS_URL")
    if url is None:
        pytest.skip("needs Redis: runs in CI or with CALSYNC_TEST_BACKEND=services")
    parts = urlsplit(url)
    own = urlunsplit((parts.scheme, parts.netloc, f"/{OWN_DB}", "", ""))
    client = redis.Redis.from_url(own)
    client.flushdb()
    yield own
    client.flushdb()
    client.close()
