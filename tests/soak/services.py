"""Private PostgreSQL and Redis servers for the soak: it stops, restarts and empties them,
which it must never do to the machine's shared servers (other tests and people use those).

PostgreSQL gets its own cluster (initdb into a temporary directory, its own port and socket
directory); run as root, the server runs as the `postgres` user, as initdb refuses root.
Redis gets its own redis-server on a free port, with nothing on disk, so a restart empties it
(bench.harness.PrivateRedis, which the benchmarks use too).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.harness import PrivateRedis
from calsync.processes import free_port

__all__ = ["PrivatePostgres", "PrivateRedis", "ServiceSetupError"]

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
