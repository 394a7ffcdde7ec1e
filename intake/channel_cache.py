"""A process-local cache of live channels for the push receiver's Redis intake path.

Authenticating a notification needs the channel's token hash, calendar and resource id. They
never change for a channel id, so each web process keeps them for TTL_SECONDS instead of
asking the database on every notification. An unknown id is never cached (a forged or
stopped channel is always looked up, and refused). What the cache may miss is a stop that
happened less than TTL_SECONDS ago: Google sends nothing on a stopped channel, and if a
late notification arrives its only effect is one extra sync of a calendar that still exists
(a deleted calendar's dirty mark has no row to land on).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

TTL_SECONDS = 10.0
MAX_ENTRIES = 200_000  # bounds memory if ids churn; refilled on demand


@dataclass(frozen=True)
class LiveChannel:
    token_hash: str
    calendar_id: int
    resource_id: str | None


class ChannelCache:
    def __init__(self, ttl_seconds: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES):
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        # channel id -> (valid until, channel); dict reads and writes are atomic in CPython,
        # and two threads loading the same id at once both store the same value.
        self._entries: dict[str, tuple[float, LiveChannel]] = {}

    def get(self, channel_id: str, load: Callable[[str], LiveChannel | None]) -> LiveChannel | None:
        now = time.monotonic()
        entry = self._entries.get(channel_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        found = load(channel_id)
        if found is None:
            self._entries.pop(channel_id, None)
            return None
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[channel_id] = (now + self.ttl_seconds, found)
        return found

    def forget(self, channel_id: str) -> None:
        self._entries.pop(channel_id, None)
