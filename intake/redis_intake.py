"""The Redis intake for push notifications: the web's side.

With PostgreSQL and a Redis broker, an authenticated change notification is not written to
the database inside the request. The request appends it to the web process's spool file
(intake/spool.py; one write, no network round trip) and answers 204; the process's
forwarder thread (intake/forwarder.py) sends what the spool holds to Redis every few
milliseconds with one Lua script per batch (atomic): each calendar's first receive time in a
pending hash (kept if already there, so a burst is one entry), its latest receive time, and
each channel's latest receive time and message number. A drainer thread in beat
(intake/drainer.py) moves these records to the database in batches, one statement
per batch, and enqueues a sync for every calendar that went from clean to dirty: the same
marks and the same coalescing as the direct path, at a fraction of the cost per notification
(bench/webhook_ingestion.py).

Nothing accepted is lost. A spool segment is deleted only after Redis holds its records,
and the segments of a web process that died are sent by another one on the host (each
process holds a lock on its spool). Each spooling process keeps a heartbeat in Redis
(SPOOLERS); one that stops without handing over (its host is gone) makes the drainer fetch
every watched calendar. The drainer deletes a batch only after its transaction committed.
If Redis loses its data (restart without persistence, flush), the drainer notices the
missing epoch key and marks every watched calendar dirty, so whatever was pending is fetched
anyway. While the drainer cannot reach the database it sets a flag that every batch's
answer carries back, and the webhook answers 503 so that Google retries, as on the direct
path.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

import redis

from core.settings import Settings
from intake.spool import holds_records

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

# How long after its receive time a notification may still be on its way to the database:
# the spool forwarder's linger (10 ms, intake/forwarder.py) and the drainer's (20 ms,
# intake/drainer.py). The sync's debounce counts its quiet window from what it sees.
NOTICE_DELAY_MS = 30


def notice_delay_ms(settings: Settings) -> int:
    """How long a notification may take from its receive time to the database, on the
    intake these settings use (the direct path writes it in the request: 0)."""
    return NOTICE_DELAY_MS if settings.uses_redis_intake else 0


SPOOLERS = PREFIX + "spoolers"  # spooling web process -> its last heartbeat (Redis time, ms)

# ARGV[1]: the spooler's id; ARGV[2]: spool lines (intake/spool.py: "<calendar id>
# <receive ms> <channel id> <message number or ->\n"). Returns {database down (0/1), new
# pending entries}. Message numbers are compared as decimal strings without leading zeros:
# Lua's numbers are doubles and Google's message numbers may exceed 2^53. Receive times
# (ms) fit a double.
_ACCEPT_SPOOLED = """
local now = redis.call('TIME')
local now_ms = string.format('%.0f', now[1] * 1000 + math.floor(now[2] / 1000))
redis.call('HSET', KEYS[6], ARGV[1], now_ms)
local opened = 0
for calendar, at, channel, number in string.gmatch(ARGV[2], '(%d+) (%d+) (%S+) (%S+)\\n') do
  if number == '-' then number = '' end
  opened = opened + redis.call('HSETNX', KEYS[1], calendar, at)
  local latest = redis.call('HGET', KEYS[2], calendar)
  if not latest or tonumber(latest) < tonumber(at) then
    redis.call('HSET', KEYS[2], calendar, at)
  end
  local kept = redis.call('HGET', KEYS[3], channel)
  if kept then
    local space = string.find(kept, ' ', 1, true)
    local kept_at, kept_number = string.sub(kept, 1, space - 1), string.sub(kept, space + 1)
    if tonumber(kept_at) > tonumber(at) then at = kept_at end
    if number == '' or (kept_number ~= '' and (#kept_number > #number or
        (#kept_number == #number and kept_number > number))) then
      number = kept_number
    end
  end
  redis.call('HSET', KEYS[3], channel, at .. ' ' .. number)
end
if opened > 0 and redis.call('LLEN', KEYS[4]) == 0 then
  redis.call('RPUSH', KEYS[4], '1')
end
return {redis.call('EXISTS', KEYS[5]), opened}
"""
MAX_CALL_BYTES = 256 * 1024  # spool lines per script call: bounds how long Redis is busy


def client_for(broker_url: str, **options: Any) -> redis.Redis:
    # Short timeouts: a hung Redis must turn into a 503 (Google retries), not a stuck request.
    options.setdefault("socket_timeout", 2)
    options.setdefault("socket_connect_timeout", 2)
    return redis.Redis.from_url(broker_url, **options)


@cache
def shared_client(broker_url: str) -> redis.Redis:
    """One client (one connection pool) per broker and process, with client_for's timeouts,
    for the small periodic callers (queue depth, fan-out gate): a client per call was a new
    connection each time."""
    return client_for(broker_url)


def chunks(data: bytes, limit: int) -> Iterator[bytes]:
    """`data` cut at line ends into pieces of at most `limit` bytes (a line never longer)."""
    start = 0
    while start < len(data):
        end = len(data)
        if end - start > limit:
            end = data.rindex(b"\n", start, start + limit) + 1
        yield data[start:end]
        start = end


class PushIntake:
    """A web process's handle on the intake in Redis (a redis-py client is safe to share
    between threads)."""

    def __init__(self, broker_url: str) -> None:
        self.client = client_for(broker_url)
        # Sent by SHA-1 (EVALSHA); loaded again if Redis lost it (restart).
        self._accept = self.client.register_script(_ACCEPT_SPOOLED)

    def accept_spooled(self, spooler: str, lines: bytes = b"") -> bool:
        """Record spooled notifications (none: only the heartbeat) and refresh `spooler`'s
        heartbeat; True while the drainer reports the database down. Raises redis errors
        while Redis is down (a piece that failed was not recorded; sending it again is
        harmless)."""
        database_down = False
        for piece in chunks(lines, MAX_CALL_BYTES) if lines else [b""]:
            down, _opened = self._accept(
                keys=[PENDING, LATEST, CHANNELS, WAKE, DATABASE_DOWN, SPOOLERS],
                args=[spooler, piece],
            )
            database_down = bool(down)
        return database_down

    def retire(self, spooler: str) -> None:
        """`spooler` handed over everything it held: no longer expected to beat."""
        self.client.hdel(SPOOLERS, spooler)

    def close(self) -> None:
        self.client.close()


def holds_notifications(client: redis.Redis) -> bool:
    """Whether notifications wait in the intake, not yet committed to the database."""
    return bool(client.exists(*LIVE_KEYS) or client.scard(CLAIMS))


def intake_holds_notifications(settings: Settings) -> bool:
    """`holds_notifications` for tests and benchmarks that wait for the pipeline to be
    idle; False when the settings do not use the intake."""
    if not settings.uses_redis_intake:
        return False
    if holds_records(settings.spool_directory):
        return True
    client = client_for(settings.broker_url)
    try:
        return holds_notifications(client)
    finally:
        client.close()
