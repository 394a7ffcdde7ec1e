"""The shared rate limiter: a sliding-window log per account and per project; callers wait."""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from pathlib import Path

import pytest

from core.settings import Settings
from tests.backends import REDIS_URL, port_open, use_services
from worker import rate_limit
from worker.rate_limit import WINDOW_SECONDS, RedisLimiter, SqliteLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_sqlite_limiter_grants_up_to_the_limit_then_says_how_long_to_wait(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = SqliteLimiter(str(tmp_path / "rl.db"), clock=clock)
    assert [limiter.try_take("a", 3, 100) for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now += 10
    assert limiter.try_take("a", 3, 100) == pytest.approx(WINDOW_SECONDS - 10)
    # Another account has its own budget ...
    assert limiter.try_take("b", 3, 100) == 0.0
    # ... until the window has slid past the first permits.
    clock.now += WINDOW_SECONDS - 10
    assert [limiter.try_take("a", 3, 100) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_take("a", 3, 100) == pytest.approx(WINDOW_SECONDS)


def test_sqlite_limiter_enforces_the_project_budget_across_accounts(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = SqliteLimiter(str(tmp_path / "rl.db"), clock=clock)
    assert [limiter.try_take(str(n), 10, 4) for n in range(4)] == [0.0] * 4
    assert limiter.try_take("new", 10, 4) == pytest.approx(WINDOW_SECONDS)
    # A refused request takes no permit.
    clock.now += WINDOW_SECONDS
    assert limiter.try_take("new", 10, 4) == 0.0


def test_sqlite_limiter_is_shared_between_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "rl.db")
    SqliteLimiter(path).try_take("a", 2, 100)
    pid = os.fork()
    if pid == 0:  # the child takes the last permit through its own connection
        code = 0 if SqliteLimiter(path).try_take("a", 2, 100) == 0 else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert SqliteLimiter(path).try_take("a", 2, 100) > 0


def test_acquire_waits_instead_of_failing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, account_rate_per_minute=2, project_rate_per_minute=50)
    clock = FakeClock()
    rate_limit._limiters[(os.getpid(), str(tmp_path / "rate_limit.db"))] = SqliteLimiter(
        str(tmp_path / "rate_limit.db"), clock=clock
    )
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    try:
        assert rate_limit.acquire(7, settings, sleep=sleep) == 0
        assert rate_limit.acquire(7, settings, sleep=sleep) == 0
        waited = rate_limit.acquire(7, settings, sleep=sleep)
    finally:
        rate_limit._limiters.clear()
    assert WINDOW_SECONDS <= waited < WINDOW_SECONDS + 1
    assert max(slept) <= rate_limit.MAX_SLEEP_SECONDS + 0.05


def test_concurrent_takers_never_exceed_the_limit(tmp_path: Path) -> None:
    limiter = SqliteLimiter(str(tmp_path / "rl.db"))
    granted: list[bool] = []
    lock = threading.Lock()

    def take() -> None:
        ok = limiter.try_take("a", 25, 1000) == 0
        with lock:
            granted.append(ok)

    threads = [threading.Thread(target=take) for _ in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert granted.count(True) == 25


def _redis_url() -> str:
    if not port_open("127.0.0.1", 6379):
        if use_services() or os.environ.get("CI"):
            pytest.fail("Redis is not reachable on 127.0.0.1:6379")
        pytest.skip("Redis not reachable (Debian package redis-server)")
    return REDIS_URL


def test_redis_limiter_grants_up_to_the_limit_and_shares_the_window() -> None:
    prefix = f"calsync:test:{uuid.uuid4().hex}:"
    first = RedisLimiter(_redis_url(), prefix=prefix)
    second = RedisLimiter(_redis_url(), prefix=prefix)  # another worker
    try:
        assert [first.try_take("a", 3, 5) for _ in range(2)] == [0.0, 0.0]
        assert second.try_take("a", 3, 5) == 0.0
        wait = second.try_take("a", 3, 5)
        assert 0 < wait <= WINDOW_SECONDS
        assert first.try_take("b", 3, 5) == 0.0
        assert first.try_take("b", 3, 5) == 0.0
        assert first.try_take("c", 3, 5) > 0  # the project budget (5) is used up
    finally:
        keys = list(first._client.scan_iter(prefix + "*"))
        if keys:
            first._client.delete(*keys)


def test_limiter_follows_the_broker(tmp_path: Path) -> None:
    embedded = Settings(data_dir=tmp_path)
    assert isinstance(rate_limit.limiter_for(embedded), SqliteLimiter)
    redis_settings = dataclasses.replace(embedded, broker_url="redis://127.0.0.1:6399/9")
    assert isinstance(rate_limit.limiter_for(redis_settings), RedisLimiter)
    rate_limit._limiters.clear()
