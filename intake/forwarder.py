"""The web process's forwarder: a thread that sends what the push spool holds to the Redis
intake (intake/spool.py → intake/redis_intake.py).

A request appends and wakes it; it waits LINGER_SECONDS so that one script call carries
what the process accepted meanwhile, seals the segment, sends the sealed segments oldest
first and deletes each once Redis holds it. At least every HEARTBEAT_SECONDS it calls Redis
even when idle: that is the process's heartbeat, and the answer tells it whether the
drainer can reach the database. Every ADOPT_SECONDS it sends the spools of processes on the
host that died.

What the webhook reads from it: `broker_down` (the last call to Redis failed) and
`database_down` (the drainer's flag, as of the last call); while either holds, the webhook
answers 503 so that Google retries, and the forwarder keeps trying every RETRY_SECONDS.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import redis

from intake.redis_intake import PushIntake
from intake.spool import PushSpool

log = logging.getLogger("calsync.webhook.spool")

LINGER_SECONDS = 0.01
HEARTBEAT_SECONDS = 1.0
RETRY_SECONDS = 0.2
ADOPT_SECONDS = 1.0


def spooler_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class SpoolForwarder:
    def __init__(self, intake: PushIntake, spool_dir: Path) -> None:
        self.intake = intake
        self.spool = PushSpool(spool_dir, spooler_id())
        self.broker_down = False
        self.database_down = False
        self.registered = False
        self._last_call = 0.0
        self._last_adoption = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._round = threading.Lock()  # one round at a time (thread, close, tests)
        self._thread: threading.Thread | None = None

    @property
    def owner(self) -> str:
        return self.spool.owner

    def ensure_started(self) -> None:
        """Register (one call to Redis) and start the thread, on the first notification.
        Raises redis errors while Redis is down: nothing may be accepted before this
        process beats, or a host lost right after would go unnoticed."""
        if self._thread is not None:
            return
        with self._round:
            if self._thread is not None:
                return
            if not self.registered:
                self._call()
            self._thread = threading.Thread(target=self._run, name="spool-forwarder", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            trouble = self.broker_down or self.database_down
            if self._wake.wait(RETRY_SECONDS if trouble else HEARTBEAT_SECONDS):
                self._stop.wait(LINGER_SECONDS)
            self._wake.clear()
            try:
                self.forward_once()
            except Exception:
                log.exception("spool_forward_failed")
                self._stop.wait(RETRY_SECONDS)

    def forward_once(self) -> int:
        """Send what the spool holds (and orphans, when due); how many records were sent.
        Never raises for Redis being down: `broker_down` says so."""
        with self._round:
            try:
                sent = self._forward_own()
                if time.monotonic() - self._last_adoption >= ADOPT_SECONDS:
                    self._last_adoption = time.monotonic()
                    sent += self._adopt_orphans()
                # Beat; and while in trouble, ask Redis every round whether it is over.
                due = time.monotonic() - self._last_call >= HEARTBEAT_SECONDS
                if due or self.broker_down or self.database_down:
                    self._call()
            except redis.RedisError as exc:
                if not self.broker_down:
                    log.warning("spool_forward_broker_down error=%s", type(exc).__name__)
                self.broker_down = True
                return 0
            if self.broker_down:
                log.info("spool_forward_broker_back")
            self.broker_down = False
            return sent

    def _call(self, lines: bytes = b"") -> None:
        self.database_down = self.intake.accept_spooled(self.owner, lines)
        self.registered = True  # Redis now expects this process to beat
        self._last_call = time.monotonic()

    def _send(self, path: Path) -> int:
        """Send one segment; how many notifications it held."""
        try:
            lines = path.read_bytes()
        except FileNotFoundError:  # removed by hand: nothing left to send
            log.warning("spool_segment_missing segment=%s", path.name)
            return 0
        if lines:
            self._call(lines)
        return lines.count(b"\n")

    def _forward_own(self) -> int:
        self.spool.seal()
        sent = 0
        for path in self.spool.sealed_segments():
            sent += self._send(path)
            self.spool.sent(path)
        return sent

    def _adopt_orphans(self) -> int:
        sent = 0
        for orphan in self.spool.orphans():
            adopted = 0
            try:
                for path in orphan.segments:
                    adopted += self._send(path)
                    path.unlink(missing_ok=True)
                self.intake.retire(orphan.owner)
            except BaseException:
                orphan.lock.drop()
                raise
            orphan.lock.release()
            log.info("spool_adopted owner=%s records=%s", orphan.owner, adopted)
            sent += adopted
        return sent

    def close(self) -> None:
        """Stop the thread and hand everything over: send what is left and retire. If Redis
        is down the segments stay for another process of the host to send."""
        if self._stop.is_set():
            return  # closed already
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(5)
        self.spool.close()
        with self._round:
            try:
                for path in self.spool.sealed_segments():
                    self._send(path)
                    self.spool.sent(path)
                if self.registered:
                    self.intake.retire(self.owner)
            except redis.RedisError as exc:
                log.warning("spool_handover_failed error=%s", type(exc).__name__)
                self.spool.lock.drop()  # another process of the host adopts what is left
            else:
                self.spool.lock.release()
            finally:
                self.intake.close()
