"""How many outbound senders of this process may wait a moment for more work at once.

A sender whose lanes ran dry waits (worker/outbound_tasks.py) while it holds a slot; the
outbound worker sets up half of its threads' worth at start (`allow`), so fan-outs and
other endpoints' senders always find a thread. Anywhere else (the sync worker, tests, a
one-off call) there are none and a sender lets go at once.
"""

from __future__ import annotations

import threading

_slots = threading.Semaphore(0)


def allow(pool_threads: int) -> None:
    """Let up to half of this process's `pool_threads` senders wait for more work."""
    for _ in range(pool_threads // 2):
        _slots.release()


def take() -> bool:
    """A slot, if one is free (never waits for one)."""
    return _slots.acquire(blocking=False)


def give_back() -> None:
    _slots.release()
