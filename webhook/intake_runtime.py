"""The Redis intake's per-process parts in the web: the Redis handle and the channel cache.
Built on a process's first notification (gunicorn forks workers before they serve, so each
worker builds its own) and kept for the life of the process. The drainer runs in beat."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from calsync.push_intake import PushIntake
from calsync.settings import Settings
from webhook.channel_cache import ChannelCache


@dataclass
class IntakeRuntime:
    intake: PushIntake
    channels: ChannelCache


_runtimes: dict[tuple[int, str, str], IntakeRuntime] = {}
_lock = threading.Lock()


def intake_runtime(settings: Settings) -> IntakeRuntime:
    key = (os.getpid(), settings.broker_url, settings.database_url)
    runtime = _runtimes.get(key)
    if runtime is None:
        with _lock:
            runtime = _runtimes.get(key)
            if runtime is None:
                runtime = IntakeRuntime(PushIntake(settings.broker_url), ChannelCache())
                _runtimes[key] = runtime
    return runtime
