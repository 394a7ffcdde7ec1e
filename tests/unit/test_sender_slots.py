"""How many outbound senders may wait for more work (worker/sender_slots.py): all but a few
of the pool's threads, never more than half of a small pool."""

from __future__ import annotations

from worker.sender_slots import FREE_THREADS, slots_for


def test_the_procfiles_pool_lets_ten_endpoints_senders_wait() -> None:
    # Benchmark 7's 10 endpoints on the Procfile's 16 threads: every sender may wait, so
    # none is started afresh every coalescing window (half of 16 left 2 of them doing so).
    assert slots_for(16) >= 10
    assert 16 - slots_for(16) == FREE_THREADS


def test_a_small_pool_keeps_at_least_half_its_threads_free() -> None:
    assert [slots_for(n) for n in (1, 2, 4, 6, 8)] == [0, 1, 2, 3, 4]
