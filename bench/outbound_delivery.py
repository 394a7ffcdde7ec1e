"""Outbound webhooks under load: a busy change committed until each receiver's 2xx, and the
sync lag of benchmark 2 with deliveries on and off.

What runs: calsync's real processes on a private Redis and a fresh PostgreSQL database (web,
the Procfile's sync worker and its outbound thread-pool worker, beat) and the emulator as a
child process. 1,000 calendars (one host, account and calendar each) attached, synced and
watched. Receivers: 10 endpoints (admin, all hosts) on a threaded HTTP server in a process
of its own at the lowest CPU priority, answering 204 after 5 ms (bench/webhook_receiver.py:
it stands in for servers on other machines).

Phases (same fleet, same load as benchmark 2: 50 changes/s, inserts 40%, moves 40%, deletes
20%; 60 s of load in each mode):
- **off**: no endpoint registered (no outbox row is written: nobody would receive it;
  nothing is fanned out or sent);
- **on**: the 10 endpoints registered (then removed again for the next off phase).
The modes alternate, off, on, off, on (`--rounds 2`, each phase 30 s): these machines
drift (the same work costs 86-92% of the two cores in one quarter of an hour and 95-133% in
the next, RESULTS §7), and alternating puts a drift on both sides of the ratio instead of
on whichever mode ran second.
Measured: the sync lag of each change (Google's `updated` -> busy row committed, as in
benchmark 2), pooled per mode, and in the on phases for every delivery the time from the
change's commit (the event's `occurredAt`: its outbox row's commit time, the earliest when
changes were coalesced) to the receiver answering 2xx. Bars: delivery p99 <= 1 s; sync lag
p99 with deliveries on within 10% of off. After each on phase every event must have
reached every endpoint.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import Report, bench_stack, change_points, lag_slices, parser, percentile
from bench.webhook_receiver import Receivers

RECEIVER_DELAY_SECONDS = 0.005


@dataclass(frozen=True)
class Size:
    calendars: int
    rate: float
    seconds: float
    endpoints: int
    seeded_per_calendar: int


FULL = Size(1000, 50.0, 60.0, 10, 2)
SMOKE = Size(6, 10.0, 2.0, 3, 2)


def outbox_drained() -> bool:
    from sqlalchemy import func, select

    from models import OutboxEvent, WebhookDelivery
    from models.db import session_scope

    with session_scope() as session:
        unfanned = session.scalar(select(func.count()).where(OutboxEvent.fanned_out_at.is_(None)))
        pending = session.scalar(select(func.count()).where(WebhookDelivery.status == "pending"))
    return not unfanned and not pending


def fanned_out_at(event_ids: set[int]) -> dict[int, float]:
    """Each event's fan-out moment (epoch s): where its delivery lag splits in two."""
    from sqlalchemy import select

    from models import OutboxEvent
    from models.db import session_scope

    with session_scope() as session:
        rows = session.execute(
            select(OutboxEvent.id, OutboxEvent.fanned_out_at).where(
                OutboxEvent.id.in_(sorted(event_ids))
            )
        ).all()
    return {i: at.timestamp() for i, at in rows if at is not None}


def event_id_of(message_id: str) -> int:
    return int(message_id.removeprefix("evt_"))  # models.outbound_deliveries.event_message_id


def stage_lags(
    deliveries: list[tuple[str, str, float, str]], lags: list[float], fanned: dict[int, float]
) -> tuple[list[float], list[float]]:
    """Each delivery's lag (ms) split at its event's fan-out: commit -> fan-out (the
    coalescing window, then the fan-out's turn) and fan-out -> receiver's 2xx (claim, send,
    answer)."""
    waited, sent = [], []
    for (_path, message_id, answered, _occurred), lag in zip(deliveries, lags, strict=True):
        at = fanned.get(event_id_of(message_id))
        if at is not None:
            sent.append((answered - at) * 1000)
            waited.append(lag - sent[-1])
    return waited, sent


def register_endpoints(base: str, count: int) -> None:
    from models.db import session_scope
    from models.outbound_endpoints import create_endpoint

    with session_scope() as session:
        for n in range(count):
            create_endpoint(
                session,
                url=f"{base}/r/{n}",
                host_ids=None,
                description=f"bench receiver {n}",
                created_by_host=None,
            )


def remove_endpoints() -> None:
    """Every endpoint and its deliveries (as `DELETE /v1/webhook-endpoints/{id}` does)."""
    from sqlalchemy import select

    from models import WebhookEndpoint
    from models.db import session_scope
    from models.outbound_endpoints import delete_endpoint

    with session_scope() as session:
        for endpoint in session.scalars(select(WebhookEndpoint)).all():
            delete_endpoint(session, endpoint)


def syncs_since(started: datetime) -> list[tuple[datetime, datetime, int | None]]:
    """Every sync run started since `started`: (started, finished = its changes' applied_at,
    ms since its calendar was marked dirty)."""
    from sqlalchemy import select

    from models.db import session_scope
    from models.sync_runs import SyncRun

    with session_scope() as session:
        return [
            (run.started_at, run.finished_at, run.notification_lag_ms)
            for run in session.execute(
                select(SyncRun.started_at, SyncRun.finished_at, SyncRun.notification_lag_ms).where(
                    SyncRun.started_at >= started, SyncRun.finished_at.is_not(None)
                )
            )
        ]


def lag_stages(changes: list[Any], runs: list[tuple[datetime, datetime, int | None]]) -> str:
    """Where each change's sync lag went, p50/p99 of each stage: Google's change -> its
    calendar marked dirty (push notification, webhook, drainer), marked -> sync run started
    (broker, worker pool, quiet wait), started -> blocks written (fetch, decide). A change
    made while its calendar was already marked (its run carries an earlier change's mark)
    pushed nothing: it waits in the queue stage from the moment it was made."""
    by_applied = {finished: (run_started, lag) for run_started, finished, lag in runs}
    stages: tuple[list[float], list[float], list[float]] = ([], [], [])
    for change in changes:
        run_started, dirty_ms = by_applied.get(change.applied_at, (None, None))
        if run_started is None or dirty_ms is None or change.updated is None:
            continue
        marked = max(change.updated, change.applied_at - timedelta(milliseconds=dirty_ms))
        for stage, (a, b) in zip(
            stages,
            ((change.updated, marked), (marked, run_started), (run_started, change.applied_at)),
            strict=True,
        ):
            stage.append((b - a).total_seconds() * 1000)
    return " ".join(
        f"{name} {percentile(v, 50):.0f}/{percentile(v, 99):.0f}"
        for name, v in zip(("push", "queue", "run"), stages, strict=True)
        if v
    )


def load_phase(report: Report, prefix: str, load: Any, size: Size, seconds: float) -> list[Any]:
    """One phase of the load; the changes it sent (each with its sync lag once applied)."""
    from bench.change_load import wait_applied

    started = datetime.now(UTC)
    changes, achieved = load.run(size.rate, seconds)
    missing = wait_applied(changes, timeout=60)
    report.value(f"{prefix}.achieved_rate", achieved, "/s")
    report.value(f"{prefix}.missing", missing)
    report.value(f"{prefix}.sync_lag_p50_p99_by_10s", lag_slices(change_points(changes)), "ms")
    # A phase that nears both cores: more syncs per change, or each sync longer?
    runs = syncs_since(started)
    durations = [(end - start).total_seconds() * 1000 for start, end, _ in runs]
    report.value(f"{prefix}.syncs", len(durations))
    report.value(
        f"{prefix}.sync_run_p50_p99_ms",
        f"{percentile(durations, 50):.0f}/{percentile(durations, 99):.0f}",
    )
    report.value(f"{prefix}.lag_stages_p50_p99_ms", lag_stages(changes, runs))
    return changes


def report_mode(report: Report, prefix: str, changes: list[Any]) -> dict[int, float]:
    """A mode's sync lag over all its phases: p50 and p99."""
    lags = [c.lag_ms for c in changes if c.lag_ms is not None]
    report.value(f"{prefix}.changes", len(changes))
    report.value(f"{prefix}.missing", len(changes) - len(lags))
    stats = {p: percentile(lags, p) for p in (50, 99)}
    for p, value in stats.items():
        report.value(f"{prefix}.sync_lag_p{p}_ms", value, "ms")
    return stats


WARM_UP_SECONDS = 5.0


def warm_up(load: Any, size: Size) -> None:
    from bench import calendar_fleet as fleet
    from bench.change_load import wait_applied

    changes, _achieved = load.run(size.rate, min(WARM_UP_SECONDS, size.seconds))
    wait_applied(changes, timeout=60)
    fleet.wait_until(outbox_drained, 120, "outbox drained after the warm-up")
    fleet.wait_until(fleet.fleet_idle, 60, "idle after the warm-up")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=12)
    p.add_argument("--outbound-concurrency", type=int, default=16)
    p.add_argument("--calendars", type=int, default=None, help="override the fleet size")
    p.add_argument("--seconds", type=float, default=None, help="override each mode's load duration")
    p.add_argument("--rounds", type=int, default=2, help="off/on pairs the load is split into")
    args = p.parse_args(argv)
    size = SMOKE if args.smoke else FULL
    if args.calendars:
        size = replace(size, calendars=args.calendars)
    if args.seconds:
        size = replace(size, seconds=args.seconds)
    report = Report("outbound_delivery", smoke=args.smoke)
    report.header()
    receivers = Receivers(RECEIVER_DELAY_SECONDS)
    with bench_stack("outbound", args.keep_logs) as stack, receivers:
        return run(stack, receivers, size, args, report)


def run(stack: Any, receivers: Receivers, size: Size, args: Any, report: Report) -> int:
    from bench import calendar_fleet as fleet
    from bench.change_load import ChangeLoad

    control = stack.control()
    stack.start_web()
    stack.start_worker(args.concurrency)
    stack.start_outbound(args.outbound_concurrency)
    stack.start_beat()
    stack.wait_ready()
    calendars, seeded = fleet.attach_fleet(
        control, size.calendars, "out", events_per_calendar=size.seeded_per_calendar
    )
    ids = [c.calendar_id for c in calendars]
    fleet.wait_until(lambda: fleet.fleet_ready(ids, watched=True), 600, "fleet ready", 1)
    fleet.wait_settled(180, quiet_seconds=1 if args.smoke else 10)
    fleet.wait_until(outbox_drained, 120, "outbox drained")
    report.value("calendars", len(calendars))
    report.value("endpoints", size.endpoints)
    report.value("receiver_delay_ms", RECEIVER_DELAY_SECONDS * 1000, "ms")
    load = ChangeLoad(control, [c.google_calendar_id for c in calendars], seeded)

    phase_seconds = size.seconds / args.rounds
    off_changes: list[Any] = []
    on_changes: list[Any] = []
    deliveries: list[Any] = []
    drained = True
    for n in range(1, args.rounds + 1):
        off_changes += load_phase(report, f"off{n}", load, size, phase_seconds)
        fleet.wait_until(fleet.fleet_idle, 60, "idle")
        register_endpoints(receivers.base, size.endpoints)
        # Warm up as the off phase was (its fleet had synced and settled): a few seconds of
        # the load, so the outbound worker's connections (database, receivers) and every
        # pool process's first outbox write are made before the measured phase, not in it.
        warm_up(load, size)
        warmed = len(receivers.records())  # the warm-up's deliveries: not measured
        on_changes += load_phase(report, f"on{n}", load, size, phase_seconds)
        deadline = time.monotonic() + 180
        while not outbox_drained() and time.monotonic() < deadline:
            time.sleep(0.5)
        drained = drained and outbox_drained()  # False: some never reached a 2xx
        deliveries += receivers.records()[warmed:]
        remove_endpoints()
        fleet.wait_until(fleet.fleet_idle, 60, "idle")
    off = report_mode(report, "off", off_changes)
    on = report_mode(report, "on", on_changes)
    report.value("on.outbox_drained", drained)

    lags = [
        (answered - datetime.fromisoformat(occurred.replace("Z", "+00:00")).timestamp()) * 1000
        for _path, _id, answered, occurred in deliveries
    ]
    events = {event_id for _path, event_id, _answered, _occurred in deliveries}
    per_event: dict[str, set[str]] = {}
    for path, event_id, _answered, _occurred in deliveries:
        per_event.setdefault(event_id, set()).add(path)
    report.value("on.events", len(events))
    report.value("on.deliveries", len(deliveries))
    report.value(
        "on.events_missing_an_endpoint",
        sum(1 for paths in per_event.values() if len(paths) < size.endpoints),
    )
    for p in (50, 99):
        report.value(f"on.delivery_lag_p{p}_ms", percentile(lags, p), "ms")
    report.value("on.delivery_lag_max_ms", max(lags) if lags else float("nan"), "ms")
    fanned = fanned_out_at({event_id_of(message_id) for message_id in events})
    waited, sent = stage_lags(deliveries, lags, fanned)
    for name, values in (("commit_to_fan_out", waited), ("fan_out_to_2xx", sent)):
        report.value(
            f"on.{name}_p50_p99_ms", f"{percentile(values, 50):.0f}/{percentile(values, 99):.0f}"
        )
    answered_at = [answered for _path, _id, answered, _occurred in deliveries]
    points = list(zip(answered_at, lags, strict=True))
    report.value("on.delivery_lag_p50_p99_by_10s", lag_slices(points), "ms")
    report.ratio("sync_lag_p99_on_over_off", on[99], off[99])
    report.bar("delivery p99 ms (commit -> 2xx)", percentile(lags, 99), 1000, at_least=False)
    report.bar(
        "sync lag p99 on / off", on[99] / off[99] if off[99] else float("inf"), 1.10, at_least=False
    )
    report.bar("outbox drained after the load", int(not drained), 0, at_least=False)
    report.bar(
        "events not at every endpoint",
        report.values["on.events_missing_an_endpoint"],
        0,
        at_least=False,
    )
    return report.finish(args.json)


if __name__ == "__main__":
    sys.exit(main())
