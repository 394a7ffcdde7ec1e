"""A rate limiter shared by every worker: each Google user, and the project as a whole,
stays under its requests-per-minute budget, and the project under its optional daily
budget. Requests wait for a permit; they never fail.

Per minute: a sliding-window log; a permit is a timestamp; a request may go when fewer than
`limit` permits were handed out in the last window. Exact (no burst at window edges), which
is what Google's per-minute quota counts. The per-user key is the Google user (see
`worker/google_client.py` `google_user_key`): Google counts 600/min per user, so two calsync
accounts of one Google user share one budget.

Per day (`CALSYNC_PROJECT_REQUESTS_PER_DAY`): a token bucket, not a 24 h sliding log. A log
would hold up to a day's worth of timestamps (a million); a bucket is two numbers, and it
spreads the day instead of letting a morning spend it: it holds at most an hour's share
(`daily_bucket`) and refills continuously at (budget - burst) / 86400 per second, so any 24
hours hand out at most burst + refill = budget permits. Beside the bucket, permits are
counted per hour; the last 24 hourly counts are the budget used (`daily_used`), which the
gauge shows and the scheduler reads to let safety-net work yield while the budget is low.

- Redis broker: one Lua script checks and takes the account and project permits atomically,
  with Redis's own clock, so all workers on all machines share one budget.
- Embedded default: a small SQLite file in the data directory (`BEGIN IMMEDIATE` serializes
  the check-and-take), shared by all processes on the machine.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from core.settings import Settings, get_settings

# One minute plus a guard: a permit is taken a moment before the request reaches Google, so
# counting over a slightly longer window keeps every real sliding minute under the limit.
# (CALSYNC_RATE_WINDOW_SECONDS replaces the minute, for tests; the guard stays.)
WINDOW_GUARD_SECONDS = 1.0
WINDOW_SECONDS = 60 + WINDOW_GUARD_SECONDS
MAX_SLEEP_SECONDS = 2.0  # re-check at least this often (permits free up as others finish)
PROJECT_KEY = "project"
DAILY_KEY = "daily"
DAY_SECONDS = 86400
HOUR_SECONDS = 3600


def daily_bucket(budget: int) -> tuple[float, float]:
    """(capacity, refill per second) of the daily token bucket: at most an hour's share at
    once, and a refill that keeps any 24 hours within the budget (burst + refill = budget)."""
    capacity = max(1.0, budget / 24)
    return capacity, max(budget - capacity, 1.0) / DAY_SECONDS


def counted_hours(now: float) -> list[int]:
    """The hours (since the epoch) whose permit counts make up the day: this one and the 23
    before it."""
    hour = int(now // HOUR_SECONDS)
    return list(range(hour - 23, hour + 1))


class Limiter(Protocol):
    def try_take(
        self,
        account_key: str,
        account_limit: int,
        project_limit: int,
        daily_budget: int = 0,
        window_seconds: float = WINDOW_SECONDS,
    ) -> float:
        """Take one permit for the user and the project (and of the daily budget, when one
        is set), or return the seconds to wait. The per-minute limits count permits over the
        last `window_seconds`."""
        ...

    def daily_used(self) -> int:
        """Permits handed out in the last 24 hours (counted by the hour) under a daily budget."""
        ...


_REDIS_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local wait = 0
for i = 1, 2 do
  local key = KEYS[i]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local limit = tonumber(ARGV[i + 1])
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local freeing = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local w = tonumber(freeing[2]) + window - now
    if w > wait then wait = w end
  end
end
-- The daily token bucket (capacity 0: no daily budget).
local capacity = tonumber(ARGV[5])
local tokens = 0
if capacity > 0 then
  local rate = tonumber(ARGV[6]) / 1000
  local state = redis.call('HMGET', KEYS[3], 'tokens', 'at')
  tokens = tonumber(state[1])
  local at = tonumber(state[2])
  if tokens == nil or at == nil then
    tokens = capacity
    at = now
  end
  if now > at then tokens = math.min(capacity, tokens + (now - at) * rate) end
  if tokens < 1 - 1e-6 then
    local w = math.ceil((1 - tokens) / rate)
    if w > wait then wait = w end
  end
end
if wait > 0 then return wait end
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[i], window)
end
if capacity > 0 then
  redis.call('HSET', KEYS[3], 'tokens', tostring(tokens - 1), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[3], 2 * 86400000)
  redis.call('INCR', KEYS[4])
  redis.call('EXPIRE', KEYS[4], 25 * 3600)
end
return 0
"""


class RedisLimiter:
    def __init__(self, url: str, prefix: str = "calsync:ratelimit:") -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._script = self._client.register_script(_REDIS_SCRIPT)
        self._prefix = prefix

    def try_take(
        self,
        account_key: str,
        account_limit: int,
        project_limit: int,
        daily_budget: int = 0,
        window_seconds: float = WINDOW_SECONDS,
    ) -> float:
        capacity, rate = daily_bucket(daily_budget) if daily_budget > 0 else (0.0, 0.0)
        # The hour's counter key is named by this machine's clock: an hour is coarse enough
        # for the clocks of the workers to agree.
        hour = counted_hours(time.time())[-1]
        wait_ms = self._script(
            keys=[
                self._prefix + "account:" + account_key,
                self._prefix + PROJECT_KEY,
                self._prefix + DAILY_KEY + ":bucket",
                self._prefix + f"{DAILY_KEY}:hour:{hour}",
            ],
            args=[
                int(window_seconds * 1000),
                account_limit,
                project_limit,
                uuid.uuid4().hex,
                repr(capacity),
                repr(rate),
            ],
        )
        return int(wait_ms) / 1000

    def daily_used(self) -> int:
        keys = [self._prefix + f"{DAILY_KEY}:hour:{h}" for h in counted_hours(time.time())]
        return sum(int(count) for count in self._client.mget(keys) if count is not None)


class SqliteLimiter:
    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS permits (key TEXT NOT NULL, at REAL NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS permits_key_at ON permits (key, at)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS buckets "
                "(key TEXT PRIMARY KEY, tokens REAL NOT NULL, at REAL NOT NULL)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS hourly_counts "
                "(hour INTEGER PRIMARY KEY, count INTEGER NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=30, isolation_level=None)

    def try_take(
        self,
        account_key: str,
        account_limit: int,
        project_limit: int,
        daily_budget: int = 0,
        window_seconds: float = WINDOW_SECONDS,
    ) -> float:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            now = self._clock()
            # Also drop permits from the future: the clock was set back (tests, NTP).
            conn.execute(
                "DELETE FROM permits WHERE at <= ? OR at > ?",
                (now - window_seconds, now + 1),
            )
            wait = 0.0
            keys = (("account:" + account_key, account_limit), (PROJECT_KEY, project_limit))
            for key, limit in keys:
                count = conn.execute(
                    "SELECT count(*) FROM permits WHERE key = ?", (key,)
                ).fetchone()
                if count[0] >= limit:
                    freeing = conn.execute(
                        "SELECT at FROM permits WHERE key = ? ORDER BY at LIMIT 1 OFFSET ?",
                        (key, count[0] - limit),
                    ).fetchone()
                    wait = max(wait, freeing[0] + window_seconds - now)
            tokens = 0.0
            if daily_budget > 0:
                capacity, rate = daily_bucket(daily_budget)
                row = conn.execute(
                    "SELECT tokens, at FROM buckets WHERE key = ?", (DAILY_KEY,)
                ).fetchone()
                tokens, at = (capacity, now) if row is None else row
                if now > at:
                    tokens = min(capacity, tokens + (now - at) * rate)
                # A hair under one is one: float rounding must not make a waiter wait again
                # for a microsecond (and the next permit borrows that much at most).
                if tokens < 1 - 1e-6:
                    wait = max(wait, (1 - tokens) / rate)
            if wait <= 0:
                conn.executemany(
                    "INSERT INTO permits (key, at) VALUES (?, ?)", [(k, now) for k, _ in keys]
                )
                if daily_budget > 0:
                    conn.execute(
                        "INSERT OR REPLACE INTO buckets (key, tokens, at) VALUES (?, ?, ?)",
                        (DAILY_KEY, tokens - 1, now),
                    )
                    hours = counted_hours(now)
                    conn.execute("DELETE FROM hourly_counts WHERE hour < ?", (hours[0],))
                    conn.execute(
                        "INSERT INTO hourly_counts (hour, count) VALUES (?, 1) "
                        "ON CONFLICT (hour) DO UPDATE SET count = count + 1",
                        (hours[-1],),
                    )
            conn.execute("COMMIT")
            return max(0.0, wait)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    def daily_used(self) -> int:
        hours = counted_hours(self._clock())
        conn = self._connect()
        try:
            (used,) = conn.execute(
                "SELECT coalesce(sum(count), 0) FROM hourly_counts WHERE hour BETWEEN ? AND ?",
                (hours[0], hours[-1]),
            ).fetchone()
        finally:
            conn.close()
        return int(used)


_limiters: dict[tuple[int, str], Limiter] = {}


def limiter_for(settings: Settings) -> Limiter:
    """The process's limiter for this configuration (a fresh one after a fork)."""
    if settings.broker_url.startswith(("redis://", "rediss://")):
        where = settings.broker_url
    else:
        where = str(settings.data_dir / "rate_limit.db")
    key = (os.getpid(), where)
    limiter = _limiters.get(key)
    if limiter is None:
        if where == settings.broker_url:
            limiter = RedisLimiter(where)
        else:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            limiter = SqliteLimiter(where)
        _limiters[key] = limiter
    return limiter


def daily_budget_used_ratio(settings: Settings) -> float | None:
    """The share (0..1) of CALSYNC_PROJECT_REQUESTS_PER_DAY used in the last 24 hours, or
    None without a daily budget."""
    budget = settings.project_requests_per_day
    if not budget:
        return None
    return min(1.0, limiter_for(settings).daily_used() / budget)


def acquire(
    user_key: str | None,
    settings: Settings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Block until a request of this Google user (`google_client.google_user_key`) may go.
    Returns the seconds waited."""
    settings = settings or get_settings()
    limiter = limiter_for(settings)
    account_key = user_key or "unknown"
    waited = 0.0
    while True:
        wait = limiter.try_take(
            account_key,
            settings.account_rate_per_minute,
            settings.project_rate_per_minute,
            settings.project_requests_per_day or 0,
            settings.rate_window_seconds + WINDOW_GUARD_SECONDS,
        )
        if wait <= 0:
            return waited
        # A little jitter so waiting workers do not all retry in the same millisecond.
        pause = min(wait, MAX_SLEEP_SECONDS) + random.uniform(0, 0.05)
        sleep(pause)
        waited += pause
