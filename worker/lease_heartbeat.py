"""Keeps a sync's lease on its calendar alive while the sync runs.

The lease is short (CALSYNC_LEASE_SECONDS, 6 s by default) so that a worker killed mid-sync
is noticed within seconds: its lease runs out, the sweeper (or the redelivered task) takes
the calendar over. A live sync renews it every quarter lease from a thread, so a slow Google
page or a long apply never loses it; three beats in a row may fail (a database stall)
before it can lapse. If it does lapse and another worker takes the calendar, this one's
commit finds the lease gone (it is re-checked in the commit's transaction) and writes
nothing: two workers never both commit for one calendar.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from types import TracebackType

from models.db import session_scope
from models.sync_flags import extend_lease

log = logging.getLogger("calsync.lease")

BEATS_PER_LEASE = 4


class LeaseHeartbeat:
    """`with LeaseHeartbeat(...) as beat:` renews the lease until the block ends;
    `beat.lost` is True once a renewal found the lease taken by another worker."""

    def __init__(
        self,
        calendar_id: int,
        owner: str,
        lease_seconds: int,
        now: Callable[[], datetime],
    ) -> None:
        self.calendar_id, self.owner, self.lease_seconds, self.now = (
            calendar_id,
            owner,
            lease_seconds,
            now,
        )
        self.lost = False
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"lease-heartbeat-{calendar_id}", daemon=True
        )

    @property
    def interval(self) -> float:
        return self.lease_seconds / BEATS_PER_LEASE

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with session_scope() as session:
                    held = extend_lease(
                        session, self.calendar_id, self.owner, self.now(), self.lease_seconds
                    )
            except Exception:  # the next beat tries again; the lease has room for misses
                log.warning("lease_heartbeat_failed calendar_id=%s", self.calendar_id)
                continue
            self.beats += 1
            if not held:
                if self._stop.is_set():  # released by the commit a moment ago
                    return
                self.lost = True
                log.warning("lease_lost calendar_id=%s", self.calendar_id)
                return
