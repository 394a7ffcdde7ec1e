"""What the soak throws at the stack: a stream of real calendar edits (with forced 410s), a
stream of forged or malformed push notifications, and SIGKILLs of worker processes."""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from emulator.control import EmulatorControl, EmulatorControlError
from tests.soak.stack import LiveCalendar, SoakPlan, SoakStack, syncs_in_flight
from tests.support.calendar_edits import CalendarEditor

# ----- real edits ---------------------------------------------------------------------


class EditStream:
    """Edits calendars at a steady rate in a background thread, invalidating one calendar's
    sync tokens every so often (a forced 410 on its next incremental sync)."""

    def __init__(
        self,
        control: EmulatorControl,
        calendars: list[LiveCalendar],
        seed: int,
        rate: float,
        invalidate_every_seconds: float | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.editors = [
            CalendarEditor(control, cal.google_calendar_id, self.rng) for cal in calendars
        ]
        self.control = control
        self.calendars = calendars
        self.rate = rate
        self.invalidate_every = invalidate_every_seconds
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-edits", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> EditStream:
        self._thread.start()
        return self

    def stop(self) -> Counter[str]:
        self._stop.set()
        self._thread.join(60)
        if self.error is not None:
            raise self.error
        return self.counts

    def _run(self) -> None:
        last_invalidation = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    self.counts[self.rng.choice(self.editors).random_edit()] += 1
                except EmulatorControlError:
                    self.counts["refused_by_emulator"] += 1
                now = time.monotonic()
                if self.invalidate_every and now - last_invalidation >= self.invalidate_every:
                    cal = self.rng.choice(self.calendars)
                    self.control.invalidate_sync_tokens(cal.google_calendar_id)
                    self.counts["sync_token_invalidations"] += 1
                    last_invalidation = now
                self._stop.wait(self.rng.uniform(0.5, 1.5) / self.rate)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc


# ----- forged notifications ----------------------------------------------------------


@dataclass(frozen=True)
class RealChannel:
    channel_id: str
    token: str
    resource_id: str


@dataclass
class ForgedRequest:
    kind: str
    method: str
    headers: dict[str, str]
    body: bytes | None = None
    chunked: bool = False


def _headers(channel_id: str, token: str | None, resource_id: str, state: str, number: str):
    headers = {
        "X-Goog-Channel-ID": channel_id,
        "X-Goog-Resource-ID": resource_id,
        "X-Goog-Resource-State": state,
        "X-Goog-Message-Number": number,
        "X-Goog-Resource-URI": "https://www.googleapis.com/calendar/v3/calendars/x/events",
        "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
    }
    if token is not None:
        headers["X-Goog-Channel-Token"] = token
    return headers


FORGED_KINDS = (
    "unknown_channel",
    "wrong_token",
    "missing_token",
    "wrong_resource_id",
    "missing_headers",
    "bad_message_number",
    "bad_resource_state",
    "json_body",
    "garbage_body",
    "huge_body",
    "chunked_body",
    "wrong_method",
    "long_header",
    "oversized_header",
)


def forge(kind: str, target: RealChannel, rng: random.Random) -> ForgedRequest:
    """One forged or malformed notification of `kind` aimed at a real channel."""
    number = str(rng.randint(2, 10_000))
    state = rng.choice(["exists", "not_exists"])
    good = _headers(target.channel_id, target.token, target.resource_id, state, number)
    hexed = f"{rng.getrandbits(128):032x}"
    if kind == "unknown_channel":
        return ForgedRequest(kind, "POST", {**good, "X-Goog-Channel-ID": hexed})
    if kind == "wrong_token":
        return ForgedRequest(kind, "POST", {**good, "X-Goog-Channel-Token": hexed})
    if kind == "missing_token":
        headers = dict(good)
        del headers["X-Goog-Channel-Token"]
        return ForgedRequest(kind, "POST", headers)
    if kind == "wrong_resource_id":
        return ForgedRequest(kind, "POST", {**good, "X-Goog-Resource-ID": hexed})
    if kind == "missing_headers":
        required = [
            "X-Goog-Channel-ID",
            "X-Goog-Resource-ID",
            "X-Goog-Resource-State",
            "X-Goog-Message-Number",
        ]
        dropped = rng.sample(required, rng.randint(1, len(required)))
        return ForgedRequest(kind, "POST", {k: v for k, v in good.items() if k not in dropped})
    if kind == "bad_message_number":
        bad = rng.choice(["abc", "-1", "1e3", "\u00b2", "9" * 25, "", "0x10", "1.5"])
        return ForgedRequest(kind, "POST", {**good, "X-Goog-Message-Number": bad})
    if kind == "bad_resource_state":
        bad = rng.choice(["deleted", "EXISTS", "update", "x" * 40, "exists;sync", "sync,exists"])
        return ForgedRequest(kind, "POST", {**good, "X-Goog-Resource-State": bad})
    if kind == "json_body":
        body = b'{"kind": "api#channel", "resourceState": "exists", "id": ' + hexed.encode()
        return ForgedRequest(kind, "POST", {**good, "Content-Type": "application/json"}, body)
    if kind == "garbage_body":
        return ForgedRequest(kind, "POST", good, rng.randbytes(rng.randint(1, 4096)))
    if kind == "huge_body":
        return ForgedRequest(kind, "POST", good, b"x" * rng.randint(65 * 1024, 200 * 1024))
    if kind == "chunked_body":
        return ForgedRequest(kind, "POST", good, rng.randbytes(512), chunked=True)
    if kind == "wrong_method":
        return ForgedRequest(kind, rng.choice(["GET", "PUT", "DELETE", "PATCH"]), good)
    if kind == "long_header":
        name = rng.choice(["X-Goog-Channel-ID", "X-Goog-Channel-Token", "X-Goog-Resource-ID"])
        return ForgedRequest(kind, "POST", {**good, name: "a" * rng.randint(300, 4000)})
    if kind == "oversized_header":  # past the HTTP server's own header limit
        return ForgedRequest(kind, "POST", {**good, "X-Goog-Channel-ID": "b" * 12_000})
    raise ValueError(kind)


class ForgedTraffic:
    """Sends `total` forged notifications from a thread pool, paced over `seconds`, aimed at
    real channels (half of them at the canary's); counts the answers by kind and status."""

    def __init__(
        self,
        address: str,
        channels: list[RealChannel],
        canary: RealChannel,
        total: int,
        seconds: float,
        seed: int,
        threads: int = 6,
    ) -> None:
        rng = random.Random(seed)
        self.requests = []
        for _ in range(total):
            target = canary if rng.random() < 0.5 else rng.choice(channels)
            self.requests.append(forge(rng.choice(FORGED_KINDS), target, rng))
        self.address = address
        self.interval = seconds / max(1, total)
        self.threads = threads
        self.statuses: Counter[tuple[str, int | str]] = Counter()
        self.sent = 0
        self.answered_at: list[tuple[float, int | str]] = []  # (wall time, status)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-forged", daemon=True)

    def start(self) -> ForgedTraffic:
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _send(self, forged: ForgedRequest) -> None:
        body: Any = forged.body
        if forged.chunked and body is not None:
            data = body
            body = iter([data[: len(data) // 2], data[len(data) // 2 :]])
        status: int | str
        # A connection of its own: the server may close one after refusing a request, and
        # a reused connection it closed would look like a transport error.
        try:
            with requests.Session() as session:
                response = session.request(
                    forged.method, self.address, headers=forged.headers, data=body, timeout=30
                )
                status = response.status_code
        except requests.RequestException as exc:
            status = f"error:{type(exc).__name__}"
        with self._lock:
            self.statuses[(forged.kind, status)] += 1
            self.answered_at.append((time.time(), status))

    def _run(self) -> None:
        with ThreadPoolExecutor(self.threads, thread_name_prefix="forged") as pool:
            started = time.monotonic()
            for index, forged in enumerate(self.requests):
                if self._stop.is_set():
                    break
                pause = started + index * self.interval - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                pool.submit(self._send, forged)
                self.sent += 1

    def by_status(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for (_kind, status), count in self.statuses.items():
            totals[str(status)] += count
        return dict(sorted(totals.items()))

    def by_kind(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for (kind, status), count in sorted(self.statuses.items(), key=str):
            table.setdefault(kind, {})[str(status)] = count
        return table


# ----- kills ----------------------------------------------------------------------------

# x86-64 syscall numbers: an idle Celery pool child sleeps in a read of its job pipe or on
# the futex of the lock guarding that pipe.
_READ, _FUTEX = "0", "202"


def looks_busy(pid: int) -> bool:
    """Heuristic: the pool child is running a task, i.e. not waiting for one.

    /proc/<pid>/syscall names the call the process blocks in and its first argument; a
    child waiting for work blocks on its job pipe (or the futex guarding it), one running a
    sync on a socket (HTTP to Google, the database) or on the CPU."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    if not fields:
        return False
    if fields[0] == _FUTEX:
        return False
    if fields[0] == _READ and len(fields) > 1:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{int(fields[1], 16)}")
        except (OSError, ValueError):
            return False
        return not target.startswith("pipe:")
    return True


class Killer:
    """SIGKILLs worker processes while syncs are in flight: mostly pool children (the main
    process forks a replacement), every n-th time a whole worker (then restarted)."""

    def __init__(self, stack: SoakStack, plan: SoakPlan, seed: int) -> None:
        self.stack = stack
        self.plan = plan
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()

    def kill(self, number: int) -> None:
        deadline = time.monotonic() + 5
        while not syncs_in_flight() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(self.rng.uniform(0, 0.25))  # a random point within the sync
        if syncs_in_flight():
            self.counts["during_sync"] += 1
        if number % self.plan.main_kill_every == self.plan.main_kill_every - 1:
            self._kill_whole_worker()
        else:
            self._kill_pool_child()
        self.counts["total"] += 1
        self.stack.revive_dead_workers()

    def _kill_pool_child(self) -> None:
        deadline = time.monotonic() + 30
        while not self.stack.ready_workers() and time.monotonic() < deadline:
            time.sleep(0.05)
        children = [
            (worker, pid) for worker in self.stack.ready_workers() for pid in worker.children()
        ]
        if not children:
            self.counts["no_child_to_kill"] += 1
            return
        busy = [(worker, pid) for worker, pid in children if looks_busy(pid)]
        worker, target = self.rng.choice(busy or children)
        if not worker.kill_child(target):
            self.counts["child_already_gone"] += 1
            return
        self.counts["pool_child"] += 1
        self.counts["pool_child_busy"] += bool(busy)

    def _kill_whole_worker(self) -> None:
        worker = self.rng.choice(self.stack.workers)
        worker.kill()
        self.counts["whole_worker"] += 1
        self.stack.restart(worker)
