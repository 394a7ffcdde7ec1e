"""Celery beat's scheduler with a leader lock: several beat processes may run (one per
machine, for failover), and exactly one of them sends the periodic tasks.

The lock is a redis-py `Lock` on the broker (SET NX with an expiry, renewed by its holder):
the leader renews it on every tick (at least every RENEW_SECONDS: the tick's sleep is capped
at that); a standby tries to take it every STANDBY_POLL_SECONDS and otherwise sends nothing.
A leader killed outright stops renewing, so a standby leads within LOCK_SECONDS +
STANDBY_POLL_SECONDS; one stopped cleanly releases the lock and a standby leads within
STANDBY_POLL_SECONDS. A leader that finds its lock gone (expired during a stall, taken by
another) stops sending at once. The push intake's drainer, also in beat, has its own lock
(intake/drainer.py), so each of the two runs exactly once, not necessarily in one process.

With the embedded broker (no Redis: a single machine) there is no lock: run one beat.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import redis
from celery.beat import PersistentScheduler
from redis.exceptions import LockError

from core.settings import Settings, get_settings

log = logging.getLogger("calsync.beat")

LOCK_KEY = "calsync:beat:scheduler-lock"
LOCK_SECONDS = 10.0  # a leader that stops renewing loses the lock after this
RENEW_SECONDS = 2.0  # longest sleep between a leader's ticks (each renews)
STANDBY_POLL_SECONDS = 1.0


def scheduler_lock(settings: Settings) -> redis.lock.Lock | None:
    """The leader lock on the settings' Redis broker; None with a broker that is not Redis."""
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    client = redis.Redis.from_url(settings.broker_url, socket_timeout=2, socket_connect_timeout=2)
    # thread_local=False: beat may renew from another thread than the one that acquired.
    return client.lock(LOCK_KEY, timeout=LOCK_SECONDS, thread_local=False)


class Leadership:
    """Whether this process may send periodic tasks now, by `lock` (None: always)."""

    def __init__(self, lock: redis.lock.Lock | None) -> None:
        self.lock = lock
        self.leading = lock is None
        self._renewed = 0.0

    def check(self) -> bool:
        if self.lock is None:
            return True
        try:
            if self.leading:
                if time.monotonic() - self._renewed >= min(RENEW_SECONDS, LOCK_SECONDS / 4):
                    self.lock.reacquire()  # raises when the lock is no longer ours
                    self._renewed = time.monotonic()
            elif self.lock.acquire(blocking=False):
                self.leading, self._renewed = True, time.monotonic()
                log.info("beat_scheduler_leading lock=%s", LOCK_KEY)
        except LockError:
            self.leading = False
            log.warning("beat_scheduler_lock_lost lock=%s", LOCK_KEY)
        except redis.RedisError as exc:
            # Cannot tell whether the lock is still ours: send nothing until Redis answers
            # (nothing can be sent to a broker that is down anyway).
            log.warning("beat_scheduler_lock_unknown error=%s", type(exc).__name__)
            return False
        return self.leading

    def release(self) -> None:
        if self.lock is None or not self.leading:
            return
        self.leading = False
        with contextlib.suppress(LockError, redis.RedisError):  # else it lapses on its own
            self.lock.release()


class LeaderScheduler(PersistentScheduler):  # type: ignore[misc]  # Celery is untyped
    """PersistentScheduler (the schedule file of this machine's beat) that ticks only while
    it holds the leader lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.leadership = Leadership(scheduler_lock(get_settings()))
        if self.leadership.lock is not None:
            self.max_interval: float = min(float(self.max_interval), RENEW_SECONDS)
            log.info("beat_scheduler_started lock=%s (waits for it)", LOCK_KEY)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        if not self.leadership.check():
            return STANDBY_POLL_SECONDS
        return float(super().tick(*args, **kwargs))

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.leadership.release()
