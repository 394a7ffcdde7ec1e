"""Audit cost: the Google requests the audit adds per calendar per day at the defaults, and
the CPU time of an audit round at 1,000 calendars.

What runs: a fresh PostgreSQL database, a private Redis, the emulator as a child process,
and a Celery worker pool that gives every calendar its first full sync. Two fleets of 1,000
calendars each, attached through the product's registry: one calendar per Google account
(the worst case: nothing to batch) and 50 calendars per account (the most one freeBusy
request takes). Each calendar holds 10 busy events in the 14-day window.

Measured, per fleet: audit rounds of every calendar through the worker's own code
(`worker.audit.audit_calendars`, in this process, the worker pool idle): CPU time of this
process (`time.process_time`; the database's and the emulator's CPU are not in it) and wall
time, and every request the emulator logged during the round, by method. The first round
is cold (each account's client is built and its access token refreshed), the second warm.
Then a change is made at Google in 5% of the calendars without a sync (a change in flight)
and the round is repeated: the extra requests per changed calendar are the race check's
`events.list` and the sync that applies the change.

Requests per calendar per day: beat's schedule is simulated with the product's own rule
(`rules.audit.due_by_account`, checks every `audit_check_seconds`, default
CALSYNC_AUDIT_SECONDS = 86,400) over 14 days for the fleet's account structure: freeBusy
requests per calendar per day (≤ 50 calendars per request). Added to it: the race check,
which runs only when the table differs from the answer. With push working, a change is in
flight between Google and its applied sync for about a second (bench.end_to_end_lag: p99
under 1 s); at ASSUMED_CHANGES_PER_CALENDAR_PER_DAY changes a day that is the share of
audits that meet one, each costing the measured extra requests plus one more freeBusy for
the retry. Bar (issue 17): ≤ 1 request per calendar per day at the defaults.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import Report, bench_stack, parser

EVENTS_PER_CALENDAR = 10
CHANGED_SHARE = 0.05
ASSUMED_CHANGES_PER_CALENDAR_PER_DAY = 100  # a very busy calendar
IN_FLIGHT_SECONDS = 1.0  # change at Google -> applied by its push-driven sync
SIMULATED_DAYS = 14
FLEETS = (("one_per_account", 1), ("fifty_per_account", 50))
SYNC_CONCURRENCY = 8
SHORT_NAMES = {"calendar.freebusy.query": "freebusy", "calendar.events.list": "events.list"}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--calendars", type=int, default=None, help="calendars per fleet")
    args = p.parse_args(argv)
    calendars = args.calendars or (20 if args.smoke else 1000)
    report = Report("audit_cost", smoke=args.smoke)
    report.header()
    with bench_stack("audit", args.keep_logs) as stack:
        return run(stack, calendars, args, report)


def run(stack: Any, count: int, args: Any, report: Report) -> int:
    from bench import calendar_fleet as fleet

    control = stack.control()
    stack.start_worker(SYNC_CONCURRENCY)
    stack.wait_ready()
    report.value("calendars_per_fleet", count)
    report.value("events_per_calendar", EVENTS_PER_CALENDAR)
    fleets = {name: attach(control, count, per_account, name) for name, per_account in FLEETS}
    ids = [calendar_id for members in fleets.values() for calendar_id, _gid, _acc in members]
    fleet.wait_until(lambda: all_synced(ids), 600, "first full syncs", 0.5)
    fleet.wait_until(fleet.fleet_idle, 120, "idle")

    per_day = {}
    for name, per_account in FLEETS:
        members = fleets[name]
        # The first round builds each account's client and refreshes its access token (a
        # worker that has not called Google for the account within the hour: the token the
        # first syncs stored has expired); the second finds them warm.
        expire_stored_tokens({account for _cal, _gid, account in members})
        cold = audit_round(control, members, report, f"{name}.cold")
        report.value(f"{name}.cold.round_cpu_s", cold["cpu"], "s")
        report.value(f"{name}.cold.round_wall_s", cold["wall"], "s")
        report.value(f"{name}.cold.token_refreshes", cold["methods"]["oauth2.token"])
        quiet = audit_round(control, members, report, f"{name}.quiet")
        report.value(f"{name}.quiet.round_cpu_s", quiet["cpu"], "s")
        report.value(f"{name}.quiet.round_wall_s", quiet["wall"], "s")
        report.value(f"{name}.quiet.matched", quiet["outcomes"].get("matched", 0))
        report.value(f"{name}.quiet.freebusy_requests", quiet["methods"]["freebusy"])
        report.value(f"{name}.quiet.events_list_requests", quiet["methods"]["events.list"])
        report.value(
            f"{name}.quiet.requests_per_calendar_per_audit", quiet["requests"] / len(members)
        )
        changed = make_changes(control, members)
        busy = audit_round(control, members, report, f"{name}.changed")
        extra = busy["requests"] - quiet["requests"]
        report.value(f"{name}.changed.calendars_changed", len(changed))
        report.value(f"{name}.changed.deferred", busy["outcomes"].get("deferred", 0))
        report.value(f"{name}.changed.mismatch", busy["outcomes"].get("mismatch", 0))
        per_change = extra / max(1, len(changed))
        report.value(f"{name}.changed.extra_requests_per_changed_calendar", per_change)

        freebusy_per_day = simulated_freebusy_per_calendar_per_day(members)
        report.value(f"{name}.freebusy_requests_per_calendar_per_day", freebusy_per_day)
        in_flight_share = min(1.0, ASSUMED_CHANGES_PER_CALENDAR_PER_DAY * IN_FLIGHT_SECONDS / 86400)
        race_per_day = in_flight_share * (per_change + 1 / per_account)
        report.value(f"{name}.race_check_requests_per_calendar_per_day", race_per_day)
        per_day[name] = freebusy_per_day + race_per_day
        report.value(f"{name}.requests_per_calendar_per_day", per_day[name])
        report.value(f"{name}.cpu_ms_per_calendar_audit", 1000 * quiet["cpu"] / len(members), "ms")
    report.bar(
        "audit requests per calendar per day, one calendar per account (defaults)",
        per_day["one_per_account"],
        1.0,
        at_least=False,
    )
    report.bar(
        "quiet rounds matched every calendar",
        sum(report.values[f"{name}.quiet.matched"] for name, _ in FLEETS),
        2 * count,
        at_least=True,
    )
    report.bar(
        "mismatches from changes in flight",
        sum(report.values[f"{name}.changed.mismatch"] for name, _ in FLEETS),
        0,
        at_least=False,
    )
    return report.finish(args.json)


def attach(control: Any, count: int, per_account: int, prefix: str) -> list[tuple[int, str, int]]:
    """`count` calendars in accounts of `per_account`, each with its events, attached and
    given its first full sync through the queue (as the API does)."""
    from bench.calendar_fleet import event_body, parallel, random_slot, slot_base
    from models.db import session_scope
    from models.registry import attach_calendar, create_host
    from worker.enqueue import enqueue_sync

    base = slot_base()
    accounts = [
        f"{prefix}{a:04d}@example.com" for a in range((count + per_account - 1) // per_account)
    ]
    plan = [
        (
            accounts[n // per_account],
            f"{prefix}-cal{n:05d}@example.com" if n % per_account else accounts[n // per_account],
        )
        for n in range(count)
    ]
    credentials = dict(zip(accounts, parallel(control.create_account, accounts), strict=True))

    def create(item: tuple[str, str]) -> None:
        owner, gid = item
        control.create_calendar(gid, time_zone="UTC", owner=owner)
        import random

        rng = random.Random(gid)
        for _ in range(EVENTS_PER_CALENDAR):
            start, _end = random_slot(rng, base)
            # Within the audit's 14 days, as busy calendars have them.
            start = base + (start - base) % timedelta(days=13)
            control.insert_event(gid, event_body(start, start + timedelta(minutes=45)))

    parallel(create, plan)
    members = []
    with session_scope() as session:
        host, _token = create_host(session, f"bench {prefix}", "UTC")
        for owner, gid in plan:
            calendar, _ = attach_calendar(session, host.id, gid, credentials[owner])
            members.append((calendar.id, gid, calendar.account_id))
    for calendar_id, _gid, _account in members:
        enqueue_sync(calendar_id, reason="attach", full=True)
    return members


def expire_stored_tokens(account_ids: set[int]) -> None:
    """Drop the stored access tokens of these accounts, as an hour without a call leaves
    them (the refresh tokens stay)."""
    from sqlalchemy import select

    from models import GoogleAccount
    from models.credentials_box import decrypt_credentials, encrypt_credentials
    from models.db import session_scope

    with session_scope() as session:
        accounts = session.scalars(
            select(GoogleAccount).where(GoogleAccount.id.in_(sorted(account_ids)))
        )
        for account in accounts:
            info = decrypt_credentials(account.credentials_encrypted)
            info.pop("token", None)
            info.pop("expiry", None)
            account.credentials_encrypted = encrypt_credentials(info)


def all_synced(calendar_ids: list[int]) -> bool:
    from sqlalchemy import func, select

    from models import SyncState
    from models.db import session_scope

    with session_scope() as session:
        synced = session.scalar(
            select(func.count())
            .select_from(SyncState)
            .where(SyncState.calendar_id.in_(calendar_ids), SyncState.last_success_at.is_not(None))
        )
    return synced == len(calendar_ids)


def audit_round(
    control: Any, members: list[tuple[int, str, int]], report: Report, label: str
) -> dict[str, Any]:
    from worker import audit

    since = len(control.requests())  # the log's index, not a sequence number
    cpu, wall = time.process_time(), time.perf_counter()
    reports = audit.audit_calendars([calendar_id for calendar_id, _gid, _acc in members])
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    methods: Counter[str] = Counter(
        SHORT_NAMES.get(entry["methodId"], entry["methodId"]) for entry in control.requests(since)
    )
    return {
        "cpu": cpu,
        "wall": wall,
        "methods": methods,
        # Calendar API requests (what the quota counts); token refreshes are reported apart.
        "requests": methods["freebusy"] + methods["events.list"],
        "outcomes": Counter(str(r.outcome) for r in reports),
    }


def make_changes(control: Any, members: list[tuple[int, str, int]]) -> list[str]:
    """A busy event added at Google in CHANGED_SHARE of the calendars, not yet synced."""
    from bench.calendar_fleet import event_body, parallel, slot_base

    step = max(1, round(1 / CHANGED_SHARE))
    changed = [gid for _cid, gid, _acc in members[::step]]
    start = slot_base() + timedelta(days=2)
    parallel(
        lambda gid: control.insert_event(gid, event_body(start, start + timedelta(hours=1))),
        changed,
    )
    return changed


def simulated_freebusy_per_calendar_per_day(members: list[tuple[int, str, int]]) -> float:
    """Beat's schedule with the product's rule over SIMULATED_DAYS: freeBusy requests (≤ 50
    calendars each) per calendar per day, after a first period that spreads the start."""
    from core.settings import get_settings
    from rules.audit import audit_check_seconds, due_by_account

    period = float(get_settings().audit_seconds)
    check = audit_check_seconds(period)
    last: dict[int, datetime | None] = {calendar_id: None for calendar_id, _g, _a in members}
    account_of = {calendar_id: account for calendar_id, _g, account in members}
    start = datetime(2026, 1, 5, tzinfo=UTC)
    steps = int(SIMULATED_DAYS * 86400 / check)
    counted_from = int(2 * period / check)  # steady state: after the first audits
    requests = 0
    for step in range(steps):
        now = start + timedelta(seconds=step * check)
        candidates = [(c, account_of[c], at) for c, at in last.items()]
        for calendar_ids in due_by_account(candidates, now, period, check).values():
            for calendar_id in calendar_ids:
                last[calendar_id] = now
            if step >= counted_from:
                requests += (len(calendar_ids) + 49) // 50
    days = (steps - counted_from) * check / 86400
    return requests / len(members) / days


if __name__ == "__main__":
    sys.exit(main())
