"""The web process's spool: where an accepted push notification is kept until its process's
forwarder (intake/forwarder.py) has handed it to Redis.

Appending is one `write` to a local file (no network round trip inside the request) and
survives the process dying: the file stays on disk, and another process on the host adopts
it. Each process writes numbered segments `<owner>.<n>.spool` and holds an exclusive
`flock` on `<owner>.lock` for its life; the kernel drops the lock when the process dies,
however it dies, so a lock that can be taken marks an owner whose segments nobody will
send. The forwarder seals the current segment (new appends go to a fresh one), sends the
sealed ones and deletes each only once Redis holds its records; sending a segment twice
(a crash between send and delete) is harmless, every write in Redis being "set if unset" or
"the later of".

The directory must be on the host's own disk (flock is per host). What a host's disappearance
takes with it is covered in Redis: its spoolers stop beating (intake/redis_intake.py).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

SEGMENT_SUFFIX = ".spool"
LOCK_SUFFIX = ".lock"


@dataclass(frozen=True)
class IntakeRecord:
    """What one change notification leaves for the drainer."""

    calendar_id: int
    channel_id: str
    received_at: datetime
    message_number: int | None  # None: too large to store (the column is 64-bit)


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def encode(record: IntakeRecord) -> bytes:
    """One line: calendar id, receive time (ms since the epoch), channel id, message number
    ('-' when too large to store). Channel ids are ours (hex), so spaces never occur. The
    forwarder sends a segment's lines as they are; the Lua script in Redis parses them."""
    number = "-" if record.message_number is None else str(record.message_number)
    at_ms = epoch_ms(record.received_at)
    return f"{record.calendar_id} {at_ms} {record.channel_id} {number}\n".encode()


def _segment_number(path: Path) -> int:
    return int(path.name.rsplit(".", 2)[1])


def segments_of(directory: Path, owner: str) -> list[Path]:
    """`owner`'s segments, oldest first."""
    found = directory.glob(f"{owner}.*{SEGMENT_SUFFIX}")
    return sorted(found, key=_segment_number)


@dataclass
class SpoolLock:
    """An exclusive `flock` on `<owner>.lock`: held by a spool's process while it lives, and
    by whoever adopts the spool once it died (the kernel drops it with its holder)."""

    path: Path
    fd: int

    @classmethod
    def take(cls, path: Path, *, create: bool = False) -> SpoolLock | None:
        """The lock, or None while another process holds it (or it is gone)."""
        try:
            fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o600)
        except FileNotFoundError:
            return None  # released meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return cls(path, fd)

    def release(self) -> None:
        """Everything was sent: forget the owner."""
        self.path.unlink(missing_ok=True)
        os.close(self.fd)

    def drop(self) -> None:
        """Sending failed: keep the file, so another process of the host adopts what is
        left."""
        os.close(self.fd)


@dataclass
class Orphan:
    """The spool of a process that died, locked by its adopter until sent."""

    owner: str
    segments: list[Path]
    lock: SpoolLock


class PushSpool:
    def __init__(self, directory: Path, owner: str) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self.owner = owner
        lock = SpoolLock.take(directory / f"{owner}{LOCK_SUFFIX}", create=True)
        if lock is None:
            raise OSError(f"spool {owner} is locked by another process")
        self.lock = lock  # released (or dropped) by the caller after `close`
        self._mutex = threading.Lock()
        self._number = 0
        self._fd, self._bytes = self._open_segment(0), 0
        self._sealed: list[Path] = []  # sealed and not yet sent, oldest first
        self.closed = False

    def _segment_path(self, number: int) -> Path:
        return self.directory / f"{self.owner}.{number:012d}{SEGMENT_SUFFIX}"

    def _open_segment(self, number: int) -> int:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        return os.open(self._segment_path(number), flags, 0o600)

    def append(self, record: IntakeRecord) -> None:
        """Keep one accepted notification. Raises OSError when the disk refuses (full)."""
        line = encode(record)
        with self._mutex:
            if self.closed:
                raise OSError("the spool is closed")
            written = os.write(self._fd, line)
            if written != len(line):  # a short write: the disk is full; keep no torn line
                os.ftruncate(self._fd, self._bytes)
                raise OSError("short write to the push spool")
            self._bytes += written

    def seal(self) -> None:
        """Start a new segment if the current one holds anything."""
        with self._mutex:
            if not self._bytes or self.closed:
                return
            # Opened first: if that fails, appends keep going to the unsealed segment.
            fresh = self._open_segment(self._number + 1)
            sealed = self._fd
            self._sealed.append(self._segment_path(self._number))
            self._number += 1
            self._fd, self._bytes = fresh, 0
        os.close(sealed)

    def sealed_segments(self) -> list[Path]:
        """This process's sealed segments not yet sent, oldest first."""
        with self._mutex:
            return list(self._sealed)

    def sent(self, path: Path) -> None:
        """Redis holds `path`'s records: delete it."""
        path.unlink(missing_ok=True)
        with self._mutex:
            self._sealed.remove(path)

    def orphans(self) -> Iterator[Orphan]:
        """Spools of processes that died, each locked for the caller while it sends them."""
        for lock_path in sorted(self.directory.glob(f"*{LOCK_SUFFIX}")):
            owner = lock_path.name.removesuffix(LOCK_SUFFIX)
            if owner == self.owner:
                continue
            lock = SpoolLock.take(lock_path)
            if lock is not None:
                yield Orphan(owner, segments_of(self.directory, owner), lock)

    def close(self) -> None:
        """Stop accepting; seal what is left (sent by the caller or adopted later)."""
        with self._mutex:
            if self.closed:
                return
            self.closed = True
            os.close(self._fd)
            if self._bytes:
                self._sealed.append(self._segment_path(self._number))
            else:
                self._segment_path(self._number).unlink(missing_ok=True)


def holds_records(directory: Path) -> bool:
    """Whether any spool in `directory` holds a notification not yet sent to Redis."""
    for path in directory.glob(f"*{SEGMENT_SUFFIX}"):
        try:
            if path.stat().st_size:
                return True
        except FileNotFoundError:
            continue  # sent and deleted meanwhile
    return False
