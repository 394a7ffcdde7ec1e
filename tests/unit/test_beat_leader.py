"""Beat's leader lock (worker/beat_leader.py) on a real Redis: one leader at a time, a
standby takes over when the leader stops renewing or releases, a leader that lost the lock
stops at once."""

from __future__ import annotations

import time

import redis

from core.settings import Settings
from worker import beat_leader
from worker.beat_leader import Leadership, scheduler_lock


def leadership(url: str) -> Leadership:
    return Leadership(scheduler_lock(Settings(broker_url=url)))


def test_no_lock_without_a_redis_broker() -> None:
    assert scheduler_lock(Settings(broker_url="sqla+sqlite:////tmp/x.db")) is None
    assert Leadership(None).check()


def test_one_leader_and_a_standby_that_takes_over_after_release(redis_url: str) -> None:
    first, second = leadership(redis_url), leadership(redis_url)
    assert first.check()
    assert not second.check()
    assert first.check()  # renewing keeps it
    first.release()
    assert second.check()
    assert not first.check()


def test_a_standby_takes_over_once_the_leader_stops_renewing(redis_url: str) -> None:
    first, second = leadership(redis_url), leadership(redis_url)
    assert first.check()
    assert not second.check()
    redis.Redis.from_url(redis_url).pexpire(beat_leader.LOCK_KEY, 1)  # the leader was killed
    time.sleep(0.05)
    assert second.check()
    # The old leader, back from a stall, finds the lock gone and stops sending.
    first._renewed = 0.0
    assert not first.check()
    assert second.check()
