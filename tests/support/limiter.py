"""The rate limiter's shared daily state, cleared between tests: it lives in Redis when the
broker is Redis (CI) and in the limiter's SQLite file otherwise, and outlives a test."""

from __future__ import annotations

import time

from core.settings import Settings
from worker import rate_limit


def clear_daily_state(settings: Settings) -> None:
    """Forget every permit counted toward the daily budget, and the limiter objects."""
    limiter = rate_limit.limiter_for(settings)
    if isinstance(limiter, rate_limit.RedisLimiter):
        hours = rate_limit.counted_hours(time.time())
        limiter._client.delete(
            *[limiter._prefix + f"{rate_limit.DAILY_KEY}:hour:{h}" for h in hours],
            limiter._prefix + rate_limit.DAILY_KEY + ":bucket",
        )
    rate_limit._limiters.clear()
    for suffix in ("", "-wal", "-shm"):
        (settings.data_dir / f"rate_limit.db{suffix}").unlink(missing_ok=True)
