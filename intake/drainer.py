"""The Redis intake's drainer: moves accepted push notifications into the database.

A thread in the beat process (`start_in_beat`), the one process a deployment runs exactly
once; a lock in Redis keeps a second one (a stray beat, a test) from working at the same
time and lets it take over if the first dies. Each round it takes everything recorded since
the last round as one batch (renaming the live hashes, so the webhook never waits), applies
the batch in one transaction (intake.records.record_change_batch), enqueues a sync for every
calendar that went from clean to dirty, and only then deletes the batch. A batch whose
round failed stays listed in the claims set and is applied again next round: every write
is "set if unset" or "the later of", so applying twice changes nothing twice.

Waking: a web process's spool forwarder pushes a token when it opens a new pending entry;
the drainer blocks on that list (at most WAKE_SECONDS), so a lone notification is in the
database within a few milliseconds and a flood is drained in back-to-back batches.

Lost notifications are made up for by fetching every watched calendar once: when Redis lost
its data (the epoch key is missing), and when a web process stopped beating without handing
its spool over (SPOOLER_LOST_MS; intake/spool.py).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import redis

from core.errors import EnqueueError
from core.settings import Settings
from intake import redis_intake as keys
from intake.records import (
    CalendarBatchRow,
    ChannelBatchRow,
    mark_watched_calendars_dirty,
    record_calendar_batch,
    record_channel_batch,
)
from models.base import utcnow
from models.db import DATABASE_UNAVAILABLE_ERRORS, autocommit_engine

log = logging.getLogger("calsync.worker.intake")

LOCK_MS = 10_000  # a drainer that stops renewing loses the lock after this
WAKE_SECONDS = 1.0  # longest sleep between rounds (lock renewal, epoch check)
# Shortest time between rounds: under a flood, rounds would otherwise run back to back,
# each paying its fixed round trips for a handful of notifications. A lone notification
# still waits at most this long.
LINGER_SECONDS = 0.02
DATABASE_DOWN_MS = 5_000  # the webhook refuses for this long after a failed commit
# Channels' bookkeeping (last notification, message number) is diagnostic, not what drives
# syncs: it is written at most this often, from what the batches since carried.
CHANNEL_WRITE_SECONDS = 1.0
RETRY_SECONDS = 0.5
# A web process that has not beaten for this long is gone without handing its spool over
# (its host died: a process that dies on a live host is adopted by a sibling within a
# second or two). What it held is unknown, so every watched calendar is fetched.
SPOOLER_LOST_MS = 30_000
SPOOLER_CHECK_SECONDS = 1.0
MAX_RETRY_SECONDS = 5.0

# One script: renew or take the lock, check the epoch, and take the live hashes as a batch.
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then
  if holder then return {0, 0, 0} end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local epoch = redis.call('EXISTS', KEYS[2])
local moved = 0
for i = 4, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('RENAME', KEYS[i], KEYS[i] .. ':' .. ARGV[3])
    moved = moved + 1
  end
end
if moved > 0 then redis.call('SADD', KEYS[3], ARGV[3]) end
return {1, epoch, moved}
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

T = TypeVar("T")


def _from_ms(value: bytes | str | int) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, UTC)


class IntakeDrainer:
    def __init__(
        self,
        broker_url: str,
        database_url: str,
        enqueue: Callable[[list[int]], None],
        linger_seconds: float = LINGER_SECONDS,
        channel_write_seconds: float = CHANNEL_WRITE_SECONDS,
    ) -> None:
        self.linger_seconds = linger_seconds
        self.database_url = database_url
        # BLPOP waits up to WAKE_SECONDS: the socket timeout must be longer.
        self.client = keys.client_for(broker_url, socket_timeout=WAKE_SECONDS + 5)
        self._claim = self.client.register_script(_CLAIM)
        self._release = self.client.register_script(_RELEASE)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # Sends a sync for each calendar that went clean -> dirty (worker.enqueue, given by
        # beat: the intake sits below the worker and does not import it).
        self.enqueue = enqueue
        self.recoveries = 0  # rounds that found the epoch missing or a spooler lost (tests)
        self._spoolers_checked = 0.0
        self._channels = ChannelBacklog(channel_write_seconds)
        # Until this drainer's first commit, a refusal flag may be left by another one.
        self._refusing = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- thread ---------------------------------------------------------------------------

    def start(self) -> IntakeDrainer:
        self._thread = threading.Thread(target=self._run, name="intake-drainer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with contextlib.suppress(redis.RedisError):  # else the lock expires on its own
            self._release(keys=[keys.LOCK], args=[self.owner])
        self.client.close()

    def _run(self) -> None:
        delay = RETRY_SECONDS
        while not self._stop.is_set():
            try:
                if not self.drain_once():
                    self._stop.wait(WAKE_SECONDS)  # another process drains; wait to take over
                    continue
                delay = RETRY_SECONDS
                if self.client.blpop([keys.WAKE], timeout=WAKE_SECONDS):
                    self._stop.wait(self.linger_seconds)
            except Exception as exc:
                expected = isinstance(exc, (redis.RedisError, *DATABASE_UNAVAILABLE_ERRORS))
                log.warning(
                    "intake_drain_failed error=%s retry_in=%.1fs",
                    type(exc).__name__,
                    delay,
                    exc_info=not expected,  # an outage says its name; anything else its trace
                )
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)

    # --- one round ------------------------------------------------------------------------

    def drain_once(self) -> bool:
        """Take whatever is pending and apply it, with every batch left by a failed round.
        False when another drainer holds the lock. Raises on Redis or database errors (the
        batches stay claimed and are applied next time)."""
        # Claims sort in the order they were taken: a batch left by a failed round is applied
        # before a newer one, so a calendar's dirty mark keeps its earliest notification.
        suffix = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        owned, epoch_present, _moved = self._claim(
            keys=[keys.LOCK, keys.EPOCH, keys.CLAIMS, *keys.LIVE_KEYS],
            args=[self.owner, LOCK_MS, suffix],
        )
        if not owned:
            return False
        if not epoch_present:
            self._recover_lost_data()
            self.client.set(keys.EPOCH, self.owner)  # after the marks are committed
        if time.monotonic() - self._spoolers_checked >= SPOOLER_CHECK_SECONDS:
            self._check_spoolers()
        for claim in sorted(self.client.smembers(keys.CLAIMS)):
            self._apply(claim.decode() if isinstance(claim, bytes) else claim)
        return True

    def _database(self, work: Callable[..., T], *args: object) -> T:
        """Run `work(connection, *args)`, each statement committing on its own (every one is
        atomic and idempotent); while the database fails, tell the webhook to refuse (it
        answers 503 and Google retries)."""
        try:
            with autocommit_engine(self.database_url).connect() as connection:
                result = work(connection, *args)
        except DATABASE_UNAVAILABLE_ERRORS:
            self.client.set(keys.DATABASE_DOWN, "1", px=DATABASE_DOWN_MS)
            self._refusing = True
            raise
        if self._refusing:
            self.client.delete(keys.DATABASE_DOWN)
            self._refusing = False
        return result

    def _recover_lost_data(self, why: str = "intake_epoch_missing") -> None:
        """Notifications were lost: Redis lost the intake's keys (restart without
        persistence, flush), or a web host died with its spool. Every watched calendar is
        fetched once. The caller clears the cause only after this returned (the marks are
        committed), so a failure here repeats the recovery."""
        marked = self._database(mark_watched_calendars_dirty, utcnow())
        if marked:
            self.enqueue(marked)
        self.recoveries += 1
        # Also the first round on a fresh Redis: nothing to say when nothing is watched.
        log.log(
            logging.WARNING if marked else logging.INFO,
            "%s calendars_marked_dirty=%s",
            why,
            len(marked),
        )

    def _check_spoolers(self) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hgetall(keys.SPOOLERS)
            (seconds, micros), beats = pipe.execute()
        now_ms = seconds * 1000 + micros // 1000
        lost = [owner for owner, at in beats.items() if now_ms - int(at) > SPOOLER_LOST_MS]
        if lost:
            self._recover_lost_data(f"intake_spoolers_lost spoolers={len(lost)}")
            self.client.hdel(keys.SPOOLERS, *lost)
        self._spoolers_checked = time.monotonic()

    def _apply(self, suffix: str) -> None:
        names = [f"{key}:{suffix}" for key in keys.LIVE_KEYS]
        with self.client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(name)
            pending, latest, channels = pipe.execute()
        calendars = [
            CalendarBatchRow(
                int(calendar_id), _from_ms(first), _from_ms(latest.get(calendar_id, first))
            )
            for calendar_id, first in pending.items()
        ]
        for channel_id, value in channels.items():
            at, _, number = value.partition(b" ")
            self._channels.merge(channel_id.decode(), int(at), int(number) if number else None)
        transitions = self._database(record_calendar_batch, calendars)
        if transitions:
            try:
                self.enqueue(transitions)
            except EnqueueError as exc:
                # The marks are committed: the sweeper re-enqueues these calendars.
                log.warning("intake_enqueue_failed calendars=%s error=%s", len(transitions), exc)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(*names)
            pipe.srem(keys.CLAIMS, suffix)
            pipe.execute()
        if self._channels.due():
            self._database(record_channel_batch, self._channels.take())


class ChannelBacklog:
    """Channel bookkeeping gathered from batches until it is next written (kept in memory:
    a drainer that dies loses at most CHANNEL_WRITE_SECONDS of it, never a dirty mark)."""

    def __init__(self, every_seconds: float = CHANNEL_WRITE_SECONDS) -> None:
        self.every_seconds = every_seconds
        self._rows: dict[str, tuple[int, int | None]] = {}
        self._written_at = time.monotonic()

    def merge(self, channel_id: str, at_ms: int, number: int | None) -> None:
        kept = self._rows.get(channel_id)
        if kept is not None:
            at_ms = max(at_ms, kept[0])
            if number is None or (kept[1] is not None and kept[1] > number):
                number = kept[1]
        self._rows[channel_id] = (at_ms, number)

    def due(self) -> bool:
        return bool(self._rows) and time.monotonic() - self._written_at >= self.every_seconds

    def take(self) -> list[ChannelBatchRow]:
        rows = [
            ChannelBatchRow(channel_id, _from_ms(at_ms), number)
            for channel_id, (at_ms, number) in sorted(self._rows.items())
        ]
        self._rows.clear()
        self._written_at = time.monotonic()
        return rows


def start_in_beat(settings: Settings, enqueue: Callable[[list[int]], None]) -> IntakeDrainer | None:
    """The beat process's drainer, when the settings use the Redis intake."""
    if not settings.uses_redis_intake:
        return None
    drainer = IntakeDrainer(settings.broker_url, settings.database_url, enqueue).start()
    # Hand the lock on at once when beat stops (else a restarted beat waits LOCK_MS).
    atexit.register(drainer.stop, 2)
    log.info("intake_drainer_started owner=%s", drainer.owner)
    return drainer
