"""A rate limiter shared by every worker: each Google account, and the project as a whole,
stays under its requests-per-minute budget. Requests wait for a permit; they never fail.

Sliding-window log: a permit is a timestamp; a request may go when fewer than `limit`
permits were handed out in the last window. Exact (no burst at window edges), which is what
Google's per-minute quota counts.

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
WINDOW_SECONDS = 61.0
MAX_SLEEP_SECONDS = 2.0  # re-check at least this often (permits free up as others finish)
PROJECT_KEY = "project"


class Limiter(Protocol):
    def try_take(self, account_key: str, account_limit: int, project_limit: int) -> float:
        """Take one permit for the account and the project, or return the seconds to wait."""
        ...


_REDIS_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local limit = tonumber(ARGV[i + 1])
  local count = redis.call('ZCARD', key)
  if count >= limit then
    local freeing = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
    local w = tonumber(freeing[2]) + window - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('PEXPIRE', key, window)
end
return 0
"""


class RedisLimiter:
    def __init__(self, url: str, prefix: str = "calsync:ratelimit:") -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._script = self._client.register_script(_REDIS_SCRIPT)
        self._prefix = prefix

    def try_take(self, account_key: str, account_limit: int, project_limit: int) -> float:
        wait_ms = self._script(
            keys=[self._prefix + "account:" + account_key, self._prefix + PROJECT_KEY],
            args=[int(WINDOW_SECONDS * 1000), account_limit, project_limit, uuid.uuid4().hex],
        )
        return int(wait_ms) / 1000


class SqliteLimiter:
    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS permits (key TEXT NOT NULL, at REAL NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS permits_key_at ON permits (key, at)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=30, isolation_level=None)

    def try_take(self, account_key: str, account_limit: int, project_limit: int) -> float:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            now = self._clock()
            # Also drop permits from the future: the clock was set back (tests, NTP).
            conn.execute(
                "DELETE FROM permits WHERE at <= ? OR at > ?",
                (now - WINDOW_SECONDS, now + 1),
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
                    wait = max(wait, freeing[0] + WINDOW_SECONDS - now)
            if wait <= 0:
                conn.executemany(
                    "INSERT INTO permits (key, at) VALUES (?, ?)", [(k, now) for k, _ in keys]
                )
            conn.execute("COMMIT")
            return max(0.0, wait)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()


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


def acquire(
    account_id: int | None,
    settings: Settings | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Block until a request for this account may go. Returns the seconds waited."""
    settings = settings or get_settings()
    limiter = limiter_for(settings)
    account_key = str(account_id) if account_id is not None else "unknown"
    waited = 0.0
    while True:
        wait = limiter.try_take(
            account_key, settings.account_rate_per_minute, settings.project_rate_per_minute
        )
        if wait <= 0:
            return waited
        # A little jitter so waiting workers do not all retry in the same millisecond.
        pause = min(wait, MAX_SLEEP_SECONDS) + random.uniform(0, 0.05)
        sleep(pause)
        waited += pause
