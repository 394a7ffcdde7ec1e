"""At most one outbound fan-out message waiting to run, across every process and machine.

A fan-out takes every host that is ready, and one that sees a host still inside its
coalescing window sends the next message itself; so one message waiting at a time is
enough, and more only make fan-outs queue behind each other's row claims. Before this
gate each process sent its own, and every fan-out's follow-up started a chain of its own
that lived as long as the load: under 50 changes/s the outbound pool ended up running
thousands of fan-outs a minute and delivery lag grew without bound.

Two gates in a row: one in the process (no round trip while its own message waits), then
with a Redis broker `SET NX PX` on a shared key whose expiry is the message's countdown.
The gate only saves messages, it never loses work: the outbox rows are the truth, a
message lost anyway is the sweep's, and when Redis cannot answer the message is sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from core.settings import get_settings

log = logging.getLogger("calsync.enqueue")

KEY = "calsync:outbound:fan_out_waiting"
# The gate opens this much before the waiting message is due, so a fan-out that runs on
# time (and wants to send its follow-up) never finds its own message still counted.
EARLY_SECONDS = 0.02

_lock = threading.Lock()
_local_until = 0.0  # monotonic: this process's message is waiting until then
_clients: dict[str, redis.Redis] = {}


def reset() -> None:
    """Forget this process's waiting message (tests; a message known not to be sent)."""
    global _local_until
    with _lock:
        _local_until = 0.0


def send_once(send: Callable[[float], None], countdown: float) -> bool:
    """`send(countdown)` unless a fan-out message is already waiting; whether it was sent."""
    global _local_until
    hold = max(0.001, countdown - EARLY_SECONDS)
    with _lock:
        if _local_until > time.monotonic():
            return False
        _local_until = time.monotonic() + hold
    if not _take_shared(hold):
        return False
    try:
        send(countdown)
    except BaseException:
        reset()  # not sent: the next commit sends one
        raise
    return True


def _take_shared(hold: float) -> bool:
    url = get_settings().broker_url
    if not url.startswith(("redis://", "rediss://")):
        return True  # the embedded broker runs on one machine: the process gate is enough
    try:
        return bool(_client(url).set(KEY, b"1", nx=True, px=max(1, int(hold * 1000))))
    except redis.RedisError as exc:
        log.warning("fan_out_gate_unavailable error=%s (sending anyway)", type(exc).__name__)
        return True


def _client(url: str) -> redis.Redis:
    with _lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        return _clients[url]
