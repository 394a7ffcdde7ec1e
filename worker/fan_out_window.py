"""One outbound fan-out per coalescing window, however many commits ask for one.

Every commit that writes an outbox row asks for a fan-out once its coalescing window has
passed. At 50 changes a second that would be 50 Celery messages and 50 small fan-out
transactions a second; instead the first commit of a window sets a Redis key (SET NX with
the window as its expiry) and sends one fan-out of every due host, which comes back for
the hosts still inside their window. The outbox rows are the truth either way: a lost
message or a Redis error only costs time until beat's sweep (or the next commit) sends it.
Without a Redis broker (the embedded default, one machine) each commit sends its own.
"""

from __future__ import annotations

import threading

import redis

from core.settings import get_settings

KEY = "calsync:outbound:fan-out-window"

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


def _client(broker_url: str) -> redis.Redis | None:
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    with _lock:
        if broker_url not in _clients:
            _clients[broker_url] = redis.Redis.from_url(
                broker_url, socket_timeout=2, socket_connect_timeout=2
            )
        return _clients[broker_url]


def fan_out_target(host_id: int | None, window_seconds: float) -> tuple[bool, int | None]:
    """Whether this commit should send a fan-out, and for which host (None: every due
    host). Without a window or a Redis broker: always, for its own host."""
    client = _client(get_settings().broker_url) if window_seconds > 0 else None
    if client is None:
        return True, host_id
    try:
        first = client.set(KEY, "1", nx=True, px=max(1, int(window_seconds * 1000)))
    except redis.RedisError:
        return True, host_id
    return bool(first), None
