"""CPU of one incremental sync, in process: what calsync spends on a sync of one change,
against fetching that change from Google alone.

    python -m bench.sync_cpu [--changes 400]

What runs: the emulator (its own process), a fresh PostgreSQL database and a private Redis
(the Google rate limiter's); this process plays the worker: `worker.sync_engine.sync_calendar`
as the `calsync.sync_calendar` task calls it, the real google-api-python-client over HTTP.
20 calendars, attached and fully synced first. Then, change after change (a busy event
inserted at the emulator, calendars in turn):
- baseline: the change fetched alone (the calendar's context read, `events.list` with its
  stored sync token through calsync's Google client, the page parsed), nothing stored;
- the sync of it: claim, context, fetch, decide, apply, commit (what a worker pays per
  pushed change, besides Celery's own handling of the message).
Measured: this process's CPU time (user + system) of each, the first 10% left out (warm-up).
A second pass does the same with 10 webhook endpoints registered, so every sync also writes
its outbound `busy.changed` row (benchmark 7's on phase). The sync's CPU drives benchmarks 2,
7 and 8: at 50 changes/s each millisecond here is 5% of a core.
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from bench.harness import Report, bench_stack, parser, percentile

CALENDARS = 20


def fetch_alone(calendar_id: int) -> int:
    """The change fetched as a sync would fetch it, nothing stored; events listed."""
    from core.settings import get_settings
    from models.db import session_scope
    from models.sync_flags import SYNC_STATES
    from worker import google_client, sync_engine

    with session_scope() as session:
        context = sync_engine.load_context(session, calendar_id)
        token = session.execute(
            SYNC_STATES.select().where(SYNC_STATES.c.calendar_id == calendar_id)
        ).one()
    assert context is not None and not isinstance(context, str)
    service = google_client.build_service(context.credentials, get_settings(), context.email)
    pages = google_client.list_event_pages(
        service, context.google_calendar_id, sync_token=token.sync_token
    )
    return sum(len(page.get("items", ())) for page in pages)


def measure(control: Any, calendars: list[Any], changes: int, seed: int) -> dict[str, list[float]]:
    from bench import calendar_fleet as fleet
    from worker import sync_engine

    rng = random.Random(seed)
    base = fleet.slot_base()
    cpu: dict[str, list[float]] = {"fetch": [], "sync": []}
    for n in range(changes):
        calendar = calendars[n % len(calendars)]
        body = fleet.event_body(*fleet.random_slot(rng, base))
        control.insert_event(calendar.google_calendar_id, body)
        started = time.process_time()
        listed = fetch_alone(calendar.calendar_id)
        cpu["fetch"].append((time.process_time() - started) * 1000)
        started = time.process_time()
        result = sync_engine.sync_calendar(calendar.calendar_id, force=True)
        cpu["sync"].append((time.process_time() - started) * 1000)
        if result.status != "done" or listed != 1:
            raise SystemExit(f"change {n}: sync {result.status}, {listed} events listed")
    skip = changes // 10
    return {kind: values[skip:] for kind, values in cpu.items()}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--changes", type=int, default=None)
    args = p.parse_args(argv)
    changes = args.changes or (20 if args.smoke else 400)
    report = Report("sync_cpu", smoke=args.smoke)
    report.header()
    with bench_stack("synccpu", args.keep_logs) as stack:
        return run(stack, changes, args, report)


def run(stack: Any, changes: int, args: Any, report: Report) -> int:
    from bench import calendar_fleet as fleet
    from bench.outbound_delivery import register_endpoints
    from worker import sync_engine

    control = stack.control()
    calendars, _seeded = fleet.attach_fleet(control, CALENDARS, "cpu", events_per_calendar=2)
    for calendar in calendars:
        sync_engine.sync_calendar(calendar.calendar_id, force=True, full=True)
    report.value("calendars", len(calendars))
    report.value("changes", changes)
    for phase, seed in (("plain", 1), ("announced", 2)):
        if phase == "announced":
            register_endpoints("http://127.0.0.1:9", 10)  # nothing is sent from here
        cpu = measure(control, calendars, changes, seed)
        for kind, values in cpu.items():
            report.value(f"{phase}.{kind}_cpu_ms_mean", sum(values) / len(values), "ms")
            for p in (50, 90):
                report.value(f"{phase}.{kind}_cpu_ms_p{p}", percentile(values, p), "ms")
        report.ratio(
            f"{phase}.sync_over_fetch_alone",
            percentile(cpu["sync"], 50),
            percentile(cpu["fetch"], 50),
        )
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
