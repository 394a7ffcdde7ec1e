"""Directories and files only this service's user may read: the data directory holds the
key file, the SQLite database (with encrypted credentials and hashed tokens) and the broker."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def _tighten(path: Path, mode: int) -> None:
    # Made earlier, or by an older version with the umask's mode: close it to others too,
    # when it is ours (chmod would fail on someone else's path anyway).
    info = path.stat()
    if stat.S_IMODE(info.st_mode) & 0o077 and info.st_uid == os.geteuid():
        path.chmod(mode)


def private_directory(path: Path) -> Path:
    """Create `path` (and its parents) with the leaf readable by the owner only (0700)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(path, 0o700)
    return path


def private_file(path: Path) -> Path:
    """Create an empty `path` with mode 0600 unless it exists (SQLite takes an empty file as
    a new database, and gives its journal files the database file's mode)."""
    private_directory(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        _tighten(path, 0o600)
    return path
