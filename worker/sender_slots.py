"""How many outbound senders of this process may wait a moment for more work at once.

A sender whose lanes ran dry waits (worker/outbound_tasks.py) while it holds a slot; the
outbound worker sets up all but FREE_THREADS of its threads' worth at start (half of a pool
of 8 or fewer), so fan-outs, sweeps and other endpoints' senders always find a thread.
Anywhere else (the sync worker, tests, a one-off call) there are none and a sender lets go
at once.

An endpoint whose sender finds no slot lets go after each batch, and the next fan-out
starts a fresh sender task (a transaction to mark it, a message, a transaction to release
it): with half of 16 threads, 2 of benchmark 7's 10 endpoints did that every window.
"""

from __future__ import annotations

import threading

_slots = threading.Semaphore(0)


# Threads kept free of waiting senders: a fan-out (one runs at a time in a process), the
# sweep, and two senders that could not wait.
FREE_THREADS = 4


def slots_for(pool_threads: int) -> int:
    """How many of a pool's `pool_threads` senders may wait for more work at once."""
    return max(pool_threads // 2, pool_threads - FREE_THREADS)


def allow(pool_threads: int) -> None:
    """Set up this process's slots for a pool of `pool_threads` threads."""
    for _ in range(slots_for(pool_threads)):
        _slots.release()


def take() -> bool:
    """A slot, if one is free (never waits for one)."""
    return _slots.acquire(blocking=False)


def give_back() -> None:
    _slots.release()
