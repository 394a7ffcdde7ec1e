"""What every benchmark needs: a private Redis, a fresh PostgreSQL database, calsync's real
processes (gunicorn web, Celery workers) and the emulator as a child process, plus
percentiles, ratios, bars and the machine description printed with each result.

Benchmarks print numbers; they never assert on absolute times. `--smoke` runs a seconds-long
version (the test suite runs those so the benchmarks cannot rot).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from calsync.processes import (
    PLATFORM_VARIABLES,
    ProcessStack,
    child_env,
    emulator_process,
    free_port,
)

PG_ADMIN_URL = os.environ.get(
    "CALSYNC_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# --- command line and reporting -----------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="seconds-long run (CI); numbers only")
    p.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    p.add_argument("--keep-logs", action="store_true", help="keep process logs after the run")
    return p


@dataclass
class Report:
    """Collects numbers, ratios and bars; prints them as they come and once more at the end."""

    name: str
    smoke: bool = False
    values: dict[str, Any] = field(default_factory=dict)
    bars: list[dict[str, Any]] = field(default_factory=list)

    def header(self) -> None:
        print(f"# {self.name}{' (smoke)' if self.smoke else ''}", flush=True)
        for key, value in machine_description().items():
            print(f"  machine.{key}: {value}", flush=True)

    def value(self, key: str, value: Any, unit: str = "") -> None:
        self.values[key] = value
        shown = f"{value:.4g}" if isinstance(value, float) else value
        print(f"  {key}: {shown}{(' ' + unit) if unit else ''}", flush=True)

    def ratio(self, key: str, numerator: float, denominator: float) -> float:
        result = numerator / denominator if denominator else math.inf
        self.values[key] = result
        print(f"  RATIO {key}: {result:.3f}", flush=True)
        return result

    def bar(self, what: str, measured: float, limit: float, *, at_least: bool) -> bool:
        """A bar from the issue: `measured >= limit` (at_least) or `measured <= limit`."""
        met = measured >= limit if at_least else measured <= limit
        self.bars.append({"what": what, "measured": measured, "limit": limit, "met": met})
        sign = ">=" if at_least else "<="
        verdict = "met" if met else "MISSED"
        note = " (smoke size: not a verdict)" if self.smoke else ""
        print(f"  BAR {what}: {measured:.4g} {sign} {limit:g} -> {verdict}{note}", flush=True)
        return met

    def finish(self, json_path: Path | None = None) -> int:
        summary = {
            "name": self.name,
            "smoke": self.smoke,
            "machine": machine_description(),
            "values": self.values,
            "bars": self.bars,
        }
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        missed = [b["what"] for b in self.bars if not b["met"]]
        if self.smoke:
            print(f"# {self.name}: smoke run finished", flush=True)
            return 0
        print(f"# {self.name}: {'all bars met' if not missed else 'MISSED: ' + '; '.join(missed)}")
        return 1 if missed else 0


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def lag_slices(points: Sequence[tuple[float, float]], seconds: float = 10.0) -> str:
    """p50/p99 of (moment, lag) points by `seconds`-long slice from the first moment, in
    order: a tail that sits in one slice is a transient, one in every slice the steady
    state."""
    if not points:
        return ""
    first = min(at for at, _ in points)
    buckets: dict[int, list[float]] = {}
    for at, lag in points:
        buckets.setdefault(int((at - first) // seconds), []).append(lag)
    return " ".join(
        f"{percentile(lags, 50):.0f}/{percentile(lags, 99):.0f}"
        for _, lags in sorted(buckets.items())
    )


def change_points(changes: Sequence[Any]) -> list[tuple[float, float]]:
    """(sent at, sync lag) of the changes of a load phase that were applied."""
    return [(c.sent_at, c.lag_ms) for c in changes if c.lag_ms is not None]


def machine_description() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = math.nan
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        mem_gib = round(int(first.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postgresql": _version(["psql", "--version"]),
        "redis": _version(["redis-server", "--version"]),
    }


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not found"
    return out.stdout.strip().split("\n")[0]


# --- memory -----------------------------------------------------------------------------


def peak_rss_mb(pid: int | None = None) -> float:
    """VmHWM (peak resident set) of a live process, in MiB; this process by default."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


# --- services ---------------------------------------------------------------------------


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A private redis-server for the length of a run; yields its URL."""
    server = PrivateRedis()
    server.start()
    try:
        yield server.url
    finally:
        server.destroy()


class PrivateRedis:
    """A redis-server of our own on a free port (nothing on disk), so a run never touches
    another run's broker. `restart_emptied` is SHUTDOWN NOSAVE and a fresh start on the same
    port, i.e. the broker loses every message (the fault soak, tests/soak)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found (Debian package redis-server)")
        self.binary = binary
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="calsync-redis-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *(self.binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.root)),
                *("--logfile", str(self.root / "redis.log")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    def _client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def _wait_ready(self, timeout: float = 20) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while True:
            client = self._client()
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                client.close()

    def key_count(self) -> int:
        client = self._client()
        try:
            return int(client.dbsize())
        finally:
            client.close()

    def shutdown_nosave(self) -> None:
        # A raw command: redis-py would retry the connection SHUTDOWN closes, for seconds.
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")
            with contextlib.suppress(OSError):
                sock.recv(64)  # EOF once the server is gone
        if self.process is not None:
            self.process.wait(20)
            self.process = None

    def restart_emptied(self) -> None:
        self.shutdown_nosave()
        self.start()

    def destroy(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(prefix: str = "calsync_bench") -> Iterator[str]:
    """A new PostgreSQL database on the machine's server, migrated to head; dropped after."""
    from sqlalchemy import create_engine, text

    from models.migrate import upgrade

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        from models.db import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- calsync's processes ----------------------------------------------------------------


@dataclass(kw_only=True)
class BenchStack(ProcessStack):
    """calsync's processes (see ProcessStack) on one benchmark's configuration, with the
    emulator process they call; start web, workers and beat on it."""

    data_dir: Path
    emulator_url: str

    def control(self) -> Any:
        from emulator.control import EmulatorControl

        return EmulatorControl(self.emulator_url, timeout=60)


def bench_env(database_url: str, broker_url: str, data_dir: Path, **overrides: Any) -> dict:
    """CALSYNC_* settings for a benchmark (the same for this process and its children)."""
    values: dict[str, Any] = {
        "DATA_DIR": data_dir,
        "DATABASE_URL": database_url,
        "BROKER_URL": broker_url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "ADMIN_TOKEN": secrets.token_urlsafe(24),
        # The bench is one Google project with many users; its own limiter must not be the
        # thing measured.
        "PROJECT_RATE_PER_MINUTE": 1_000_000,
        "ACCOUNT_RATE_PER_MINUTE": 100_000,
        "LOG_FORMAT": "keyvalue",
    }
    values.update({key.upper(): value for key, value in overrides.items()})
    return {f"CALSYNC_{key}": str(value) for key, value in values.items() if value is not None}


def activate(env: dict[str, str]) -> None:
    """Make this process use `env` too: settings, database engine and Celery's broker."""
    for key in [k for k in os.environ if k.startswith("CALSYNC_")]:
        del os.environ[key]
    for key in PLATFORM_VARIABLES:
        os.environ.pop(key, None)
    os.environ.update(env)
    from core.settings import Settings, configure

    configure(Settings.from_env(os.environ))
    if "worker.celery_app" in sys.modules:  # already built for another broker
        raise RuntimeError("activate() must run before worker.celery_app is imported")


@contextlib.contextmanager
def emulator(seed: int = 7, data_dir: Path | None = None) -> Iterator[str]:
    """The emulator in a child process (its own interpreter, so its work does not share the
    benchmark driver's GIL); yields its base URL."""
    port = free_port()
    log_dir = data_dir or Path(tempfile.mkdtemp(prefix="calsync-bench-emu-"))
    process = emulator_process(port, log_dir / "logs" / "emulator.log", seed).start()
    try:
        process.wait_ready()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


@contextlib.contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM ends the run as Ctrl-C does, through every context manager on the way out, so
    the stack's children (Redis, emulator, web, workers, beat, receivers) are stopped too:
    by default Python dies at once and leaves them running beside the next run."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler
        return
    _sigterm_received.clear()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    previous_hook = sys.unraisablehook

    def again_if_dropped(unraisable: Any) -> None:
        # A signal handler runs wherever the main thread is, a finalizer (`__del__`) too,
        # and an exception raised there is printed and dropped: the run would go on. The
        # signal is sent again a moment later, from another thread, so that its handler runs
        # once this hook and the finalizer are done (raised here, it would be dropped again;
        # a finalizer still running by then drops it once more, and here it comes again).
        if isinstance(unraisable.exc_value, SystemExit) and unraisable.exc_value.code == (
            SIGTERM_EXIT
        ):
            again = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGTERM))
            again.daemon = True
            again.start()
            return
        previous_hook(unraisable)

    sys.unraisablehook = again_if_dropped
    try:
        yield
    except BaseException:
        # The signal's exit can land inside a library call whose cleanup then fails with
        # an error of its own (psycopg: "another command is already in progress" when the
        # rollback meets the interrupted query), which replaces it on the way out: the run
        # still ends as stopped by SIGTERM, its stack torn down by then.
        if _sigterm_received.is_set():
            raise SystemExit(SIGTERM_EXIT) from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = previous_hook


SIGTERM_EXIT = 128 + signal.SIGTERM
_sigterm_received = threading.Event()


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    _sigterm_received.set()
    raise SystemExit(SIGTERM_EXIT)


@contextlib.contextmanager
def bench_stack(
    name: str, keep_logs: bool = False, emulator_seed: int = 7, **settings: Any
) -> Iterator[BenchStack]:
    """Private Redis + fresh database + emulator process, with this process configured for
    them; start web/workers on the returned stack. Everything is torn down afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"calsync-bench-{name}-"))
    with (
        stopped_by_sigterm(),
        private_redis() as broker_url,
        fresh_database(f"calsync_bench_{name}") as database_url,
        emulator(emulator_seed, data_dir) as emulator_url,
    ):
        web_port = free_port()
        env = bench_env(
            database_url,
            broker_url,
            data_dir,
            google_api_endpoint=emulator_url + "/calendar/v3/",
            google_token_uri=emulator_url + "/token",
            public_url=f"http://127.0.0.1:{web_port}",
            **settings,
        )
        activate(env)
        stack = BenchStack(
            env=child_env(env),
            logs=data_dir / "logs",
            web_port=web_port,
            data_dir=data_dir,
            emulator_url=emulator_url,
        )
        try:
            yield stack
        finally:
            stack.stop()
            if keep_logs:
                print(f"  logs kept in {stack.logs}", flush=True)
            else:
                shutil.rmtree(data_dir, ignore_errors=True)
