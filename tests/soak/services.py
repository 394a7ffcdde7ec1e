"""Private PostgreSQL and Redis servers for the soak: it stops, restarts and empties them,
which it must never do to the machine's shared servers (other tests and people use those).

PostgreSQL gets its own cluster (initdb into a temporary directory, its own port and socket
directory); run as root, the server runs as the `postgres` user, as initdb refuses root.
Redis gets its own redis-server on a free port, with nothing on disk, so a restart empties it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from calsync.processes import free_port

POSTGRES_ROOTS = (Path("/usr/lib/postgresql"),)


class ServiceSetupError(RuntimeError):
    """A private server could not be created (binary missing, initdb failed)."""


def postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL server binaries (Debian layout), else pg_config's."""
    for root in POSTGRES_ROOTS:
        versions = sorted(
            (p for p in root.glob("*/bin") if (p / "initdb").exists()),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        )
        if versions:
            return versions[-1]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    raise ServiceSetupError("PostgreSQL server binaries (initdb, pg_ctl) not found")


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port>, trust auth, fsync off."""

    def __init__(self) -> None:
        self.bin_dir = postgres_bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="calsync-soak-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        # initdb refuses to run as root: then everything runs as the postgres user.
        self._run_as = "postgres" if os.geteuid() == 0 else None
        if self._run_as is not None:
            user = pwd.getpwnam(self._run_as)
            os.chown(self.root, user.pw_uid, user.pw_gid)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self._run_as is not None:
            command = ["runuser", "-u", self._run_as, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            raise ServiceSetupError(
                f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[-2000:]}"
            )

    def create(self) -> PrivatePostgres:
        self._run(
            "initdb",
            *("-D", str(self.data_dir), "-U", "postgres", "--auth=trust"),
            *("--encoding=UTF8", "--no-sync"),
        )
        return self

    def start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.root}",  # own socket directory: nothing shared with the machine's
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        self._run(
            "pg_ctl",
            *("-D", str(self.data_dir), "-l", str(self.log_path), "-o", options),
            *("-w", "-t", "60", "start"),
        )

    def stop(self, mode: str = "fast") -> None:
        """`fast` ends every session (what a restart does); `immediate` is a crash."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")

    def create_database(self, name: str) -> str:
        from sqlalchemy import create_engine, text

        admin = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            admin.dispose()
        return self.url(name)

    def destroy(self) -> None:
        with contextlib.suppress(ServiceSetupError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A redis-server of our own (no persistence): `restart_emptied` is SHUTDOWN NOSAVE and
    a fresh start on the same port, i.e. the broker loses every message."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceSetupError("redis-server not found (Debian package redis-server)")
        self.binary = binary
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="calsync-soak-redis-"))
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
