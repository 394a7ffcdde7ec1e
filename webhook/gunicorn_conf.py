"""gunicorn settings for the `web` process (`gunicorn -c webhook/gunicorn_conf.py ...`).

Platform conventions: $PORT to bind, $WEB_CONCURRENCY worker processes. Threads let one
worker answer pushes while another request waits on the database.
"""

from __future__ import annotations

import os
from typing import Any

from core import metrics_dir

# In the master, before any worker forks or imports prometheus_client: every worker then
# writes its metrics files into the directory the Celery worker uses too.
metrics_dir.prepare()


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise SystemExit(f"{name} must be greater than zero, got {value}")
    return value


bind = f"0.0.0.0:{_int_env('PORT', 8000)}"
workers = _int_env("WEB_CONCURRENCY", 2)
threads = 4
worker_class = "gthread"
# SO_REUSEPORT: the kernel spreads connections over the workers. Without it one worker can
# win most accepts and leave the other idle (seen in bench.webhook_ingestion: the same
# endpoint at 4,000 or 8,800 requests/s from run to run on 2 cores).
reuse_port = True
timeout = 30
graceful_timeout = 30
# Access logs off by default (one line per push is noise at volume); GUNICORN_ACCESS_LOG=-
# turns them on to stdout.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"


def post_fork(server: Any, worker: Any) -> None:
    from core.logs import configure_logging
    from core.settings import Settings

    settings = Settings.from_env()
    configure_logging("web", fmt=settings.log_format)
    if settings.uses_redis_intake:
        # Start the push spool's forwarder now, not on the first notification: it also
        # sends the spools that dead processes of this host left behind.
        from intake.runtime import intake_runtime

        try:
            intake_runtime(settings).forwarder.ensure_started()
        except Exception as exc:  # Redis down: retried on the first notification
            server.log.warning("push spool forwarder not started: %s", type(exc).__name__)


def worker_exit(server: Any, worker: Any) -> None:
    # In the worker, on a clean exit: send what its push spool still holds.
    from intake.runtime import close_runtimes

    close_runtimes()


def child_exit(server: Any, worker: Any) -> None:
    # Runs in the master when a worker exits: drop its live-gauge files.
    metrics_dir.mark_process_dead(worker.pid)
