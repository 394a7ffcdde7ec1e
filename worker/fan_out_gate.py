"""At most one outbound fan-out message waiting to run, across every process and machine,
unless a sooner one is wanted.

A fan-out takes every host that is ready, and one that sees a host still inside its
coalescing window sends the next message itself; so one message waiting at a time is
enough, and more only make fan-outs queue behind each other's row claims. Before this
gate each process sent its own, and every fan-out's follow-up started a chain of its own
that lived as long as the load: under 50 changes/s the outbound pool ended up running
thousands of fan-outs a minute and delivery lag grew without bound.

The gate remembers when the waiting message is due and lets a message through only if it
would run sooner than that (by more than SLACK_SECONDS). Without the due time, a busy
writer's message (a whole window away) often took the gate in the moment between a
fan-out starting and sending its follow-up (due a few ms after the next host's window),
and that host then waited for the later message: ~100 ms more commit-to-fan-out lag at
the median under 50 changes/s (bench/RESULTS.md §7, session 13).

Two gates in a row: one in the process (no round trip while a message it sent or was told
of waits), then with a Redis broker a shared key holding the waiting message's due time (a
script compares and sets it), expiring just before that message is due. The gate only saves
messages, it never loses work: the outbox rows are the truth, a message lost anyway is the
sweep's, and when Redis cannot answer the message is sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import redis

from core.settings import get_settings
from intake.redis_intake import shared_client

log = logging.getLogger("calsync.enqueue")

KEY = "calsync:outbound:fan_out_waiting"
# The gate opens this much before the waiting message is due, so a fan-out that runs on
# time (and wants to send its follow-up) never finds its own message still counted.
EARLY_SECONDS = 0.02
# A message due this little sooner than the waiting one is not worth a second message.
SLACK_SECONDS = 0.01

# KEYS[1]: the gate; ARGV: due (epoch ms), hold (ms), slack (ms). 0: taken; otherwise the
# due time (epoch ms) of the waiting message, due no later than this one (give or take the
# slack).
_TAKE = """
local waiting = redis.call('GET', KEYS[1])
if waiting and tonumber(waiting) <= tonumber(ARGV[1]) + tonumber(ARGV[3]) then
  return tonumber(waiting)
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 0
"""

# KEYS[1]: the gate; ARGV[1]: the due time (epoch ms) it was taken for. Let go only if it
# still holds that message (a sooner one may have taken it since).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_lock = threading.Lock()
_local_until = 0.0  # monotonic: a message this process knows of waits until then
_local_due = 0.0  # epoch s: ...and is due then


def reset() -> None:
    """Forget this process's waiting message (tests; a message known not to be sent)."""
    global _local_until
    with _lock:
        _local_until = 0.0


def send_once(send: Callable[[float], None], countdown: float) -> bool:
    """`send(countdown)` unless a fan-out message due no later is already waiting;
    whether it was sent."""
    hold = max(0.001, countdown - EARLY_SECONDS)
    due = time.time() + countdown
    with _lock:
        if _local_until > time.monotonic() and _local_due <= due + SLACK_SECONDS:
            return False
        _remember(due)
    waiting = _take_shared(due, hold)
    if waiting is not None:
        # Another process's message, maybe due well before this one would have been: the
        # process gate must count that one, not this. Counting this one held back the
        # process's next commits after that message had run, and the last change of a
        # burst then waited for the sweep (~5 s).
        with _lock:
            _remember(waiting)
        return False
    try:
        send(countdown)
    except BaseException:
        # Not sent: the next commit, in this process or another, sends one.
        reset()
        _release_shared(due)
        raise
    return True


def _remember(due: float) -> None:
    """This process knows of a message waiting until `due` (epoch s); with _lock held."""
    global _local_until, _local_due
    _local_until = time.monotonic() + max(0.0, due - time.time() - EARLY_SECONDS)
    _local_due = due


def _take_shared(due: float, hold: float) -> float | None:
    """None: the shared gate is this message's; else the waiting message's due time."""
    url = get_settings().broker_url
    if not url.startswith(("redis://", "rediss://")):
        return None  # the embedded broker runs on one machine: the process gate is enough
    try:
        args = [int(due * 1000), max(1, int(hold * 1000)), int(SLACK_SECONDS * 1000)]
        waiting = int(_script(url)(keys=[KEY], args=args))
    except redis.RedisError as exc:
        log.warning("fan_out_gate_unavailable error=%s (sending anyway)", type(exc).__name__)
        return None
    return waiting / 1000 if waiting else None


def _release_shared(due: float) -> None:
    """Let go of the shared gate taken for a message due at `due` that was not sent: other
    processes would otherwise skip their commits' messages until it expired, and their
    changes wait for a later message or the sweep."""
    url = get_settings().broker_url
    if not url.startswith(("redis://", "rediss://")):
        return
    try:
        _script(url, _RELEASE)(keys=[KEY], args=[int(due * 1000)])
    except redis.RedisError as exc:  # it expires by itself before the message's due time
        log.warning("fan_out_gate_release_failed error=%s", type(exc).__name__)


@cache
def _script(url: str, source: str = _TAKE) -> Any:
    # Both scripts of a broker run on its shared client (one connection pool per process).
    return shared_client(url).register_script(source)
