"""Google calls per burst: how many events.list sequences calsync makes for a burst of 20
changes to one calendar within a second.

What runs: calsync's real processes (gunicorn web, a Celery worker pool, beat) on a private
Redis and a fresh PostgreSQL database, and the emulator as a child process delivering real
push notifications. Calendars are attached through the product's registry, fully synced
and watched.

A burst: 20 busy events inserted into one calendar through the emulator's control API, one
after another as fast as the driver can (so within well under a second; the report gives
the bursts' actual spans), which makes the emulator push 20 notifications. Bursts go to
different calendars, a new one every 0.2 s, so several are in flight at once, as in
production.

Counted: events.list *sequences* per burst = first-page requests (no pageToken) for the
burst's calendar in the emulator's request log, from the burst's start until everything is
synced and idle. Page follow-ups are not extra sequences; every sequence is a real Google
call the product chose to make. The bar is on the fast bursts; a second phase spreads each
burst's 20 changes evenly over 1 s (informational). The 20 changes are checked to have all
reached the busy table (nothing saved by skipping work).

Fair: the same stack and calendars in both phases; each calendar has one burst per phase, so
no burst's calls are counted for another.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.harness import Report, bench_stack, parser, percentile

CHANGES_PER_BURST = 20
BURST_EVERY_SECONDS = 0.2
DEFAULT_CONCURRENCY = 12  # as bench.end_to_end_lag and the Procfile


@dataclass
class Burst:
    google_calendar_id: str
    changes: list
    span_ms: float = 0.0


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    p.add_argument("--calendars", type=int, default=None, help="override the number of bursts")
    args = p.parse_args(argv)
    calendars = args.calendars or (4 if args.smoke else 100)
    report = Report("calls_per_burst", smoke=args.smoke)
    report.header()
    report.value("worker.concurrency", args.concurrency)
    with bench_stack("burst", args.keep_logs) as stack:
        return run(stack, calendars, args, report)


def run(stack: Any, count: int, args: Any, report: Report) -> int:
    from bench import calendar_fleet as fleet

    control = stack.control()
    stack.start_web()
    stack.start_worker(args.concurrency)
    stack.start_beat()
    stack.wait_ready()
    calendars, _seeded = fleet.attach_fleet(control, count, "burst")
    ids = [c.calendar_id for c in calendars]
    fleet.wait_until(lambda: fleet.fleet_ready(ids, watched=True), 300, "fleet ready", 0.5)
    fleet.wait_until(fleet.fleet_idle, 60, "idle")
    report.value("calendars", count)
    report.value("changes_per_burst", CHANGES_PER_BURST)

    averages = {}
    for phase, spread in (("fast", 0.0), ("spread_1s", 1.0)):
        since = control.requests()[-1]["seq"] if control.requests() else 0
        bursts = run_bursts(control, [c.google_calendar_id for c in calendars], spread)
        from bench.change_load import wait_applied

        missing = wait_applied([c for b in bursts for c in b.changes], timeout=60)
        control.wait_push_idle(timeout=30)
        fleet.wait_until(fleet.fleet_idle, 60, "idle")
        sequences = count_sequences(control.requests(since), calendars)
        per_burst = [sequences[b.google_calendar_id] for b in bursts]
        spans = [b.span_ms for b in bursts]
        averages[phase] = sum(per_burst) / len(per_burst)
        report.value(f"{phase}.bursts", len(bursts))
        report.value(f"{phase}.burst_span_p50_ms", percentile(spans, 50), "ms")
        report.value(f"{phase}.burst_span_max_ms", max(spans), "ms")
        report.value(f"{phase}.sequences_per_burst_avg", averages[phase])
        report.value(f"{phase}.sequences_per_burst_max", max(per_burst))
        report.value(f"{phase}.changes_missing", missing)
        report.ratio(
            f"{phase}.google_calls_saved_vs_one_per_notification",
            CHANGES_PER_BURST,
            averages[phase],
        )
    report.bar("events.list sequences per fast burst (avg)", averages["fast"], 1.2, at_least=False)
    report.bar(
        "changes never applied",
        report.values["fast.changes_missing"] + report.values["spread_1s.changes_missing"],
        0,
        at_least=False,
    )
    return report.finish(args.json)


def run_bursts(control: Any, calendars: list[str], spread_seconds: float) -> list[Burst]:
    import random

    from bench.calendar_fleet import event_body, random_slot, slot_base
    from bench.change_load import Change, parse_time

    base = slot_base()
    bursts = [Burst(cal, []) for cal in calendars]

    def burst(b: Burst) -> None:
        rng = random.Random(b.google_calendar_id)
        started = time.monotonic()
        for i in range(CHANGES_PER_BURST):
            if spread_seconds:
                delay = started + i * spread_seconds / (CHANGES_PER_BURST - 1) - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            start, end = random_slot(rng, base)
            event = control.insert_event(b.google_calendar_id, event_body(start, end))
            b.changes.append(
                Change(
                    "insert",
                    b.google_calendar_id,
                    event["id"],
                    start,
                    end,
                    updated=parse_time(event["updated"]),
                )
            )
        first, last = b.changes[0].updated, b.changes[-1].updated
        b.span_ms = (last - first).total_seconds() * 1000

    threads = []
    for b in bursts:
        thread = threading.Thread(target=burst, args=(b,))
        thread.start()
        threads.append(thread)
        time.sleep(BURST_EVERY_SECONDS)
    for thread in threads:
        thread.join()
    return bursts


def count_sequences(requests: list[dict], calendars: list) -> dict[str, int]:
    counts = {c.google_calendar_id: 0 for c in calendars}
    for r in requests:
        first_page = r["methodId"] == "calendar.events.list" and not r.get("pageToken")
        if first_page and r["calendarId"] in counts:
            counts[r["calendarId"]] += 1
    return counts


if __name__ == "__main__":
    sys.exit(main())
