"""Benchmark 8's busy phase (`python -m bench.fleet_scale --busy-load`): benchmark 2's
changes and benchmark 5's reads against the whole fleet, with its periodic work running.

On the COPY-loaded fleet (bench.fleet_scale.fleet_stack, real time: no compression) web
(gunicorn, the push receiver and the API), one worker and beat run, and the emulator serves
every calendar. 1,000 of the fleet's calendars, spread over it, are loaded without a
channel and watched for real (`start_watch` through the queue, so the emulator pushes to
the web process), each with 2 events made at the emulator and brought in by a catch-up
sync. Then, while the rest of the fleet gets its safety-net syncs, renewals and audits:

- **changes** (bench.end_to_end_lag's load and measure): 50 changes/s for 60 s at the
  emulator over those calendars (inserts, moves, deletes); lag = the change's `updated`
  at the emulator → `applied_at` of its committed row; every change looked up afterwards;
- **reads** (bench.busy_read's measures): `GET /v1/hosts/{host}/busy` for 14-day windows
  over random hosts of the fleet (1-5 calendars each, host API tokens): server time in
  this process through Flask's test client, and over HTTP through the web process's
  gunicorn, one request at a time after the changes are applied and the fleet has settled
  again; then the booking tools'
  reads of the same hosts (their feed tokens): the CalDAV calendar-query REPORT for 14 days
  and the whole ICS feed, first checked against `/busy`, then timed the same two ways.

Bars (issue 18: the same as at 1,000 calendars): lag p50 ≤ 150 ms and p99 ≤ 1 s (emulator
latency 0); host busy read server p99 ≤ 5 ms, HTTP p99 ≤ 15 ms; CalDAV REPORT server p99
≤ 15 ms, ICS feed server p99 ≤ 25 ms; every CalDAV and ICS answer the same as `/busy`.
"""

from __future__ import annotations

import os
import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from bench.busy_read import (
    BAR_CALDAV_REPORT_SERVER_P99_MS,
    BAR_HTTP_P99_MS,
    BAR_ICS_SERVER_P99_MS,
    BAR_SERVER_P99_MS,
    busy_path,
    expect_ok,
    random_window,
    report_latency,
    timed,
    timed_with_cpu,
)
from bench.harness import Report, percentile

BAR_LAG_P50_MS = 150.0
BAR_LAG_P99_MS = 1000.0
# Calendars a 100,000-calendar fleet has mid-sync at any moment on its own (the safety net
# at the operator's 6 h: ~5 syncs a second of ~0.1 s): the settled fleet still has these.
BACKGROUND_SYNCS = 5


@dataclass(frozen=True)
class BusySize:
    watched: int  # calendars of the fleet watched for real and changed
    rate: float  # changes per second
    seconds: float
    seeded_per_calendar: int
    read_hosts: int  # hosts given an API token and read
    server_requests: int
    http_requests: int
    warmup_requests: int
    ready_timeout: float  # for the watched calendars' channels and catch-up syncs


FULL = BusySize(1000, 50.0, 60.0, 2, 2000, 5000, 5000, 300, 900.0)
SMOKE = BusySize(8, 10.0, 2.0, 2, 20, 100, 100, 10, 120.0)


def spread(items: list[Any], count: int) -> list[Any]:
    """`count` items evenly spread over `items` (all of them if fewer)."""
    if count >= len(items):
        return list(items)
    return [items[i * len(items) // count] for i in range(count)]


def operator_settings(calendars: int) -> dict[str, int]:
    """What bench/RESULTS.md's quota table tells an operator to change at this fleet size
    (the README's "Running on several machines" too): at 100,000 the hourly safety net
    alone would be 28 syncs a second, more than benchmark 2's whole load."""
    if calendars >= 1_000_000:
        return {
            "safety_net_seconds": 43_200,
            "audit_seconds": 604_800,
            "channel_silent_seconds": 604_800,
            "poll_seconds": 1_800,
        }
    if calendars >= 100_000:
        return {"safety_net_seconds": 21_600, "channel_silent_seconds": 604_800}
    return {}


def busy_load(
    calendars: int,
    size: BusySize,
    report: Report,
    keep_logs: bool,
    concurrency: int,
    recovery: bool = False,
) -> dict[str, float]:
    """The busy phase on a fleet of `calendars` (then, with `recovery`, the recovery after
    downtime: `recover`); returns the numbers the bars judge."""
    from bench import calendar_fleet
    from bench.change_load import ChangeLoad
    from bench.fleet_scale import fleet_layout, fleet_stack
    from models.registry import new_feed_token

    layout = fleet_layout(calendars)
    watched = [cal for cal, _host in spread(layout, size.watched)]
    hosts = spread(sorted({host for _cal, host in layout}), size.read_hosts)
    tokens = {host: f"cs_{secrets.token_urlsafe(32)}" for host in hosts}
    feeds = {host: new_feed_token() for host in hosts}
    prefix = f"busy.n{calendars}"
    chosen = operator_settings(calendars)
    for name, value in chosen.items():
        report.value(f"{prefix}.setting.{name}", value)
    with fleet_stack(
        f"fleetbusy{calendars}",
        calendars,
        1.0,
        keep_logs,
        unwatched=watched,
        api_tokens=tokens,
        feed_tokens=feeds,
        **chosen,
    ) as fleet:
        stack, control = fleet.stack, fleet.control
        stack.start_web()
        stack.start_worker(concurrency)
        stack.start_beat()
        stack.wait_ready()
        report.value(f"{prefix}.worker_concurrency", concurrency)
        report.value(f"{prefix}.watched_calendars", len(watched))
        seeded = watch_for_real(control, watched, size)
        wait_caught_up(report, prefix)
        load = ChangeLoad(control, sorted(seeded), seeded)
        lags = change_load(control, load, size, report, prefix)
        # The reads, as the load, start once the load's own tail (its last syncs and
        # reruns) has settled, beside the fleet's periodic work only.
        calendar_fleet.wait_settled(120, quiet_seconds=5, background=BACKGROUND_SYNCS)
        report.value(f"{prefix}.load_average_1min_before_reads", os.getloadavg()[0])
        reads = measure_reads(stack.web_url, tokens, size, report, f"{prefix}.read")
        reads |= measure_booking_reads(stack.web_url, tokens, feeds, size, report, f"{prefix}.read")
        report.value(f"{prefix}.load_average_1min_after_reads", os.getloadavg()[0])
        if recovery:
            recover(control, load, size, report, f"{prefix}.recovery")
        report.value(f"{prefix}.processes_died", ",".join(p.name for p in stack.dead()) or "-")
    return {**lags, **reads}


def watch_for_real(control: Any, watched: list[int], size: BusySize) -> dict[str, list[dict]]:
    """Events made at the emulator for each calendar, then its channel opened and a
    catch-up sync run through the queue, as the API's attach does; waits until every
    calendar is watched and its events are in the busy table. Returns the events per
    Google calendar id (the change load moves and deletes them)."""
    from sqlalchemy import func, select

    from bench import calendar_fleet
    from models import BusyBlock
    from models.db import session_scope
    from worker.enqueue import enqueue_sync, enqueue_watch

    base = calendar_fleet.slot_base()

    def seed(calendar_id: int) -> tuple[str, list[dict]]:
        google_id = f"c{calendar_id}@example.com"
        made = [
            control.insert_event(
                google_id,
                calendar_fleet.event_body(
                    *calendar_fleet.random_slot(random.Random(f"{google_id}{n}"), base)
                ),
            )
            for n in range(size.seeded_per_calendar)
        ]
        return google_id, made

    seeded = dict(calendar_fleet.parallel(seed, watched))
    for calendar_id in watched:
        enqueue_watch(calendar_id)
        enqueue_sync(calendar_id, reason="bench_catch_up", force=True)
    keys = [event["id"] for events in seeded.values() for event in events]

    def applied() -> bool:
        with session_scope() as session:
            found = session.scalar(
                select(func.count()).select_from(BusyBlock).where(BusyBlock.event_key.in_(keys))
            )
        return found == len(keys)

    calendar_fleet.wait_until(
        lambda: calendar_fleet.fleet_ready(watched, watched=True) and applied(),
        size.ready_timeout,
        "watched calendars with their events applied",
        1.0,
    )
    # As benchmarks 2 and 7: the load starts after the start-up work (the new channels'
    # first messages, the syncs they cause), beside only the fleet's own periodic syncs.
    calendar_fleet.wait_settled(300, quiet_seconds=10, background=BACKGROUND_SYNCS)
    return seeded


def wait_caught_up(report: Report, prefix: str) -> None:
    """Wait until the safety net has worked off what came due while the attach phase held
    the pool (its syncs wait in the workers as delayed messages, where wait_settled does
    not see them: they made the load's first half-minute slow, RESULTS §8)."""
    from bench import calendar_fleet

    started = time.monotonic()
    for name, value in safety_net_backlog().items():
        report.value(f"{prefix}.safety_net_at_settle.{name}", value)
    calendar_fleet.wait_until(safety_net_caught_up, 600, "the safety net to catch up", 5.0)
    report.value(f"{prefix}.waited_for_safety_net_s", round(time.monotonic() - started, 1), "s")


def safety_net_backlog() -> dict[str, int]:
    """Where the fleet's scheduled syncs stand: calendars due now (beat's own read, which
    stores the next moment of those not due, as its round does), one round's worth of
    them at this fleet's size in steady state, messages waiting in the broker's queue, and
    messages taken by workers and not yet done (delayed ones among them)."""
    from sqlalchemy import func, select

    from core.settings import get_settings
    from models.calendars import SyncState
    from models.db import session_scope
    from rules import sync_schedule
    from worker import schedule_reads
    from worker.queue_depth import queue_depth

    settings = get_settings()
    with session_scope() as session:
        calendars = session.scalar(select(func.count()).select_from(SyncState)) or 0
    round_seconds = sync_schedule.safety_net_check_seconds(settings)
    taken = taken_by_workers()
    return {
        "due": len(schedule_reads.due_calendars(datetime.now(UTC), settings)),
        "round": int(calendars * round_seconds / settings.safety_net_seconds) + 1,
        "queued": queue_depth(settings) or 0,
        "taken": taken,
    }


def taken_by_workers() -> int:
    """Messages workers have taken and not yet acknowledged (delayed ones among them)."""
    import redis

    from core.settings import get_settings

    broker = redis.Redis.from_url(get_settings().broker_url)
    try:
        return int(broker.hlen("unacked"))
    finally:
        broker.close()


def safety_net_caught_up() -> bool:
    """No more calendars due than one round finds, and no more messages held than two
    rounds' syncs (one round's spread waiting in the workers, one being sent)."""
    backlog = safety_net_backlog()
    return (
        backlog["due"] <= backlog["round"]
        and backlog["queued"] + backlog["taken"] <= 2 * backlog["round"]
    )


def change_load(
    control: Any,
    load: Any,
    size: BusySize,
    report: Report,
    prefix: str,
    where_the_net_stands: bool = True,
) -> dict[str, float]:
    """bench.end_to_end_lag's push phase at emulator latency 0, on the watched calendars
    (`load`: a bench.change_load.ChangeLoad over them), beside the fleet's own periodic work
    (its Google requests are reported); first, unless told not to, where the safety net
    stands (a read of every due calendar: seconds with a whole fleet due)."""
    from bench.change_load import wait_applied
    from bench.end_to_end_lag import phase_report
    from core.settings import get_settings
    from worker.queue_depth import queue_depth

    control.set_faults(latency_ms=0)
    for name, value in (safety_net_backlog() if where_the_net_stands else {}).items():
        report.value(f"{prefix}.push.safety_net_before.{name}", value)
    settings = get_settings()
    # The plain list only (pushed syncs; scheduled ones wait in a lower-priority list).
    backlog_before = queue_depth(settings, urgent_only=True)
    mark = len(control.requests())
    changes, achieved = load.run(size.rate, size.seconds)
    missing = wait_applied(changes, timeout=60)
    made = Counter(entry["methodId"] for entry in control.requests(since=mark))
    stats = phase_report(report, f"{prefix}.push", changes, achieved, missing)
    report.value(f"{prefix}.push.queue_backlog_before", backlog_before)
    report.value(f"{prefix}.push.queue_backlog_after", queue_depth(settings, urgent_only=True))
    for method, count in sorted(made.items()):
        report.value(f"{prefix}.push.google_requests.{method}", count)
    return {"lag_p50_ms": stats[50], "lag_p99_ms": stats[99], "missing": float(missing)}


# How long the safety net may take to find and queue the overdue fleet (one round is at
# most 30 s; sending 100,000 messages takes a minute or more on these 2 cores).
RECOVERY_QUEUE_SECONDS = 300.0


def recover(control: Any, load: Any, size: BusySize, report: Report, prefix: str) -> None:
    """After downtime: every calendar of the fleet overdue its safety-net sync at once (as
    when a deployment comes back after being down longer than the net's period), then the
    same change load on the watched calendars while the workers work the backlog off. The
    pushed changes' lag, and the `calsync` queue's depth sampled every second: its peak, and
    how it went (before beat's rounds held off while the queue holds a backlog, each round
    queued every calendar still due again; before scheduled syncs went at a lower priority,
    a pushed change waited behind the whole backlog)."""
    from sqlalchemy import func, select, update

    from bench import calendar_fleet
    from core.settings import get_settings
    from models.calendars import SyncState
    from models.db import session_scope
    from worker.enqueue import send
    from worker.queue_depth import queue_depth
    from worker.task_names import TaskNames

    settings = get_settings()
    overdue = datetime.now(UTC) - timedelta(seconds=2 * settings.safety_net_seconds)
    with session_scope() as session:
        session.execute(update(SyncState).values(last_success_at=overdue, next_check_at=None))
        calendars = session.scalar(select(func.count()).select_from(SyncState)) or 0
    report.value(f"{prefix}.calendars_overdue", calendars)
    send(TaskNames.SAFETY_NET)  # a round now, as beat sends them (not up to 30 s later)
    depths: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            depths.append(queue_depth(settings) or 0)

    def still_overdue() -> int:
        with session_scope() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(SyncState)
                    .where(SyncState.last_success_at <= overdue)
                )
                or 0
            )

    def queued_or_synced() -> bool:
        # A small fleet's round sends delayed messages that the workers take at once (the
        # queue stays short), a large one's waits in the queue.
        half = calendars // 2
        return (queue_depth(settings) or 0) + taken_by_workers() >= half or still_overdue() <= half

    sampler = threading.Thread(target=sample, name="queue-depth", daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        calendar_fleet.wait_until(
            queued_or_synced, RECOVERY_QUEUE_SECONDS, "the overdue fleet queued or synced", 1.0
        )
        report.value(f"{prefix}.waited_for_round_s", round(time.monotonic() - started, 1), "s")
        at_start = len(depths)
        change_load(control, load, size, report, prefix, where_the_net_stands=False)
        at_end = len(depths)
    finally:
        stop.set()
        sampler.join()
    during = depths[at_start:at_end] or [0]
    report.value(f"{prefix}.queue_depth_at_load_start", during[0])
    report.value(f"{prefix}.queue_depth_max", max(depths or [0]))
    report.value(f"{prefix}.queue_depth_at_load_end", during[-1])
    report.value(f"{prefix}.queue_depth_by_10s", " ".join(str(d) for d in depths[::10]) or "-")
    report.value(f"{prefix}.still_overdue_after", still_overdue())


def measure_reads(
    web_url: str, tokens: dict[int, str], size: BusySize, report: Report, prefix: str
) -> dict[str, float]:
    """bench.busy_read's host busy read on the fleet's hosts: server time through Flask's
    test client in this process (and its CPU time), then HTTP through gunicorn."""
    from webhook import create_app

    client = create_app().test_client()
    hosts = sorted(tokens)
    rng = random.Random(3)
    now = datetime.now(UTC)
    stale = 0

    def server_call(host: int) -> Any:
        path = busy_path(host, random_window(rng, now))
        headers = {"Authorization": f"Bearer {tokens[host]}"}

        def call() -> None:
            nonlocal stale
            answer = client.get(path, headers=headers)
            expect_ok(answer.status_code, answer.data, path)
            stale += bool(answer.json and answer.json["stale"])

        return call

    timed([server_call(rng.choice(hosts)) for _ in range(size.warmup_requests)])
    stale = 0
    wall, cpu = timed_with_cpu(
        [server_call(rng.choice(hosts)) for _ in range(size.server_requests)]
    )
    report_latency(report, f"{prefix}.server", wall)
    report.value(f"{prefix}.server_cpu_p99_ms", percentile(cpu, 99), "ms")
    # Freshness is part of every answer; a stale calendar (the fleet's syncs behind) is
    # reported, not an error.
    report.value(f"{prefix}.server_answers_stale", stale)

    session = requests.Session()

    def http_call(host: int) -> Any:
        url = web_url + busy_path(host, random_window(rng, now))
        headers = {"Authorization": f"Bearer {tokens[host]}"}

        def call() -> None:
            answer = session.get(url, headers=headers, timeout=30)
            expect_ok(answer.status_code, answer.text, url)

        return call

    timed([http_call(rng.choice(hosts)) for _ in range(size.warmup_requests)])
    http = timed([http_call(rng.choice(hosts)) for _ in range(size.http_requests)])
    session.close()
    report_latency(report, f"{prefix}.http", http)
    return {"server_p99_ms": percentile(wall, 99), "http_p99_ms": percentile(http, 99)}


def measure_booking_reads(
    web_url: str,
    tokens: dict[int, str],
    feeds: dict[int, str],
    size: BusySize,
    report: Report,
    prefix: str,
) -> dict[str, float]:
    """benchmark 5's booking-tool reads on the fleet's hosts: the CalDAV calendar-query
    REPORT for 14 days (Cal.com's CalDAV app, as tsdav sends it) and the whole ICS feed,
    first checked to give `/busy`'s answer, then timed in this process through Flask's
    test client and over HTTP through gunicorn, one request at a time."""
    from bench.busy_read import BookingReads, Fleet, HttpBookingReads
    from webhook import create_app

    hosts = sorted(tokens)
    fleet = Fleet(hosts, [tokens[h] for h in hosts], [feeds[h] for h in hosts], {}, {})
    reads = BookingReads(fleet, create_app().test_client())
    rng = random.Random(5)
    now = datetime.now(UTC)

    def window() -> tuple[datetime, datetime]:
        return random_window(rng, now)

    checks = min(50, size.server_requests)
    mismatched = reads.mismatched(rng, checks, now)
    report.value(f"{prefix}.booking_tool_answers_compared", checks)
    report.value(f"{prefix}.booking_tool_answers_mismatched", mismatched)

    def pick() -> int:
        return rng.randrange(len(hosts))

    def caldav_calls(count: int) -> list[Any]:
        return [lambda h=pick(), span=window(): reads.report_answer(h, span) for _ in range(count)]

    def ics_calls(count: int) -> list[Any]:
        return [lambda h=pick(): reads.feed_answer(h) for _ in range(count)]

    timed(caldav_calls(size.warmup_requests))
    caldav = timed(caldav_calls(size.server_requests))
    report_latency(report, f"{prefix}.caldav_report_server", caldav)
    timed(ics_calls(size.warmup_requests))
    ics = timed(ics_calls(size.server_requests))
    report_latency(report, f"{prefix}.ics_server", ics)

    session = requests.Session()
    tools = HttpBookingReads(fleet, session, web_url)

    def http_caldav_calls(count: int) -> list[Any]:
        return [lambda h=pick(), span=window(): tools.report(h, span) for _ in range(count)]

    def http_ics_calls(count: int) -> list[Any]:
        return [lambda h=pick(): tools.feed(h) for _ in range(count)]

    timed(http_caldav_calls(size.warmup_requests))
    report_latency(
        report, f"{prefix}.caldav_report_http", timed(http_caldav_calls(size.http_requests))
    )
    timed(http_ics_calls(size.warmup_requests))
    report_latency(report, f"{prefix}.ics_http", timed(http_ics_calls(size.http_requests)))
    session.close()
    return {
        "booking_mismatched": float(mismatched),
        "caldav_server_p99_ms": percentile(caldav, 99),
        "ics_server_p99_ms": percentile(ics, 99),
    }


def report_bars(report: Report, calendars: int, result: dict[str, float]) -> None:
    at = f"at {calendars} calendars"
    report.bar(
        f"busy: push p50 lag ms (latency 0) {at}",
        result["lag_p50_ms"],
        BAR_LAG_P50_MS,
        at_least=False,
    )
    report.bar(
        f"busy: push p99 lag ms (latency 0) {at}",
        result["lag_p99_ms"],
        BAR_LAG_P99_MS,
        at_least=False,
    )
    report.bar(f"busy: changes never applied {at}", result["missing"], 0, at_least=False)
    report.bar(
        f"busy: host busy read server p99 ms {at}",
        result["server_p99_ms"],
        BAR_SERVER_P99_MS,
        at_least=False,
    )
    report.bar(
        f"busy: host busy read HTTP p99 ms {at}",
        result["http_p99_ms"],
        BAR_HTTP_P99_MS,
        at_least=False,
    )
    report.bar(
        f"busy: CalDAV/ICS answers differing from /busy {at}",
        result["booking_mismatched"],
        0,
        at_least=False,
    )
    report.bar(
        f"busy: CalDAV REPORT server p99 ms {at}",
        result["caldav_server_p99_ms"],
        BAR_CALDAV_REPORT_SERVER_P99_MS,
        at_least=False,
    )
    report.bar(
        f"busy: ICS feed server p99 ms {at}",
        result["ics_server_p99_ms"],
        BAR_ICS_SERVER_P99_MS,
        at_least=False,
    )
