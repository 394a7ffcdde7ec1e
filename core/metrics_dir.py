"""Where prometheus_client keeps per-process metric files, shared by web and worker.

prometheus_client picks single- or multi-process mode when it is first imported, from
PROMETHEUS_MULTIPROC_DIR. `prepare()` must therefore run before that import in every
process; `core.metrics` calls it at its very top, and the gunicorn config calls it in the
master so that every forked worker inherits the variable.

Wiping: web and worker processes on one host share the directory, so a process that starts
while others run must not wipe it (their live files would vanish from the scrape). Files are
named `<kind>_<pid>.db`; the directory is wiped only when no process that owns a file in it
is alive, which is a fresh start of the whole host. Counters of processes that died while
others run are kept, so totals never go backwards.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.settings import Settings

ENV_NAME = "PROMETHEUS_MULTIPROC_DIR"
_PID_IN_NAME = re.compile(r"_(\d+)\.db$")


def default_dir(environ: dict[str, str] | None = None) -> Path:
    """CALSYNC_DATA_DIR/metrics, reading only the data-dir variable."""
    env = os.environ if environ is None else environ
    only_data_dir = {k: v for k, v in env.items() if k == "CALSYNC_DATA_DIR"}
    return Settings.from_env(only_data_dir).data_dir / "metrics"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def wipe_if_fresh_start(directory: Path) -> bool:
    """Delete the files of a previous run when none of their owners is alive.

    Only the files listed here are removed, so a process starting concurrently (which has
    not created its files yet, or whose files make us see it alive) loses nothing.
    """
    files = [path for path in directory.glob("*.db") if _PID_IN_NAME.search(path.name)]
    owners = {int(_PID_IN_NAME.search(path.name).group(1)) for path in files}  # type: ignore[union-attr]
    if not files or any(pid == os.getpid() or _alive(pid) for pid in owners):
        return False
    for path in files:
        path.unlink(missing_ok=True)
    return True


def prepare() -> Path:
    """Set PROMETHEUS_MULTIPROC_DIR (default CALSYNC_DATA_DIR/metrics), create it, and wipe
    it on a fresh start. Idempotent; must run before prometheus_client is imported."""
    raw = os.environ.get(ENV_NAME)
    directory = Path(raw) if raw else default_dir()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_NAME] = str(directory)
    wipe_if_fresh_start(directory)
    return directory


def mark_process_dead(pid: int) -> None:
    """Drop the live-gauge files of a finished process (counters and histograms stay)."""
    if not os.environ.get(ENV_NAME):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
