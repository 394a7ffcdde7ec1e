"""Full sync apply: one calendar synced from scratch, against a raw bulk insert of its rows.

What is measured
- The emulator (its own process) holds one calendar of N event instances inside the sync
  horizon: mostly single timed events, about a third instances of daily and weekly RRULE
  series (listed as instances, `singleEvents=true`), some all-day, some shown as Free, some
  declined, some tentative, so every busy rule on the hot path runs.
- A worker-like child process (it imports `worker.tasks`, as a Celery worker does, and warms
  up with one small sync) runs the product's real full sync: `worker.sync_engine.sync_calendar`
  (what the `calsync.sync_calendar` task calls), the real google-api-python-client over HTTP,
  PostgreSQL through SQLAlchemy + psycopg 3.
- "Events/s applied" (the bar) = N / the time of the sync's database write phase: every
  database statement that stores the listing (calendar_events and busy_blocks rows, the sync
  token, the run row) up to and including the commit. It is the same work the ceiling does,
  so the ratio says how much the product's apply costs over the driver's best. Fetching
  (HTTP, JSON) and deciding are reported too, as the whole-sync rate, but they are not part
  of the bar: the ceiling has no Google in it.
- Ceiling, timed in the same run on the same server: the rows the sync produced, read back,
  inserted with psycopg 3 alone into fresh tables that have the product tables' columns,
  indexes, unique constraints and foreign key, in one transaction plus commit. Two raw ways
  are timed (executemany, COPY), several rounds each; the fastest round of the fastest way is
  the ceiling.
- Memory: the same child syncs a calendar of M events (50,000 in the full run); its peak RSS
  (VmHWM) is the bar, and its RSS before the sync is printed so the increment is visible.

Why it is fair: the product and the ceiling write the same rows into equally indexed, empty
tables, through the same driver and server, in the same run; the ceiling skips only what a
driver user could skip (ORM/Core statement building, the diff, type processing).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

from bench.harness import Report, bench_stack, parser, peak_rss_mb

# The ceiling inserts exactly the columns the sync writes.
from models.busy_block_writer import BLOCK_COLUMNS, EVENT_COLUMNS

REPO = Path(__file__).resolve().parents[1]
TIME_ZONE = "Europe/Berlin"
ROUNDS = 3  # product syncs and ceiling rounds; medians are compared
WARMUP_EVENTS = 20


# --- the calendar -------------------------------------------------------------------------


def calendar_events(owner: str, instances: int, seed: int) -> tuple[list[dict], int]:
    """Event bodies giving exactly `instances` instances in the horizon, and how many of them
    block time (not Free, not declined)."""
    rng = random.Random(seed)
    first_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first_day += timedelta(days=2)
    bodies: list[dict] = []
    busy = 0
    made = 0

    def timed(day: int, hour: int, minutes: int) -> tuple[dict, dict]:
        start = first_day + timedelta(days=day, hours=hour, minutes=rng.choice((0, 15, 30)))
        end = start + timedelta(minutes=minutes)
        return (
            {"dateTime": start.isoformat(), "timeZone": "UTC"},
            {"dateTime": end.isoformat(), "timeZone": "UTC"},
        )

    def flavour(body: dict) -> bool:
        """Free, declined, tentative or plain; returns whether it blocks time."""
        roll = rng.random()
        if roll < 0.10:
            body["transparency"] = "transparent"
            return False
        if roll < 0.17:
            body["attendees"] = [{"email": owner, "responseStatus": "declined"}]
            return False
        if roll < 0.22:
            body["attendees"] = [{"email": owner, "responseStatus": "tentative"}]
        return True

    # About a third of the instances come from recurring series.
    while made < instances // 3:
        daily = rng.random() < 0.5
        count = min(20 if daily else 26, instances // 3 - made)
        start, end = timed(rng.randrange(60), rng.randrange(7, 18), rng.choice((15, 30, 60)))
        freq = "FREQ=DAILY" if daily else "FREQ=WEEKLY"
        body = {
            "summary": f"series {len(bodies)}",
            "start": start,
            "end": end,
            "recurrence": [f"RRULE:{freq};COUNT={count}"],
        }
        busy += count if flavour(body) else 0
        bodies.append(body)
        made += count
    while made < instances:
        day = rng.randrange(300)
        body: dict[str, Any] = {"summary": f"meeting {made} with a longer title"}
        if rng.random() < 0.08:
            start_day = (first_day + timedelta(days=day)).date()
            body["start"] = {"date": start_day.isoformat()}
            body["end"] = {"date": (start_day + timedelta(days=1)).isoformat()}
        else:
            body["start"], body["end"] = timed(
                day, rng.randrange(6, 20), rng.choice((15, 30, 45, 60, 90))
            )
        busy += 1 if flavour(body) else 0
        bodies.append(body)
        made += 1
    return bodies, busy


def load_calendar(
    stack: Any, name: str, instances: int, seed: int, hosts: int = 1
) -> tuple[list[int], int, float]:
    """Put a calendar into the emulator and attach it to `hosts` new hosts (each its own
    calendar row, synced from scratch independently): (calendar ids, busy instances, seconds
    the emulator took to load it)."""
    from models.db import session_scope
    from models.registry import attach_calendar, create_host

    email = f"{name}@example.com"
    bodies, busy = calendar_events(email, instances, seed)
    control = stack.control()
    started = time.perf_counter()
    answer = control.load_scenario(
        {
            "accounts": [email],
            "calendars": [{"id": email, "timeZone": TIME_ZONE, "owner": email, "events": bodies}],
        }
    )
    loaded = time.perf_counter() - started
    calendar_ids = []
    with session_scope() as session:
        for number in range(hosts):
            host, _token = create_host(session, f"{name} {number}", TIME_ZONE)
            calendar, _ = attach_calendar(session, host.id, email, answer["accounts"][email])
            calendar_ids.append(calendar.id)
    return calendar_ids, busy, loaded


# --- the syncing process ----------------------------------------------------------------


def _vm_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_main(warmup_id: int, calendar_ids: list[int], result_path: Path) -> None:
    """Runs in the worker-like child: warm up, then one measured full sync per calendar."""
    import worker.tasks  # noqa: F401  (what a Celery worker has loaded)
    from worker import sync_engine

    write_seconds = 0.0
    original_commit = sync_engine._commit

    def timed_commit(*args: Any, **kwargs: Any) -> Any:
        nonlocal write_seconds
        started = time.perf_counter()
        try:
            return original_commit(*args, **kwargs)
        finally:
            write_seconds += time.perf_counter() - started

    sync_engine._commit = timed_commit
    warm = sync_engine.sync_calendar(warmup_id, full=True, force=True, trigger="bench")
    assert warm.status == "done", warm
    baseline_rss, baseline_peak = _vm_rss_mb(), peak_rss_mb()
    syncs = []
    for calendar_id in calendar_ids:
        write_seconds = 0.0
        started = time.perf_counter()
        result = sync_engine.sync_calendar(calendar_id, full=True, force=True, trigger="bench")
        total = time.perf_counter() - started
        assert result.status == "done" and len(result.runs) == 1, result
        syncs.append({"total_seconds": total, "write_seconds": write_seconds})
    result_path.write_text(
        json.dumps(
            {
                "syncs": syncs,
                "baseline_rss_mb": baseline_rss,
                "baseline_peak_mb": baseline_peak,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def run_child(stack: Any, warmup_id: int, calendar_ids: list[int]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        result_path = Path(tmp) / "result.json"
        argv = [sys.executable, "-m", "bench.full_sync_apply", "--child", str(warmup_id)]
        argv += [",".join(map(str, calendar_ids)), str(result_path)]
        if os.environ.get("FULLSYNC_PROFILE"):  # e.g. "py-spy record -o x.txt -f raw --"
            argv = os.environ["FULLSYNC_PROFILE"].split() + argv
        completed = subprocess.run(
            argv, cwd=REPO, env=stack.env, capture_output=True, text=True, check=False
        )
        if completed.returncode != 0 or not result_path.exists():
            raise SystemExit(f"sync child failed:\n{(completed.stdout + completed.stderr)[-4000:]}")
        return json.loads(result_path.read_text())


def check_stored(calendar_id: int, events: int, blocks: int) -> None:
    """The sync must have stored every instance and exactly the busy ones as blocks."""
    from sqlalchemy import func, select

    from models import BusyBlock, CalendarEvent
    from models.db import session_scope

    with session_scope() as session:
        stored = (
            session.scalar(select(func.count()).where(CalendarEvent.calendar_id == calendar_id)),
            session.scalar(select(func.count()).where(BusyBlock.calendar_id == calendar_id)),
        )
    if stored != (events, blocks):
        raise SystemExit(f"calendar {calendar_id}: stored {stored}, expected {(events, blocks)}")


# --- the ceiling: the same rows, psycopg 3 alone ------------------------------------------


def _psycopg_url() -> str:
    from core.settings import get_settings

    return get_settings().database_url.replace("postgresql+psycopg://", "postgresql://")


def _copy_table_sql(table: str) -> str:
    return (
        f'CREATE TABLE "ceiling_{table}" (LIKE "{table}" INCLUDING ALL, '
        f"FOREIGN KEY (calendar_id) REFERENCES calendars(id) ON DELETE CASCADE)"
    )


def ceiling(calendar_id: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per round for each raw way of inserting the calendar's synced rows (fresh,
    equally indexed tables; one transaction; commit included)."""
    import psycopg

    # Every name in these statements is one of this module's constants, never input.
    def columns(names: tuple[str, ...]) -> str:
        return ", ".join(f'"{name}"' for name in names)

    with psycopg.connect(_psycopg_url()) as conn:
        events = conn.execute(
            f"SELECT {columns(EVENT_COLUMNS)} FROM calendar_events WHERE calendar_id = %s",  # noqa: S608
            (calendar_id,),
        ).fetchall()
        blocks = conn.execute(
            f"SELECT {columns(BLOCK_COLUMNS)} FROM busy_blocks WHERE calendar_id = %s",  # noqa: S608
            (calendar_id,),
        ).fetchall()
        tables = (
            ("calendar_events", EVENT_COLUMNS, events),
            ("busy_blocks", BLOCK_COLUMNS, blocks),
        )
        for table, _names, _rows in tables:
            conn.execute(_copy_table_sql(table))
        conn.commit()

        def insert_many() -> None:
            with conn.cursor() as cursor:
                for table, names, rows in tables:
                    marks = ", ".join(["%s"] * len(names))
                    sql = f'INSERT INTO "ceiling_{table}" ({columns(names)}) VALUES ({marks})'  # noqa: S608
                    cursor.executemany(sql, rows)

        def copy() -> None:
            with conn.cursor() as cursor:
                for table, names, rows in tables:
                    with cursor.copy(f'COPY "ceiling_{table}" ({columns(names)}) FROM STDIN') as cp:
                        for row in rows:
                            cp.write_row(row)

        seconds: dict[str, list[float]] = {"executemany": [], "copy": []}
        for _ in range(rounds):  # interleaved, so a noisy moment hits both ways alike
            for name, way in (("executemany", insert_many), ("copy", copy)):
                conn.execute('TRUNCATE "ceiling_calendar_events", "ceiling_busy_blocks"')
                conn.commit()
                started = time.perf_counter()
                way()
                conn.commit()
                seconds[name].append(time.perf_counter() - started)
        conn.execute('DROP TABLE "ceiling_calendar_events", "ceiling_busy_blocks"')
        conn.commit()
    return seconds


# --- the run ------------------------------------------------------------------------------


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(int(sys.argv[2]), [int(i) for i in sys.argv[3].split(",")], Path(sys.argv[4]))
        return 0
    args = parser(__doc__.splitlines()[0]).parse_args()
    size, memory_size, rounds = (500, 1500, 2) if args.smoke else (10_000, 50_000, ROUNDS)
    report = Report("full_sync_apply", smoke=args.smoke)
    report.header()
    with bench_stack("fullsync", keep_logs=args.keep_logs) as stack:
        (warmup_id,), _, _ = load_calendar(stack, "warmup", WARMUP_EVENTS, seed=1)
        calendar_ids, busy, loaded = load_calendar(stack, "rate", size, seed=2, hosts=rounds)
        report.value("events", size)
        report.value("busy_instances", busy)
        report.value("rounds", rounds)
        report.value("emulator_load_seconds", round(loaded, 3), "s")

        syncs = run_child(stack, warmup_id, calendar_ids)["syncs"]
        for calendar_id in calendar_ids:
            check_stored(calendar_id, size, busy)
        total = median([s["total_seconds"] for s in syncs])
        write = median([s["write_seconds"] for s in syncs])
        report.value("sync_seconds_median", total, "s")
        report.value("write_phase_seconds_median", write, "s")
        report.value("write_phase_seconds_best", min(s["write_seconds"] for s in syncs), "s")
        report.value("whole_sync_events_per_second", size / total, "events/s")
        applied_rate = size / write
        report.value("applied_events_per_second", applied_rate, "events/s")

        raw = ceiling(calendar_ids[0], rounds)
        for way, seconds in raw.items():
            report.value(f"ceiling_{way}_seconds_median", median(seconds), "s")
            report.value(f"ceiling_{way}_seconds_best", min(seconds), "s")
        best_way = min(raw, key=lambda way: median(raw[way]))
        ceiling_rate = size / median(raw[best_way])
        report.value("ceiling_way", best_way)
        report.value("ceiling_events_per_second", ceiling_rate, "events/s")
        ratio = report.ratio("applied_vs_ceiling", applied_rate, ceiling_rate)
        report.ratio("whole_sync_vs_ceiling", size / total, ceiling_rate)
        report.bar("applied events/s / raw bulk insert events/s", ratio, 0.5, at_least=True)

        (memory_id,), memory_busy, loaded = load_calendar(stack, "memory", memory_size, seed=3)
        report.value("memory_events", memory_size)
        report.value("memory_emulator_load_seconds", round(loaded, 3), "s")
        big = run_child(stack, warmup_id, [memory_id])
        check_stored(memory_id, memory_size, memory_busy)
        (sync,) = big["syncs"]
        report.value("memory_sync_seconds", sync["total_seconds"], "s")
        report.value(
            "memory_applied_events_per_second", memory_size / sync["write_seconds"], "events/s"
        )
        report.value("worker_rss_before_sync_mb", round(big["baseline_rss_mb"], 1), "MiB")
        report.value("worker_peak_rss_mb", round(big["peak_rss_mb"], 1), "MiB")
        report.value(
            "worker_rss_increment_mb", round(big["peak_rss_mb"] - big["baseline_rss_mb"], 1), "MiB"
        )
        # Not the bar, but the heavier case: a full resync (410, periodic) of the same
        # calendar, where every stored row is loaded and compared.
        again = run_child(stack, warmup_id, [memory_id])
        check_stored(memory_id, memory_size, memory_busy)
        report.value("resync_seconds", again["syncs"][0]["total_seconds"], "s")
        report.value("resync_worker_peak_rss_mb", round(again["peak_rss_mb"], 1), "MiB")
        report.bar(
            f"peak worker RSS syncing {memory_size} events (MiB)",
            big["peak_rss_mb"],
            250,
            at_least=False,
        )
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
