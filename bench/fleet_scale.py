"""Benchmark 6 (issue 18): what the periodic work costs as the fleet grows.

For each fleet size (default 10,000 and 100,000 calendars) a fresh PostgreSQL database is
loaded with COPY: hosts with 1-5 calendars each (one Google account per host), every
calendar synced (sync token, last sync and last full sync spread over their periods), a
live watch channel (expirations spread over Google's 7 days), ~50 busy blocks and one
audit. Then every periodic task's database work runs in this process, exactly as beat's
tasks and the metrics scrape run it (the same functions), with each statement captured and
replayed under `EXPLAIN (ANALYZE, BUFFERS)` inside a rolled-back transaction:

- sweep (`forgotten_dirty`), safety net (`schedule_candidates`), renewals (the channel
  reads of `renew_expiring` and `ensure_watched`; no Google call is made), audits due
  (`audit_candidates`), the drainer's batch write (`record_calendar_batch`, 100 calendars),
  a lease renewal (`extend_lease`), the alert round (`run_cycle`, no webhook set) and the
  metrics scrape's database gauges (`DatabaseCollector.collect`).

Reported per statement: execution time, whether it reads a large table without an index
(a Seq Scan over a table of more than 1,000 rows), and rows; per task: wall time in this
process (query + Python). Bars: every periodic statement uses an index and runs in <= 20 ms
at the largest fleet; the growth of each task's time from the smallest to the largest fleet
(ratio; linear = the fleet ratio).

The quota projections (`--quota`) are arithmetic over the settings, printed as such.

    python -m bench.fleet_scale                    # 10,000 and 100,000 calendars
    python -m bench.fleet_scale --sizes 10000      # one size
    python -m bench.fleet_scale --smoke            # 300 calendars (CI)
"""

from __future__ import annotations

import dataclasses
import json
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import Report, bench_env, fresh_database, parser, private_redis

BLOCKS_PER_CALENDAR = 50
CHANNEL_TTL = timedelta(days=7)
LARGE_TABLE_ROWS = 1_000
STATEMENT_BAR_MS = 20.0
SMOKE_SIZES = (300,)
DEFAULT_SIZES = (10_000, 100_000)
DRAIN_BATCH = 100


# --- loading the fleet with COPY -----------------------------------------------------------


def _ts(moment: datetime) -> str:
    return moment.isoformat()


class _CopyWriter:
    """Lines for one COPY, sent in pieces (5,000,000 busy rows must not sit in memory)."""

    FLUSH_CHARS = 4 << 20

    def __init__(self, copy: Any) -> None:
        self.copy = copy
        self.parts: list[str] = []
        self.size = 0

    def write(self, line: str) -> None:
        self.parts.append(line)
        self.size += len(line)
        if self.size >= self.FLUSH_CHARS:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.copy.write("".join(self.parts))
        self.parts, self.size = [], 0


@contextmanager
def _copy(cursor: Any, table: str, columns: str) -> Iterator[_CopyWriter]:
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        writer = _CopyWriter(copy)
        yield writer
        writer.flush()


def load_fleet(database_url: str, calendars: int, settings: Any, seed: int = 18) -> dict:
    """The fleet, written with COPY in one transaction; returns counts."""
    import psycopg

    from models.credentials_box import encrypt_credentials

    rng = random.Random(seed)
    now = datetime.now(UTC)
    # One valid ciphertext for every account (the periodic work never decrypts it).
    sealed = encrypt_credentials(
        {
            "type": "authorized_user",
            "client_id": "bench",
            "client_secret": "bench",
            "refresh_token": "1//bench",
        },
        settings,
    )
    sizes: list[int] = []
    while sum(sizes) < calendars:
        sizes.append(min(rng.randint(1, 5), calendars - sum(sizes)))
    safety = settings.safety_net_seconds
    full = settings.full_resync_seconds
    audit = settings.audit_seconds
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn, conn.cursor() as cur:
        with _copy(cur, "hosts", "id, name, time_zone, busy_policy, created_at") as out:
            for host in range(1, len(sizes) + 1):
                out.write(f"{host}\thost {host}\tUTC\t{{}}\t{_ts(now)}\n")
        columns = "id, host_id, email, credentials_encrypted, state, created_at, updated_at"
        with _copy(cur, "google_accounts", columns) as out:
            blob = "\\\\x" + sealed.hex()
            for host in range(1, len(sizes) + 1):
                out.write(
                    f"{host}\t{host}\th{host}@example.com\t{blob}\tok\t{_ts(now)}\t{_ts(now)}\n"
                )
        calendar_rows: list[tuple[int, int]] = []  # (calendar id, host id)
        for host, size in enumerate(sizes, start=1):
            calendar_rows.extend((len(calendar_rows) + 1, host) for _ in range(size))
        columns = (
            "id, host_id, account_id, google_calendar_id, time_zone, watch_failures, created_at"
        )
        with _copy(cur, "calendars", columns) as out:
            for cal, host in calendar_rows:
                created = _ts(now - timedelta(days=30))
                out.write(f"{cal}\t{host}\t{host}\tc{cal}@example.com\tUTC\t0\t{created}\n")
        columns = (
            "calendar_id, sync_token, last_success_at, last_attempt_at, full_sync_at, "
            "consecutive_failures"
        )
        with _copy(cur, "sync_states", columns) as out:
            for cal, _host in calendar_rows:
                synced = _ts(now - timedelta(seconds=rng.uniform(0, safety * 0.75)))
                fully = _ts(now - timedelta(seconds=rng.uniform(0, full * 0.75)))
                out.write(f"{cal}\tbench-token-{cal}\t{synced}\t{synced}\t{fully}\t0\n")
        columns = (
            "id, calendar_id, token_hash, resource_id, expiration, created_at, last_notification_at"
        )
        with _copy(cur, "channels", columns) as out:
            for cal, _host in calendar_rows:
                expires = now + timedelta(seconds=rng.uniform(0, CHANNEL_TTL.total_seconds()))
                heard = _ts(now - timedelta(seconds=rng.uniform(0, 86400)))
                out.write(
                    f"bench-{cal:08d}\t{cal}\t{'0' * 64}\tres-{cal}\t{_ts(expires)}\t"
                    f"{_ts(expires - CHANNEL_TTL)}\t{heard}\n"
                )
        with _copy(cur, "busy_blocks", 'calendar_id, event_key, start, "end", applied_at') as out:
            day = now.replace(hour=0, minute=0, second=0, microsecond=0)
            for cal, _host in calendar_rows:
                for n in range(BLOCKS_PER_CALENDAR):
                    start = day + timedelta(days=n * 90 // BLOCKS_PER_CALENDAR, hours=8 + n % 9)
                    end = _ts(start + timedelta(hours=1))
                    out.write(f"{cal}\tev{n}\t{_ts(start)}\t{end}\t{_ts(now)}\n")
        columns = (
            "calendar_id, at, window_start, window_end, matched, outcome, differences, "
            "differing_seconds, policy_touched"
        )
        with _copy(cur, "audits", columns) as out:
            for cal, _host in calendar_rows:
                at = now - timedelta(seconds=rng.uniform(0, audit * 0.75))
                window_end = _ts(at + timedelta(days=60))
                out.write(f"{cal}\t{_ts(at)}\t{_ts(at)}\t{window_end}\tt\tmatched\t[]\t0\t0\n")
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")
    return {
        "hosts": len(sizes),
        "calendars": len(calendar_rows),
        "busy_blocks": len(calendar_rows) * BLOCKS_PER_CALENDAR,
    }


# --- capturing and explaining the periodic statements ---------------------------------------


@dataclass
class Captured:
    task: str
    statement: str
    parameters: Any


@dataclass
class TaskRun:
    task: str
    seconds: float
    statements: list[Captured] = field(default_factory=list)


@contextmanager
def capture(engine: Any, into: list[Captured], task: str) -> Iterator[None]:
    from sqlalchemy import event

    def record(_conn, _cursor, statement, parameters, _context, _executemany):
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "INSERT", "WITH", "DELETE")):
            into.append(Captured(task, statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", record)


def periodic_tasks(settings: Any) -> dict[str, Callable[[], Any]]:
    """Each periodic task's database work, as beat's tasks (and the scrape) run it."""
    from models.audits import audit_candidates
    from models.db import session_scope
    from models.sync_flags import extend_lease, forgotten_dirty, schedule_candidates
    from rules import sync_schedule
    from webhook.metrics_view import DatabaseCollector
    from worker import channels
    from worker.alert_notifier import run_cycle

    def now() -> datetime:
        return datetime.now(UTC)

    def sweep() -> Any:
        with session_scope() as session:
            return forgotten_dirty(session, now(), settings.sweep_after_seconds)

    def safety_net() -> Any:
        at = now()
        with session_scope() as session:
            return schedule_candidates(session, at, *sync_schedule.earliest_candidate(at, settings))

    def renewals() -> Any:
        # renew_expiring's and ensure_watched's reads; the Google calls are left out.
        original = channels._open_or_back_off
        channels._open_or_back_off = lambda *_args: None
        try:
            channels.renew_expiring(settings)
            with session_scope() as session:
                return channels.unwatched_calendars(session, now())
        finally:
            channels._open_or_back_off = original

    def audits_due() -> Any:
        with session_scope() as session:
            return audit_candidates(session)

    def drainer_batch() -> Any:
        from intake.records import CalendarBatchRow, record_calendar_batch
        from models.db import autocommit_engine

        at = now()
        rows = [CalendarBatchRow(cal, at, at) for cal in range(1, DRAIN_BATCH + 1)]
        with autocommit_engine(settings.database_url).connect() as connection:
            return record_calendar_batch(connection, rows)

    def lease() -> Any:
        with session_scope() as session:
            return extend_lease(session, 1, "bench-owner", now(), settings.lease_seconds)

    def alerts() -> Any:
        # With an alert webhook set (else the round does nothing); messages are discarded.
        configured = dataclasses.replace(settings, alert_webhook_url="http://127.0.0.1:9/")
        return run_cycle(configured, sender=lambda *_args, **_kwargs: None)

    def metrics() -> Any:
        return list(DatabaseCollector(settings).collect())

    return {
        "sweep": sweep,
        "safety_net": safety_net,
        "renewals": renewals,
        "audits_due": audits_due,
        "drainer_batch": drainer_batch,
        "lease": lease,
        "alerts": alerts,
        "metrics_scrape": metrics,
    }


def _plan_nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


@dataclass
class Explained:
    task: str
    statement: str
    execution_ms: float
    seq_scans: list[str]  # large tables read without an index
    rows: int


def explain(database_url: str, captured: Captured, table_rows: dict[str, int]) -> Explained:
    import psycopg

    with psycopg.connect(database_url.replace("+psycopg", "")) as conn, conn.cursor() as cur:
        cur.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + captured.statement,
            captured.parameters or None,
        )
        (document,) = cur.fetchone()
        conn.rollback()  # writes (drainer, lease) are replayed and undone
    top = (document if isinstance(document, list) else json.loads(document))[0]
    seq = sorted(
        {
            node["Relation Name"]
            for node in _plan_nodes(top["Plan"])
            if node["Node Type"] == "Seq Scan"
            and table_rows.get(node.get("Relation Name", ""), 0) > LARGE_TABLE_ROWS
        }
    )
    return Explained(
        captured.task,
        " ".join(captured.statement.split())[:160],
        float(top["Execution Time"]),
        seq,
        int(top["Plan"].get("Actual Rows", 0)),
    )


def table_sizes(database_url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(database_url.replace("+psycopg", "")) as conn, conn.cursor() as cur:
        cur.execute("SELECT relname, n_live_tup FROM pg_stat_user_tables")
        return {name: int(rows) for name, rows in cur.fetchall()}


def measure_size(calendars: int, report: Report, smoke: bool) -> dict[str, Any]:
    """One fleet size: load, run every periodic task (timed, captured), explain."""
    with private_redis() as broker_url, fresh_database("calsync_bench_fleet") as database_url:
        from bench.harness import activate
        from core.settings import get_settings
        from models.db import get_engine

        data_dir = Path(tempfile.mkdtemp(prefix="calsync-fleet-"))
        env = bench_env(database_url, broker_url, data_dir)
        activate(env)
        settings = get_settings()
        started = time.perf_counter()
        counts = load_fleet(database_url, calendars, settings)
        load_seconds = time.perf_counter() - started
        prefix = f"n{calendars}"
        report.value(f"{prefix}.calendars", counts["calendars"])
        report.value(f"{prefix}.hosts", counts["hosts"])
        report.value(f"{prefix}.busy_blocks", counts["busy_blocks"])
        report.value(f"{prefix}.load_seconds", load_seconds, "s")
        sizes = table_sizes(database_url)
        engine = get_engine(database_url)
        runs: dict[str, TaskRun] = {}
        for name, task in periodic_tasks(settings).items():
            task()  # warm: caches, first connection
            statements: list[Captured] = []
            with capture(engine, statements, name):
                begun = time.perf_counter()
                task()
                seconds = time.perf_counter() - begun
            runs[name] = TaskRun(name, seconds, statements)
            report.value(f"{prefix}.task.{name}_ms", seconds * 1000, "ms")
        explained = [
            explain(database_url, captured, sizes)
            for run in runs.values()
            for captured in run.statements
            if not captured.statement.lstrip().upper().startswith(("SAVEPOINT", "RELEASE"))
        ]
        for n, item in enumerate(explained):
            key = f"{prefix}.sql.{item.task}.{n}"
            report.value(f"{key}.execution_ms", item.execution_ms, "ms")
            report.value(f"{key}.seq_scans", ",".join(item.seq_scans) or "-")
            report.value(f"{key}.rows", item.rows)
            report.value(f"{key}.statement", item.statement)
        return {
            "tasks": {name: run.seconds for name, run in runs.items()},
            "explained": explained,
        }


# --- quota projection (arithmetic, not measured) -------------------------------------------


def quota_projection(calendars: int, settings: Any) -> dict[str, float]:
    """Google requests per day the periodic work alone makes for `calendars` (no changes):
    one events.list per safety-net sync, one watch + one stop + one catch-up list per
    renewal, one freeBusy per account (≤ 50 calendars) per audit round plus its incremental
    list per calendar."""
    day = 86400.0
    per_host = 3.0  # calendars per host (accounts), the loaded fleets' mean
    return {
        "safety_net": calendars * day / settings.safety_net_seconds,
        "renewals": calendars * 3 * day / CHANNEL_TTL.total_seconds(),
        "audits": (calendars / per_host + calendars) * day / settings.audit_seconds,
    }


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="fleet sizes to measure")
    args = p.parse_args()
    sizes = tuple(args.sizes or (SMOKE_SIZES if args.smoke else DEFAULT_SIZES))
    report = Report("fleet_scale", smoke=args.smoke)
    report.header()
    results = {size: measure_size(size, report, args.smoke) for size in sizes}
    from core.settings import Settings

    defaults = Settings()
    for size in (10_000, 100_000, 1_000_000):
        for kind, count in quota_projection(size, defaults).items():
            report.value(f"projected.n{size}.google_requests_per_day.{kind}", round(count))
    largest = max(sizes)
    for item in results[largest]["explained"]:
        what = f"{item.task}: {item.statement[:60]}"
        report.bar(f"{what} ms at {largest}", item.execution_ms, STATEMENT_BAR_MS, at_least=False)
        report.bar(
            f"{what} large tables read without index at {largest}",
            len(item.seq_scans),
            0,
            at_least=False,
        )
    smallest = min(sizes)
    if largest > smallest:
        for name, seconds in results[largest]["tasks"].items():
            report.ratio(
                f"task.{name}.growth_{smallest}_to_{largest}",
                seconds,
                results[smallest]["tasks"][name],
            )
        report.value("fleet_ratio", largest / smallest)
    return report.finish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
