"""Fault soak (issue 7): real processes under SIGKILLs, Google errors, lost / duplicated /
reordered notifications, forced 410s, forged notifications, and broker and database restarts.
After quiescence every calendar must equal the emulator's freeBusy answer exactly.

Short version (the normal suite, CI): `python -m pytest tests/soak`. The issue's numbers:
`CALSYNC_SOAK=long CI=true python -m pytest -m soak tests/soak -s` (add
`CALSYNC_SOAK_REPORT=path.json` to keep the report). Counts and times are printed (`-s`) and
written as JSON; no assertion is on an absolute time.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from models import Channel, SyncRun, SyncState
from models.db import session_scope
from tests.soak.stack import (
    LiveCalendar,
    SoakPlan,
    SoakReport,
    SoakStack,
    percentile,
    quiesce_and_converge,
)
from tests.soak.traffic import EditStream, ForgedTraffic, Killer, RealChannel

# The long version runs for minutes; its waits have their own timeouts.
pytestmark = [pytest.mark.soak, pytest.mark.e2e, pytest.mark.timeout(1800)]

GOOGLE_ERROR_RATES = {"500": 0.075, "503": 0.075, "429": 0.075, "403": 0.075}  # 30% in all
FAULTS_OFF: dict[str, Any] = {
    "error_rates": {},
    "drop_rate": 0.0,
    "duplicate_rate": 0.0,
    "reorder": False,
    "sync_token_410_rate": 0.0,
    "latency_ms": 0,
}
# Triggers that only a notification (or its recovery) starts; the canary must see none.
PUSH_TRIGGERS = ("push", "rerun", "sweeper")
# A 503 answered just after a server came back still counts as "during the outage".
OUTAGE_GRACE_SECONDS = 5.0


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def real_channels(control: Any, calendars: list[LiveCalendar]) -> list[RealChannel]:
    """Our live channels, with the token Google holds (the database keeps only its hash)."""
    ids = [cal.calendar_id for cal in calendars]
    with session_scope() as session:
        rows = session.scalars(
            select(Channel).where(Channel.calendar_id.in_(ids), Channel.stopped_at.is_(None))
        ).all()
        ours = {c.id: c.resource_id or "" for c in rows}
    tokens = {c["id"]: c.get("token") or "" for c in control.channels()}
    return [RealChannel(cid, tokens.get(cid, ""), resource) for cid, resource in ours.items()]


def canary_snapshot(canary: LiveCalendar) -> dict[str, Any]:
    """What an accepted notification would change on the canary."""
    with session_scope() as session:
        channels = session.scalars(select(Channel).where(Channel.calendar_id == canary.calendar_id))
        state = session.get(SyncState, canary.calendar_id)
        assert state is not None
        push_runs = session.scalars(
            select(SyncRun.id).where(
                SyncRun.calendar_id == canary.calendar_id, SyncRun.trigger.in_(PUSH_TRIGGERS)
            )
        ).all()
        return {
            "channels": sorted(
                (c.id, c.last_message_number, str(c.last_notification_at)) for c in channels
            ),
            "last_notification_at": str(state.last_notification_at),
            "push_triggered_runs": len(push_runs),
        }


def request_counts(stack: SoakStack, since: int) -> dict[str, Any]:
    # Errors are injected into API calls only, not into the OAuth token endpoint.
    api = [r for r in stack.control.requests(since=since) if r["methodId"] != "oauth2.token"]
    statuses = Counter(r["status"] for r in api)
    injected = sum(statuses.get(int(code), 0) for code in GOOGLE_ERROR_RATES)
    return {
        "google_api_requests": len(api),
        "google_injected_error_share": round(injected / len(api), 3) if api else None,
        "google_injected_errors": {
            code: statuses.get(int(code), 0) for code in sorted(GOOGLE_ERROR_RATES)
        },
        "google_410s": statuses.get(410, 0),
        "google_other_statuses": {
            str(s): n for s, n in sorted(statuses.items()) if s not in (200, 204, 410)
        },
    }


def delivery_counts(deliveries: list[dict]) -> dict[str, Any]:
    states = Counter(d["state"] for d in deliveries)
    first_attempts = Counter(
        (d["channelId"], d["messageNumber"])
        for d in deliveries
        if d["attempt"] == 1 and d["state"] != "dropped"
    )
    return {
        "notifications_issued": len({(d["channelId"], d["messageNumber"]) for d in deliveries}),
        "notifications_dropped": states.get("dropped", 0),
        "notifications_duplicated": sum(n - 1 for n in first_attempts.values() if n > 1),
        "delivery_states": dict(sorted(states.items())),
        "webhook_statuses": dict(
            sorted(Counter(str(d["status"]) for d in deliveries if d["status"]).items())
        ),
    }


def run_counts(since: datetime) -> dict[str, Any]:
    with session_scope() as session:
        runs = session.execute(
            select(
                SyncRun.kind, SyncRun.outcome, SyncRun.trigger, SyncRun.notification_lag_ms
            ).where(SyncRun.started_at >= since)
        ).all()
    lags = [
        r.notification_lag_ms / 1000
        for r in runs
        if r.outcome == "ok" and r.trigger in ("push", "rerun") and r.notification_lag_ms
    ]
    return {
        "sync_runs": dict(sorted(Counter(f"{r.kind}/{r.outcome}" for r in runs).items())),
        "push_lag_p50_s": percentile(lags, 50),
        "push_lag_p99_s": percentile(lags, 99),
        "push_lag_samples": len(lags),
    }


def test_kills_google_errors_lost_notifications_and_forgeries_converge(
    soak_stack: SoakStack, soak_plan: SoakPlan, soak_report: SoakReport
) -> None:
    stack, plan, control = soak_stack, soak_plan, soak_stack.control
    assert stack.canary is not None
    everything = [*stack.calendars, stack.canary]
    settle_seconds = quiesce_and_converge(stack, everything, timeout=120)
    canary_before = canary_snapshot(stack.canary)
    (canary_channel,) = real_channels(stack.control, [stack.canary])
    requests_mark, deliveries_mark = len(control.requests()), len(control.deliveries())
    started_wall = datetime.now(UTC)

    control.set_faults(
        seed=plan.seed,
        error_rates=GOOGLE_ERROR_RATES,
        drop_rate=0.05,
        duplicate_rate=0.10,
        reorder=True,
        sync_token_410_rate=0.05,
        latency_ms=20,  # syncs last long enough for kills to land inside them
    )
    started = time.monotonic()
    edits = EditStream(
        control, stack.calendars, plan.seed, plan.change_rate, plan.invalidate_every_seconds
    ).start()
    forged = ForgedTraffic(
        stack.web_url + "/webhooks/google",
        real_channels(stack.control, stack.calendars),
        canary_channel,
        total=plan.forged,
        seconds=plan.kills * plan.kill_gap_seconds,
        seed=plan.seed,
    ).start()
    killer = Killer(stack, plan, seed=plan.seed)
    pauses = random.Random(plan.seed + 1)
    try:
        for number in range(plan.kills):
            time.sleep(pauses.uniform(0.5, 1.5) * plan.kill_gap_seconds)
            killer.kill(number)
        forged.join(timeout=plan.kills * plan.kill_gap_seconds + 120)
    finally:
        forged.stop()
        edit_counts = edits.stop()
    soak_seconds = time.monotonic() - started

    control.set_faults(**FAULTS_OFF)
    converge_seconds = quiesce_and_converge(stack, everything, timeout=240)

    deliveries = control.deliveries(since=deliveries_mark)
    canary_after = canary_snapshot(stack.canary)
    values: dict[str, Any] = {
        "backend": stack.backend_kind,
        "calendars": len(stack.calendars),
        "setup_s": round(stack.setup_seconds, 1),
        "settle_before_soak_s": round(settle_seconds, 1),
        "soak_seconds": round(soak_seconds, 1),
        "time_to_converge_s": round(converge_seconds, 1),
        "kills": dict(killer.counts),
        "unexpected_worker_deaths": stack.unexpected_worker_deaths,
        "edits": dict(edit_counts),
        **request_counts(stack, requests_mark),
        **delivery_counts(deliveries),
        "forged_sent": forged.sent,
        "forged_by_status": forged.by_status(),
        "forged_by_kind": forged.by_kind(),
        "canary_before": canary_before,
        "canary_after": canary_after,
        **run_counts(started_wall),
    }
    soak_report.record("kills_faults_forgeries", values)
    soak_report.print_section("kills_faults_forgeries")

    assert killer.counts["total"] == plan.kills
    assert killer.counts["whole_worker"] == plan.kills // plan.main_kill_every
    assert stack.unexpected_worker_deaths == 0, "a worker died without being killed"
    assert sum(values["google_injected_errors"].values()) > 0, "no Google error was injected"
    assert values["google_410s"] > 0
    assert values["notifications_dropped"] > 0
    assert values["notifications_duplicated"] > 0
    # The webhook never failed a genuine notification (nothing was down).
    assert not [d for d in deliveries if isinstance(d["status"], int) and d["status"] >= 500]
    assert forged.sent == plan.forged
    rejected = {s for s in forged.by_status() if s.isdigit() and 400 <= int(s) < 500}
    assert set(forged.by_status()) == rejected, f"forged answers: {forged.by_status()}"
    assert canary_after == canary_before, "a forged notification was accepted"


def _in_any(moment: datetime, windows: list[tuple[datetime, datetime]]) -> bool:
    return any(
        start.timestamp() - 0.5 <= moment.timestamp() <= end.timestamp() + OUTAGE_GRACE_SECONDS
        for start, end in windows
    )


def test_redis_emptied_and_postgres_restarted_mid_load_converge(
    soak_stack: SoakStack, soak_plan: SoakPlan, soak_report: SoakReport
) -> None:
    if soak_stack.backend_kind != "services":
        pytest.skip(
            "needs PostgreSQL + Redis (CI=true or CALSYNC_TEST_BACKEND=services): "
            "it restarts private instances of both"
        )
    stack, plan, control = soak_stack, soak_plan, soak_stack.control
    assert stack.redis is not None and stack.postgres is not None and stack.canary is not None
    everything = [*stack.calendars, stack.canary]
    quiesce_and_converge(stack, everything, timeout=120)
    # Google's retry of 5xx must outlast the outage: 0.5 s doubling, 7 attempts ≈ 30 s.
    control.set_faults(**FAULTS_OFF, push_retry_base_seconds=0.5, push_max_attempts=7)
    deliveries_mark = len(control.deliveries())
    load = plan.restart_load_seconds
    edits = EditStream(control, stack.calendars, plan.seed + 2, plan.change_rate).start()
    forged = ForgedTraffic(
        stack.web_url + "/webhooks/google",
        real_channels(stack.control, stack.calendars),
        real_channels(stack.control, [stack.canary])[0],
        total=max(50, plan.forged // 10),
        seconds=3 * load,
        seed=plan.seed + 2,
    ).start()
    outages: list[tuple[datetime, datetime]] = []
    try:
        time.sleep(load)
        redis_keys_before = stack.redis.key_count()
        down = datetime.now(UTC)
        stack.redis.restart_emptied()
        outages.append((down, datetime.now(UTC)))
        redis_keys_after = stack.redis.key_count()
        time.sleep(load)

        down = datetime.now(UTC)
        stack.postgres.stop("fast")
        # Stay down until the webhook has refused a genuine notification (bounded).
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if any(d["status"] == 503 for d in control.deliveries(since=deliveries_mark)):
                break
        stack.postgres.start()
        postgres_up = time.monotonic()
        outages.append((down, datetime.now(UTC)))
        time.sleep(load)
    finally:
        edit_counts = edits.stop()
        forged.join(timeout=60)
        forged.stop()
    load_ended = time.monotonic()
    revived = stack.revive_dead_workers()
    converge_seconds = quiesce_and_converge(stack, everything, timeout=240)
    converged = time.monotonic()

    deliveries = control.deliveries(since=deliveries_mark)
    refused = [d for d in deliveries if d["status"] == 503]
    server_errors = [d for d in deliveries if isinstance(d["status"], int) and d["status"] >= 500]
    delivered = {
        (d["channelId"], d["messageNumber"]) for d in deliveries if d["state"] == "delivered"
    }
    values: dict[str, Any] = {
        "backend": stack.backend_kind,
        "redis_keys_before_restart": redis_keys_before,
        "redis_keys_right_after_restart": redis_keys_after,
        "postgres_down_s": round((outages[1][1] - outages[1][0]).total_seconds(), 1),
        "edits": dict(edit_counts),
        **delivery_counts(deliveries),
        "webhook_503s": len(refused),
        "forged_sent": forged.sent,
        "forged_by_status": forged.by_status(),
        "workers_revived": revived,
        "time_to_converge_after_load_s": round(converge_seconds, 1),
        "time_to_converge_after_postgres_up_s": round(converged - postgres_up, 1),
        "load_seconds_after_postgres_up": round(load_ended - postgres_up, 1),
    }
    soak_report.record("redis_and_postgres_restarts", values)
    soak_report.print_section("redis_and_postgres_restarts")

    assert refused, "the webhook never answered 503 while PostgreSQL was down"
    misplaced = [d for d in server_errors if not _in_any(_parse_time(d["time"]), outages)]
    assert not misplaced, f"5xx outside the outages: {misplaced[:5]}"
    assert {d["status"] for d in server_errors} == {503}
    # Google's retries got every refused notification through.
    lost = {(d["channelId"], d["messageNumber"]) for d in refused} - delivered
    assert not lost, f"refused notifications never delivered: {sorted(lost)[:5]}"
    assert values["delivery_states"].get("failed", 0) == 0
    forged_statuses = forged.by_status()
    assert all((s.isdigit() and 400 <= int(s) < 500) or s == "503" for s in forged_statuses)
    forged_refused = [at for at, status in forged.answered_at if status == 503]
    assert all(_in_any(datetime.fromtimestamp(at, UTC), outages) for at in forged_refused), (
        "a forged notification got 503 outside the outages"
    )
    assert stack.unexpected_worker_deaths == 0, "a worker died during the restarts"
