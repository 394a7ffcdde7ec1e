"""CPU use of the machine's processes grouped by role, printed every N seconds: run it
beside a benchmark to see where the cores go (benchmark 7's capacity analysis in
bench/RESULTS.md was made with it).

    python -m bench.cpu_by_process 10     # until Ctrl-C

Each line: the time, the machine's total (200% = two cores busy) and each role's share.
Roles come from the command line: calsync's Procfile processes (web, worker, outbound,
beat), the emulator, a benchmark's driver, PostgreSQL and Redis. A process is counted from
its second sample on (its CPU before the first is not known).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import Counter

TICKS = os.sysconf("SC_CLK_TCK")
# (must contain, and also, role): the first match wins.
ROLES = (
    ("celery", "-Q outbound", "outbound"),
    ("celery", " beat", "beat"),
    ("celery", "worker", "worker"),
    ("gunicorn", "", "web"),
    ("emulator", "", "emulator"),
    ("webhook_receiver.mjs", "", "receivers"),
    ("bench.", "", "bench"),
    ("postgres", "", "postgres"),
    ("redis", "", "redis"),
)


def role_of(command: str) -> str:
    for needle, also, role in ROLES:
        if needle in command and also in command:
            return role
    return "other"


def cpu_ticks() -> dict[tuple[int, str], int]:
    """User + system ticks of every process, by (pid, role)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        found[(int(entry), role_of(command))] = int(fields[11]) + int(fields[12])
    return found


def main(argv: list[str]) -> None:
    interval = float(argv[0]) if argv else 10.0
    previous = cpu_ticks()
    while True:
        time.sleep(interval)
        current = cpu_ticks()
        used: Counter[str] = Counter()
        for key, ticks in current.items():
            if key in previous:
                used[key[1]] += ticks - previous[key]
        previous = current
        share = {role: 100 * ticks / TICKS / interval for role, ticks in used.items()}
        busiest = sorted(share.items(), key=lambda item: -item[1])
        parts = " ".join(f"{role}={pct:.0f}" for role, pct in busiest if pct >= 0.5)
        print(f"{time.strftime('%H:%M:%S')} total={sum(share.values()):.0f}% {parts}", flush=True)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main(sys.argv[1:])
