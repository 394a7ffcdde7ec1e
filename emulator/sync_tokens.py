"""Opaque sync tokens and page tokens for events.list.

A sync token names a point in one calendar's change sequence plus the list parameters
that must stay the same along the token chain. A page token names a snapshot of a result
computed at its first page, so a consumer sees each change exactly once across pages.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SyncToken:
    calendar_id: str
    generation: str  # changes when a calendar id is deleted and created again
    seq: int
    single_events: bool
    issued_at: float  # emulated clock, epoch seconds
    serial: int  # global issue counter; invalidation marks a serial threshold


def encode_sync_token(token: SyncToken) -> str:
    raw = json.dumps(
        [
            token.calendar_id,
            token.generation,
            token.seq,
            int(token.single_events),
            round(token.issued_at, 3),
            token.serial,
        ],
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_sync_token(text: str) -> SyncToken | None:
    """The token, or None when it is not one this emulator issued."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cal, gen, seq, single, issued, serial = json.loads(raw)
        return SyncToken(str(cal), str(gen), int(seq), bool(single), float(issued), int(serial))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        return None


@dataclass
class Snapshot:
    key: tuple[Any, ...]  # what the query was; a page token must come back with the same query
    items: list[dict[str, Any]]
    next_sync_token: str | None


class PageCache:
    """Bounded store of result snapshots for the pages after the first."""

    def __init__(self, max_snapshots: int = 2000) -> None:
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[int, Snapshot] = OrderedDict()
        self._ids = itertools.count(1)
        self._max = max_snapshots

    def clear(self) -> None:
        with self._lock:
            self._snapshots.clear()

    def put(self, snapshot: Snapshot, offset: int) -> str:
        with self._lock:
            snapshot_id = next(self._ids)
            self._snapshots[snapshot_id] = snapshot
            while len(self._snapshots) > self._max:
                self._snapshots.popitem(last=False)
        return self._page_token(snapshot_id, offset)

    def next_token(self, page_token: str, offset: int) -> str:
        snapshot_id, _ = self._parse(page_token) or (0, 0)
        return self._page_token(snapshot_id, offset)

    def get(self, page_token: str) -> tuple[Snapshot, int] | None:
        parsed = self._parse(page_token)
        if parsed is None:
            return None
        snapshot_id, offset = parsed
        with self._lock:
            snapshot = self._snapshots.get(snapshot_id)
            if snapshot is not None:
                self._snapshots.move_to_end(snapshot_id)
        return None if snapshot is None else (snapshot, offset)

    @staticmethod
    def _page_token(snapshot_id: int, offset: int) -> str:
        raw = f"p:{snapshot_id}:{offset}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @staticmethod
    def _parse(text: str) -> tuple[int, int] | None:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            prefix, snapshot_id, offset = raw.split(":")
            if prefix != "p":
                return None
            return int(snapshot_id), int(offset)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
