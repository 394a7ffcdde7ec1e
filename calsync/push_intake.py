"""The Redis intake for push notifications: the webhook's side.

With PostgreSQL and a Redis broker, an authenticated change notification is not written to
the database inside the request. One Lua script records it in the broker's Redis (atomic,
one round trip): the calendar's first receive time in a pending hash (kept if already
there, so a burst is one entry), its latest receive time, and the channel's latest receive
time and message number. A drainer thread in beat (worker/intake_drainer.py) moves these
records to the database in batches, one statement per batch, and enqueues a sync for every
calendar that went from clean to dirty: the same marks and the same coalescing as the
direct path, at a fraction of the cost per notification (bench/webhook_ingestion.py).

Nothing accepted is lost. The request answers 204 only after Redis holds the record; the
drainer deletes a batch only after its transaction committed. If Redis loses its data
(restart without persistence, flush), the drainer notices the missing epoch key and marks
every watched calendar dirty, so whatever was pending is fetched anyway. While the drainer
cannot reach the database it sets a flag that makes this script refuse, and the webhook
answers 503 so that Google retries, as on the direct path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from calsync.settings import Settings

PREFIX = "calsync:intake:"
# The live hashes the webhook writes; the drainer renames them to `<key>:<claim>` to take a
# batch, so writes never wait for a batch to finish.
PENDING = PREFIX + "pending"  # calendar id -> first receive time (ms) since the last batch
LATEST = PREFIX + "latest"  # calendar id -> latest receive time (ms)
CHANNELS = PREFIX + "channels"  # channel id -> "<latest ms> <highest message number>"
LIVE_KEYS = (PENDING, LATEST, CHANNELS)
WAKE = PREFIX + "wake"  # a list holding at most one token: "a batch is waiting"
DATABASE_DOWN = PREFIX + "database-down"  # set (with expiry) while the drainer cannot commit
EPOCH = PREFIX + "epoch"  # written once by the drainer; missing means Redis lost its data
LOCK = PREFIX + "drainer-lock"  # one drainer at a time
CLAIMS = PREFIX + "claims"  # batches taken and not yet committed (their key suffixes)

# Message numbers are compared as decimal strings without leading zeros: Lua's numbers are
# doubles and Google's message numbers may exceed 2^53. Receive times (ms) fit a double.
_ACCEPT = """
if redis.call('EXISTS', KEYS[5]) == 1 then return -1 end
local first = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
local latest = redis.call('HGET', KEYS[2], ARGV[1])
if not latest or tonumber(latest) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
local at, number = ARGV[2], ARGV[4]
local kept = redis.call('HGET', KEYS[3], ARGV[3])
if kept then
  local space = string.find(kept, ' ', 1, true)
  local kept_at, kept_number = string.sub(kept, 1, space - 1), string.sub(kept, space + 1)
  if tonumber(kept_at) > tonumber(at) then at = kept_at end
  if number == '' or (kept_number ~= '' and (#kept_number > #number or
      (#kept_number == #number and kept_number > number))) then
    number = kept_number
  end
end
redis.call('HSET', KEYS[3], ARGV[3], at .. ' ' .. number)
if first == 1 and redis.call('LLEN', KEYS[4]) == 0 then
  redis.call('RPUSH', KEYS[4], '1')
end
return first
"""


class IntakeRefused(Exception):
    """The drainer reports the database down: the notification must be retried later."""


@dataclass(frozen=True)
class IntakeRecord:
    """What one change notification leaves for the drainer."""

    calendar_id: int
    channel_id: str
    received_at: datetime
    message_number: int | None  # None: too large to store (the column is 64-bit)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def client_for(broker_url: str, **options: Any) -> redis.Redis:
    # Short timeouts: a hung Redis must turn into a 503 (Google retries), not a stuck request.
    options.setdefault("socket_timeout", 2)
    options.setdefault("socket_connect_timeout", 2)
    return redis.Redis.from_url(broker_url, **options)


class PushIntake:
    """The webhook's handle on the intake, one per process (a redis-py client is safe to
    share between threads)."""

    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.client = client_for(broker_url)
        # Sent by SHA-1 (EVALSHA); loaded again if Redis lost it (restart).
        self._accept = self.client.register_script(_ACCEPT)

    def accept(self, record: IntakeRecord) -> bool:
        """Record one notification; True when it opened a new pending entry for its calendar.
        Raises IntakeRefused while the database is down, redis errors while Redis is."""
        number = "" if record.message_number is None else str(record.message_number)
        result = self._accept(
            keys=[PENDING, LATEST, CHANNELS, WAKE, DATABASE_DOWN],
            args=[record.calendar_id, epoch_ms(record.received_at), record.channel_id, number],
        )
        if result == -1:
            raise IntakeRefused("the database is unavailable")
        return result == 1


def holds_notifications(client: redis.Redis) -> bool:
    """Whether notifications wait in the intake, not yet committed to the database."""
    return bool(client.exists(*LIVE_KEYS) or client.scard(CLAIMS))


def intake_holds_notifications(settings: Settings) -> bool:
    """`holds_notifications` for tests and benchmarks that wait for the pipeline to be
    idle; False when the settings do not use the intake."""
    if not settings.uses_redis_intake:
        return False
    client = client_for(settings.broker_url)
    try:
        return holds_notifications(client)
    finally:
        client.close()
