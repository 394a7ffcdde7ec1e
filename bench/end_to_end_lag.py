"""End-to-end lag: from a change at Google (the emulator) to its busy row committed by calsync.

What runs: calsync's real processes on a private Redis and a fresh PostgreSQL database —
gunicorn web (the push receiver), a Celery worker pool, and beat — and the emulator as a
child process, delivering real HTTP push notifications. 1,000 calendars (one host, account
and calendar each) are attached through the product's registry, fully synced and watched.

Load: changes at 50/s for 60 s over random calendars — inserts of new busy events (40%),
moves of existing ones (40%, start and end patched) and deletes (20%) — made through the
emulator's control API by a paced driver (a few threads, so one slow call does not delay
the next change).

Measured per change: lag = calsync's commit time minus the change's time.
- change time: the event's `updated` stamped by the emulator when it made the change (ms);
- commit time: `applied_at` of the change's row (busy_blocks for inserts and moves, the
  cancelled tombstone for deletes), stamped by the worker in the transaction that commits
  the blocks and the sync token, a few milliseconds before that commit.
Every change is looked up afterwards (each event changes at most once per phase), so a
missing change is counted, never silently dropped; at the end every calendar's busy
intervals are compared with the emulator's reference answer.

Phases (same stack): push with emulator latency 0; push with 100 ms added to every Google
API call; then the baseline users of polling tools live with: the same load on another
1,000 calendars that cannot be watched (Google refuses push for them), which calsync polls
every CALSYNC_POLL_SECONDS = 60 s (±25% per-calendar spread, beat checks every 7.5 s). The
RATIO lines are polling / push.

Fair: the same machine, load, database and processes in every phase; the push fleet sits idle
(no changes, no syncs) during the polling phase. The smoke run uses a few calendars, 2 s of
load at 10/s and a 3 s poll interval (so its polling phase finishes in seconds).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any

from bench.harness import Report, bench_stack, change_points, lag_slices, parser, percentile

DEFAULT_CONCURRENCY = 12  # the Procfile default: I/O-bound syncs (Google latency), not CPU


@dataclass(frozen=True)
class Size:
    push_calendars: int
    poll_calendars: int
    rate: float
    seconds: float
    poll_seconds: int
    seeded_per_calendar: int


FULL = Size(1000, 1000, 50.0, 60.0, 60, 2)
SMOKE = Size(8, 4, 10.0, 2.0, 3, 2)


def phase_report(report: Report, prefix: str, changes: list, achieved: float, missing: int):
    lags = [c.lag_ms for c in changes if c.lag_ms is not None]
    report.value(f"{prefix}.changes", len(changes))
    report.value(f"{prefix}.achieved_rate", achieved, "/s")
    report.value(f"{prefix}.missing", missing)
    stats = {}
    for p in (50, 95, 99):
        stats[p] = percentile(lags, p)
        report.value(f"{prefix}.lag_p{p}_ms", stats[p], "ms")
    report.value(f"{prefix}.lag_max_ms", max(lags) if lags else float("nan"), "ms")
    for kind in ("insert", "move", "delete"):
        kind_lags = [c.lag_ms for c in changes if c.kind == kind and c.lag_ms is not None]
        report.value(f"{prefix}.{kind}.count", len(kind_lags))
        report.value(f"{prefix}.{kind}.lag_p50_ms", percentile(kind_lags, 50), "ms")
    report.value(f"{prefix}.lag_p50_p99_by_10s", lag_slices(change_points(changes)), "ms")
    return stats


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    p.add_argument("--pool", default="prefork", choices=("prefork", "threads"))
    p.add_argument("--calendars", type=int, default=None, help="override the fleet size")
    p.add_argument("--seconds", type=float, default=None, help="override the load duration")
    p.add_argument("--skip-polling", action="store_true", help="development: push only")
    args = p.parse_args(argv)
    size = SMOKE if args.smoke else FULL
    if args.calendars:
        size = replace(size, push_calendars=args.calendars, poll_calendars=args.calendars)
    if args.seconds:
        size = replace(size, seconds=args.seconds)
    report = Report("end_to_end_lag", smoke=args.smoke)
    report.header()
    report.value("worker.pool", args.pool)
    report.value("worker.concurrency", args.concurrency)
    with bench_stack("lag", args.keep_logs, poll_seconds=size.poll_seconds) as stack:
        return run(stack, size, args, report)


def run(stack: Any, size: Size, args: Any, report: Report) -> int:
    from bench import calendar_fleet as fleet
    from bench.change_load import ChangeLoad, wait_applied

    control = stack.control()
    stack.start_web()
    stack.start_worker(args.concurrency, extra_args=pool_args(args.pool))
    stack.start_outbound()  # as the Procfile runs it (beat sends it the outbound sweeps)
    stack.start_beat()
    stack.wait_ready()

    push, seeded = fleet.attach_fleet(
        control, size.push_calendars, "push", events_per_calendar=size.seeded_per_calendar
    )
    ids = [c.calendar_id for c in push]
    fleet.wait_until(lambda: fleet.fleet_ready(ids, watched=True), 600, "push fleet ready", 1)
    fleet.wait_settled(180, quiet_seconds=1 if args.smoke else 10)
    report.value("push.calendars", len(push))
    load = ChangeLoad(control, [c.google_calendar_id for c in push], seeded)

    results = {}
    for prefix, latency in (("push", 0), ("push_latency100", 100)):
        control.set_faults(latency_ms=latency)
        changes, achieved = load.run(size.rate, size.seconds)
        missing = wait_applied(changes, timeout=60)
        results[prefix] = phase_report(report, prefix, changes, achieved, missing)
        report.value(f"{prefix}.emulator_latency_ms", latency, "ms")
        fleet.wait_until(fleet.fleet_idle, 60, "idle")
    control.set_faults(latency_ms=0)
    wrong = fleet.mismatched_calendars(control, push)
    report.value("push.calendars_mismatched", len(wrong))

    if not args.skip_polling:
        polled, seeded = fleet.attach_fleet(
            control,
            size.poll_calendars,
            "poll",
            watchable=False,
            events_per_calendar=size.seeded_per_calendar,
        )
        ids = [c.calendar_id for c in polled]
        fleet.wait_until(lambda: fleet.fleet_ready(ids, watched=False), 600, "poll fleet ready", 1)
        report.value("poll.calendars", len(polled))
        report.value("poll.interval_s", size.poll_seconds, "s")
        load = ChangeLoad(control, [c.google_calendar_id for c in polled], seeded, seed=8)
        changes, achieved = load.run(size.rate, size.seconds)
        missing = wait_applied(changes, timeout=size.poll_seconds * 1.25 + 30)
        results["poll"] = phase_report(report, "poll", changes, achieved, missing)
        wrong_polled = fleet.mismatched_calendars(control, polled)
        report.value("poll.calendars_mismatched", len(wrong_polled))
        report.ratio("poll_p50_over_push_p50", results["poll"][50], results["push"][50])
        report.ratio("poll_p99_over_push_p99", results["poll"][99], results["push"][99])

    report.bar("push p50 lag ms (latency 0)", results["push"][50], 150, at_least=False)
    report.bar("push p99 lag ms (latency 0)", results["push"][99], 1000, at_least=False)
    report.bar(
        "push p99 lag ms (latency 100 ms)", results["push_latency100"][99], 2000, at_least=False
    )
    missing_total = sum(report.values.get(f"{k}.missing", 0) for k in results)
    report.bar("changes never applied", missing_total, 0, at_least=False)
    report.bar("calendars differing from Google", len(wrong), 0, at_least=False)
    return report.finish(args.json)


def pool_args(pool: str) -> list[str]:
    """The worker's extra arguments for `--pool`: prefork is Celery's default."""
    return [] if pool == "prefork" else [f"--pool={pool}"]


if __name__ == "__main__":
    sys.exit(main())
