"""The one launcher of calsync's processes on this machine: the Google emulator, web (gunicorn),
worker, outbound and beat (Celery) as child processes, each with the Procfile's command line and the
`CALSYNC_*` environment of one `Settings`.

Used by `calsync demo`, the end-to-end tests, the fault soak and the benchmarks. It starts a
process in its own process group with its output appended to a log file, waits until the
process is ready (web and emulator answer HTTP, a worker logged "ready."), stops it (SIGTERM
to the group, SIGKILL after a grace period), SIGKILLs it or one of its pool processes on
purpose, and restarts it with the same command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.error import URLError
from urllib.request import urlopen

if TYPE_CHECKING:
    from core.settings import Settings

# The Procfile, line by line: the commands the launcher runs (tests/unit/test_service_process.py
# compares this with the Procfile itself).
PROCFILE: dict[str, str] = {
    "release": "calsync db upgrade",
    "web": "gunicorn -c webhook/gunicorn_conf.py 'webhook:create_app()'",
    "worker": (
        "celery -A worker.celery_app worker --loglevel=INFO -Q calsync "
        "--concurrency=${WORKER_CONCURRENCY:-12} --without-gossip --without-mingle"
    ),
    # Outbound webhooks in threads of their own process: a slow receiver holds a thread,
    # never a sync's pool process, and sending never competes for the sync pool.
    "outbound": (
        "celery -A worker.celery_app worker --loglevel=INFO -Q outbound --pool=threads "
        "--concurrency=${OUTBOUND_CONCURRENCY:-16} --hostname=outbound@%h "
        "--without-gossip --without-mingle"
    ),
    "beat": (
        "celery -A worker.celery_app beat --loglevel=INFO "
        "--schedule=${CALSYNC_DATA_DIR:-.calsync}/beat-schedule"
    ),
}
# How this interpreter runs a Procfile program, and its config files found by module name
# (the same file, from any working directory: `calsync demo` runs wherever the user is).
PROGRAMS = {"gunicorn": ["-m", "gunicorn"], "celery": ["-m", "celery"]}
CONFIG_MODULES = {"webhook/gunicorn_conf.py": "python:webhook.gunicorn_conf"}

# Platform variables a deployment may set, which would override the settings given here.
PLATFORM_VARIABLES = ("DATABASE_URL", "REDIS_URL", "PROMETHEUS_MULTIPROC_DIR")
# Stopping order: consumers first, the emulator (which workers call) last.
STOP_ORDER = ("worker", "outbound", "beat", "web", "emulator")
# Lines beat and the worker log every few seconds; left out of log tails shown on failures.
PERIODIC_NOISE = ("sweep", "safety")
READY_TIMEOUT = 60

_PLACEHOLDER = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- environment ------------------------------------------------------------------------


def settings_vars(settings: Settings) -> dict[str, str]:
    """`settings` as the `CALSYNC_*` variables that make another process read the same."""
    return {
        "CALSYNC_" + f.name.upper(): str(value)
        for f in dataclasses.fields(settings)
        if (value := getattr(settings, f.name)) is not None
    }


def child_env(calsync_vars: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its own calsync configuration, plus `calsync_vars`:
    a child sees exactly the settings given (and its data dir's metrics directory)."""
    inherited = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CALSYNC_") and key not in PLATFORM_VARIABLES
    }
    return inherited | dict(calsync_vars)


# --- command lines ----------------------------------------------------------------------


def procfile_argv(kind: str, env: Mapping[str, str]) -> list[str]:
    """The Procfile's command for `kind` as this interpreter runs it; `${NAME:-default}`
    expanded from `env`, as a platform's shell would."""
    words = [
        _PLACEHOLDER.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), word)
        for word in shlex.split(PROCFILE[kind])
    ]
    program, *args = words
    return [sys.executable, *PROGRAMS[program], *(CONFIG_MODULES.get(arg, arg) for arg in args)]


def web_process(
    port: int, env: Mapping[str, str], log_path: Path, workers: int = 2, app: str | None = None
) -> ServiceProcess:
    """gunicorn as the Procfile runs it, on loopback only (the config binds every interface
    on $PORT). `app` replaces the application (the benchmarks' bare Flask app)."""
    env = {**env, "WEB_CONCURRENCY": str(workers)}
    argv = procfile_argv("web", env)
    if app is not None:
        argv[-1] = app
    argv[-1:-1] = ["--bind", f"127.0.0.1:{port}"]
    return ServiceProcess(
        "web", argv, env, log_path, kind="web", ready_url=f"http://127.0.0.1:{port}/healthz"
    )


def worker_process(
    name: str,
    env: Mapping[str, str],
    log_path: Path,
    concurrency: int = 2,
    extra_args: Iterable[str] = (),
) -> ServiceProcess:
    """A Celery worker as the Procfile runs it, with its own node name (several run on one
    machine) and no heartbeat events; `extra_args` such as `--pool=threads`."""
    env = {**env, "WORKER_CONCURRENCY": str(concurrency)}
    argv = [
        *procfile_argv("worker", env),
        f"--hostname={name}@%h",
        "--without-heartbeat",
        *extra_args,
    ]
    return ServiceProcess(name, argv, env, log_path, kind="worker", ready_line=" ready.")


def outbound_process(
    env: Mapping[str, str], log_path: Path, concurrency: int = 4
) -> ServiceProcess:
    """The outbound webhook worker as the Procfile runs it (a thread pool on queue
    `outbound`)."""
    env = {**env, "OUTBOUND_CONCURRENCY": str(concurrency)}
    argv = [*procfile_argv("outbound", env), "--without-heartbeat"]
    return ServiceProcess("outbound", argv, env, log_path, kind="outbound", ready_line=" ready.")


def beat_process(env: Mapping[str, str], log_path: Path) -> ServiceProcess:
    """Celery beat as the Procfile runs it (its schedule file in the data directory)."""
    return ServiceProcess("beat", procfile_argv("beat", env), dict(env), log_path, kind="beat")


def emulator_process(port: int, log_path: Path, seed: int = 7) -> ServiceProcess:
    """The Google emulator in its own interpreter (its work does not share the caller's GIL)."""
    argv = [sys.executable, "-m", "emulator", "--port", str(port), "--seed", str(seed)]
    return ServiceProcess(
        "emulator",
        argv,
        dict(os.environ),
        log_path,
        kind="emulator",
        ready_url=f"http://127.0.0.1:{port}/_emulator/faults",
    )


# --- one process ------------------------------------------------------------------------


class ProcessExited(RuntimeError):
    """A process ended while it was expected to come up."""


@dataclass
class ServiceProcess:
    """One child process: its command, environment, log file and how to tell it is ready
    (`ready_url` answers HTTP, or `ready_line` appears in its log since this start)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    kind: str = "process"
    ready_url: str | None = None
    ready_line: str | None = None
    popen: subprocess.Popen | None = field(default=None, repr=False)
    # Where the log stood at this start (logs are appended across restarts).
    log_offset: int = 0

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.log_offset = log.tell()
            # Own process group, so stop() and kill() reach the pool processes too.
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def fresh(self) -> ServiceProcess:
        """The same process, not started yet (for a restart)."""
        return dataclasses.replace(self, popen=None, log_offset=0)

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    # --- readiness ----------------------------------------------------------------------

    def ready(self) -> bool:
        if not self.alive:
            return False
        if self.ready_url is not None:
            return answers_http(self.ready_url)
        if self.ready_line is not None:
            return self.ready_line in self.log_since_start()
        return True

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> ServiceProcess:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self.alive:
                raise ProcessExited(f"{self.name} exited while starting:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.name} was not ready within {timeout}s:\n{self.log_tail()}"
                )
            time.sleep(0.1)
        return self

    # --- stopping -----------------------------------------------------------------------

    def signal_group(self, sig: int) -> None:
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to the group (a clean shutdown), SIGKILL if it takes longer than
        `timeout`; then SIGKILL whatever of the group outlived its leader."""
        if self.popen is None:
            return
        if self.alive:
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(5)
        self.signal_group(signal.SIGKILL)

    def kill(self, timeout: float = 10) -> None:
        """SIGKILL the whole group (a crash: no shutdown code runs) and reap the leader."""
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout)

    def kill_child(self, pid: int) -> bool:
        """SIGKILL one of `children()` (a pool process dying mid-task); False if it was gone."""
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def children(self) -> list[int]:
        """Pids of this process's direct children (a Celery worker's pool processes).

        Linux lists a child under the thread that forked it, and Celery forks replacements
        for dead pool processes from another thread than the first ones: read every thread's.
        """
        if self.popen is None:
            return []
        pids: list[int] = []
        try:
            threads = list(Path(f"/proc/{self.popen.pid}/task").iterdir())
        except OSError:
            return []
        for thread in threads:
            with contextlib.suppress(OSError):
                pids.extend(int(pid) for pid in (thread / "children").read_text().split())
        return sorted(pids)

    # --- logs ---------------------------------------------------------------------------

    def log_since_start(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# --- a stack of processes ---------------------------------------------------------------


@dataclass
class ProcessStack:
    """The processes of one calsync deployment on this machine, all on one environment
    (`child_env(...)`), logging to `logs/<name>.log`."""

    env: dict[str, str]
    logs: Path
    web_port: int = 0
    processes: list[ServiceProcess] = field(default_factory=list)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def workers(self) -> list[ServiceProcess]:
        return self._of_kind("worker")

    @property
    def outbound(self) -> ServiceProcess | None:
        return next(iter(self._of_kind("outbound")), None)

    @property
    def web(self) -> ServiceProcess | None:
        return next(iter(self._of_kind("web")), None)

    @property
    def beat(self) -> ServiceProcess | None:
        return next(iter(self._of_kind("beat")), None)

    def _of_kind(self, kind: str) -> list[ServiceProcess]:
        return [process for process in self.processes if process.kind == kind]

    # --- starting -----------------------------------------------------------------------

    def start_emulator(self, port: int, seed: int = 7) -> ServiceProcess:
        return self._start(emulator_process(port, self.logs / "emulator.log", seed))

    def start_web(self, workers: int = 2, app: str | None = None) -> ServiceProcess:
        if not self.web_port:
            self.web_port = free_port()
        return self._start(
            web_process(self.web_port, self.env, self.logs / "web.log", workers=workers, app=app)
        )

    def start_worker(
        self, concurrency: int = 2, extra_args: Iterable[str] = (), name: str | None = None
    ) -> ServiceProcess:
        name = name or f"worker{len(self.workers)}"
        return self._start(
            worker_process(name, self.env, self.logs / f"{name}.log", concurrency, extra_args)
        )

    def start_beat(self) -> ServiceProcess:
        return self._start(beat_process(self.env, self.logs / "beat.log"))

    def start_outbound(self, concurrency: int = 4) -> ServiceProcess:
        return self._start(outbound_process(self.env, self.logs / "outbound.log", concurrency))

    def _start(self, process: ServiceProcess) -> ServiceProcess:
        self.processes.append(process)
        return process.start()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Every process ready (see ServiceProcess.wait_ready), within `timeout` in all."""
        deadline = time.monotonic() + timeout
        for process in list(self.processes):
            process.wait_ready(max(0.0, deadline - time.monotonic()))

    def restart(self, process: ServiceProcess) -> ServiceProcess:
        """Start `process` anew in its place (stopped first if it still runs)."""
        process.stop()
        fresh = process.fresh()
        self.processes[self.processes.index(process)] = fresh
        return fresh.start()

    def dead(self) -> list[ServiceProcess]:
        """Processes that exited (none should, unless killed on purpose)."""
        return [process for process in self.processes if not process.alive]

    # --- stopping -----------------------------------------------------------------------

    def stop(self, process: ServiceProcess | None = None) -> None:
        """Stop `process` and forget it; by default every process, workers first."""
        if process is not None:
            process.stop()
            self.processes.remove(process)
            return
        rank = {kind: n for n, kind in enumerate(STOP_ORDER)}
        in_order = sorted(reversed(self.processes), key=lambda p: rank.get(p.kind, len(STOP_ORDER)))
        for each in in_order:
            each.stop()
        self.processes.clear()

    def logs_tail(self, lines: int = 40, scanned: int = 600) -> str:
        """The last lines of each calsync process's log, without the periodic noise."""
        parts = []
        for process in self.processes:
            if process.kind == "emulator":
                continue
            kept = [
                line
                for line in process.log_tail(scanned).splitlines()
                if not any(word in line for word in PERIODIC_NOISE)
            ][-lines:]
            parts.append(f"--- {process.name} ---\n" + "\n".join(kept))
        return "\n".join(parts)


# --- HTTP readiness ---------------------------------------------------------------------


def answers_http(url: str) -> bool:
    """Whether `url` answers at all (any HTTP status)."""
    try:
        with urlopen(url, timeout=2):  # noqa: S310 - local address we started
            return True
    except URLError as exc:
        return getattr(exc, "code", None) is not None
    except OSError:
        return False


def wait_http(url: str, timeout: float = 30) -> None:
    """Wait until `url` answers at all (any HTTP status)."""
    deadline = time.monotonic() + timeout
    while not answers_http(url):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        time.sleep(0.1)
