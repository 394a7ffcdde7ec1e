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
from worker import google_client, rate_limit
from worker.rate_limit import WINDOW_SECONDS, RedisLimiter, SqliteLimiter, daily_bucket

NO_MINUTE_LIMIT = 10**9


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
        assert rate_limit.acquire("user-7", settings, sleep=sleep) == 0
        assert rate_limit.acquire("user-7", settings, sleep=sleep) == 0
        waited = rate_limit.acquire("user-7", settings, sleep=sleep)
    finally:
        rate_limit._limiters.clear()
    assert WINDOW_SECONDS <= waited < WINDOW_SECONDS + 1
    assert max(slept) <= rate_limit.MAX_SLEEP_SECONDS + 0.05


def test_a_shorter_rate_window_counts_permits_over_it(tmp_path: Path) -> None:
    # CALSYNC_RATE_WINDOW_SECONDS (tests compress time with it): the budget is per that
    # window, plus the same guard as the minute.
    settings = Settings(
        data_dir=tmp_path,
        account_rate_per_minute=2,
        project_rate_per_minute=50,
        rate_window_seconds=5,
    )
    assert Settings.from_env({"CALSYNC_RATE_WINDOW_SECONDS": "5"}).rate_window_seconds == 5
    clock = FakeClock()
    rate_limit._limiters[(os.getpid(), str(tmp_path / "rate_limit.db"))] = SqliteLimiter(
        str(tmp_path / "rate_limit.db"), clock=clock
    )

    def sleep(seconds: float) -> None:
        clock.now += seconds

    try:
        assert rate_limit.acquire("user-7", settings, sleep=sleep) == 0
        assert rate_limit.acquire("user-7", settings, sleep=sleep) == 0
        waited = rate_limit.acquire("user-7", settings, sleep=sleep)
    finally:
        rate_limit._limiters.clear()
    window = 5 + rate_limit.WINDOW_GUARD_SECONDS
    assert window <= waited < window + 1


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
    # REDIS_URL: 127.0.0.1:6379 in CI; CALSYNC_TEST_REDIS_URL points at another one.
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    if not port_open(host, int(port)):
        if use_services() or os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable on {host}:{port}")
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


def test_daily_bucket_keeps_any_day_within_the_budget() -> None:
    capacity, rate = daily_bucket(2400)
    assert capacity == 100  # an hour's share at once
    assert capacity + rate * 86400 == pytest.approx(2400)


def _drain_for_a_day(limiter: SqliteLimiter, clock: FakeClock, budget: int) -> list[float]:
    """Take permits as fast as the limiter allows for 24 hours; the times they were granted."""
    start, granted = clock.now, []
    while True:
        wait = limiter.try_take("a", NO_MINUTE_LIMIT, NO_MINUTE_LIMIT, budget)
        if wait > 0:
            clock.now += wait
        else:
            granted.append(clock.now - start)
        if clock.now - start >= 86400:
            return granted


def test_sqlite_daily_budget_is_spread_over_the_day(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = SqliteLimiter(str(tmp_path / "rl.db"), clock=clock)
    granted = _drain_for_a_day(limiter, clock, budget=480)
    # At most the budget in 24 hours, nearly all of it used ...
    assert 470 <= len(granted) <= 480
    # ... and not spent in the morning: a burst of an hour's share, then a steady trickle.
    assert sum(1 for at in granted if at < 3600) <= 20 + 20
    assert sum(1 for at in granted if at >= 12 * 3600) >= 200
    # Counted by the hour: the oldest hour of the day has just dropped out of the count.
    first_hour = sum(1 for at in granted if at < 3600 - clock.now % 3600)
    assert limiter.daily_used() == len(granted) - first_hour


def test_sqlite_without_a_daily_budget_counts_nothing(tmp_path: Path) -> None:
    limiter = SqliteLimiter(str(tmp_path / "rl.db"), clock=FakeClock())
    assert [limiter.try_take("a", 100, 100) for _ in range(50)] == [0.0] * 50
    assert limiter.daily_used() == 0


def test_sqlite_daily_used_forgets_hours_older_than_a_day(tmp_path: Path) -> None:
    clock = FakeClock()
    limiter = SqliteLimiter(str(tmp_path / "rl.db"), clock=clock)
    for _ in range(5):
        assert limiter.try_take("a", 100, 100, 24_000) == 0
    clock.now += 12 * 3600
    assert limiter.try_take("a", 100, 100, 24_000) == 0
    assert limiter.daily_used() == 6
    clock.now += 12 * 3600 + 1
    assert limiter.daily_used() == 1


def test_daily_budget_used_ratio_reads_the_shared_state(tmp_path: Path) -> None:
    without = Settings(data_dir=tmp_path)
    assert rate_limit.daily_budget_used_ratio(without) is None
    settings = Settings(data_dir=tmp_path, project_requests_per_day=10_000)
    try:
        for _ in range(25):
            rate_limit.acquire("u", settings)
        assert rate_limit.daily_budget_used_ratio(settings) == pytest.approx(0.0025)
    finally:
        rate_limit._limiters.clear()


def test_redis_limiter_daily_budget() -> None:
    prefix = f"calsync:test:{uuid.uuid4().hex}:"
    first = RedisLimiter(_redis_url(), prefix=prefix)
    second = RedisLimiter(_redis_url(), prefix=prefix)  # another worker, same bucket
    try:
        # 48 a day: a burst of 2, then one permit every ~31 minutes.
        assert first.try_take("a", 100, 100, 48) == 0.0
        assert second.try_take("b", 100, 100, 48) == 0.0
        wait = first.try_take("c", 100, 100, 48)
        assert 1800 < wait < 1900
        assert first.daily_used() == second.daily_used() == 2
        # Without a daily budget the bucket is neither read nor counted.
        assert first.try_take("d", 100, 100) == 0.0
        assert first.daily_used() == 2
    finally:
        keys = list(first._client.scan_iter(prefix + "*"))
        if keys:
            first._client.delete(*keys)


def _credentials(refresh_token: str, **extra: str) -> dict:
    return {"client_id": "client-1", "client_secret": "s", "refresh_token": refresh_token, **extra}


def test_google_user_key_names_the_user_not_the_grant() -> None:
    key = google_client.google_user_key
    # Two calsync accounts (two grants) of one Google user: one key, whatever the case.
    assert key(_credentials("1//a"), "Ann@example.com") == key(
        _credentials("1//b"), "ann@example.com"
    )
    # The user can also come from the authorized-user JSON's `account` field.
    assert key(_credentials("1//c", account="ann@example.com")) == key(
        _credentials("1//a"), "ann@example.com"
    )
    assert key(_credentials("1//a"), "ann@example.com") != key(
        _credentials("1//a"), "bob@example.com"
    )
    # Unknown user: one grant, one budget.
    assert key(_credentials("1//a")) != key(_credentials("1//b"))
    assert key(_credentials("1//a")) == key(_credentials("1//a"))
    # Another OAuth client is another project: another per-user quota.
    other_client = {**_credentials("1//a"), "client_id": "client-2"}
    assert key(other_client, "ann@example.com") != key(_credentials("1//a"), "ann@example.com")
    assert "ann" not in key(_credentials("1//a"), "ann@example.com")


def test_two_accounts_of_one_google_user_share_the_minute_budget(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, account_rate_per_minute=2, project_rate_per_minute=50)
    clock = FakeClock()
    rate_limit._limiters[(os.getpid(), str(tmp_path / "rate_limit.db"))] = SqliteLimiter(
        str(tmp_path / "rate_limit.db"), clock=clock
    )
    ann_work = google_client.google_user_key(_credentials("1//a"), "ann@example.com")
    ann_home = google_client.google_user_key(_credentials("1//b"), "ann@example.com")
    bob = google_client.google_user_key(_credentials("1//c"), "bob@example.com")
    slept: list[float] = []
    try:
        assert rate_limit.acquire(ann_work, settings, sleep=slept.append) == 0
        assert rate_limit.acquire(bob, settings, sleep=slept.append) == 0
        assert rate_limit.acquire(ann_home, settings, sleep=slept.append) == 0
        # Ann's third request (from either account) waits; Bob's second does not.
        assert rate_limit.limiter_for(settings).try_take(ann_work, 2, 50) > 0
        assert rate_limit.limiter_for(settings).try_take(bob, 2, 50) == 0
    finally:
        rate_limit._limiters.clear()
    assert slept == []
