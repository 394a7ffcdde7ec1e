"""The Redis intake's per-process parts in the web: the spool and its forwarder, and the
channel cache. Built on a process's first notification (or by gunicorn's post_fork hook)
and kept for the life of the process; gunicorn's worker_exit hook hands the spool over.
The drainer runs in beat."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from core.settings import Settings
from intake.channel_cache import ChannelCache
from intake.forwarder import SpoolForwarder
from intake.redis_intake import PushIntake


@dataclass
class IntakeRuntime:
    forwarder: SpoolForwarder
    channels: ChannelCache


_runtimes: dict[tuple[int, str, str, str], IntakeRuntime] = {}
_lock = threading.Lock()


def intake_runtime(settings: Settings) -> IntakeRuntime:
    key = (os.getpid(), settings.broker_url, settings.database_url, str(settings.spool_directory))
    runtime = _runtimes.get(key)
    if runtime is None:
        with _lock:
            runtime = _runtimes.get(key)
            if runtime is None:
                intake = PushIntake(settings.broker_url)
                forwarder = SpoolForwarder(intake, settings.spool_directory)
                runtime = IntakeRuntime(forwarder, ChannelCache())
                _runtimes[key] = runtime
    return runtime


def close_runtimes() -> None:
    """Hand this process's spools over (send what is left, retire): on a clean exit."""
    with _lock:
        mine = [key for key in _runtimes if key[0] == os.getpid()]
        for key in mine:
            _runtimes.pop(key).forwarder.close()
