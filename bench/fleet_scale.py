"""Benchmark 8 (issue 18): what the periodic work costs as the fleet grows.

For each fleet size (default 10,000 and 100,000 calendars) a fresh PostgreSQL database is
loaded with COPY: hosts with 1-5 calendars each (one Google account per host), every
calendar synced (sync token, last sync and last full sync spread over their periods), a
live watch channel (expirations spread over Google's 7 days), ~50 busy blocks and one
audit. Then every periodic task's database work runs in this process, exactly as beat's
tasks and the metrics scrape run it (the same functions), with each statement captured and
replayed under `EXPLAIN (ANALYZE, BUFFERS)` inside a rolled-back transaction:

- sweep (`forgotten_dirty`), safety net (`schedule_candidates`), renewals (the channel
  reads of `renew_expiring` and `ensure_watched`; no Google call is made), audits due
  (`audit_candidates`), the drainer's batch writes (`record_calendar_batch` and
  `record_channel_batch`, 100 calendars),
  a lease renewal (`extend_lease`), the alert round (`run_cycle`, no webhook set), the
  metrics scrape's database gauges (`DatabaseCollector.collect`), the hourly housekeeping
  (sync runs past retention, expired sign-in links, the fold of the fleet counts), and
  the outbound sweep (every second) and states round (every 10 s, with the prune of old
  events and deliveries) over a kept history (load_history).

Reported per statement: execution time, whether it reads a large table without an index
(a Seq Scan over a table of more than 1,000 rows), and rows; per task: wall time in this
process (query + Python). Bars: every periodic statement uses an index and runs in <= 20 ms
at the largest fleet; the growth of each task's time from the smallest to the largest fleet
(ratio; linear = the fleet ratio).

The quota projections (`--quota`) are arithmetic over the settings, printed as such.

    python -m bench.fleet_scale                    # 10,000 and 100,000 calendars
    python -m bench.fleet_scale --sizes 10000      # one size
    python -m bench.fleet_scale --smoke            # 300 calendars (CI), busy phase included
    python -m bench.fleet_scale --sizes 100000 --skip-explain --skip-idle --busy-load

`--busy-load` adds benchmark 2's changes and benchmark 5's reads on the largest fleet, with
its periodic work running (bench/fleet_busy.py).
"""

from __future__ import annotations

import dataclasses
import json
import random
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping
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


def fleet_layout(calendars: int, seed: int = 18) -> list[tuple[int, int]]:
    """(calendar id, host id) for `calendars` calendars, 1-5 per host."""
    rng = random.Random(seed)
    rows: list[tuple[int, int]] = []
    host = 0
    while len(rows) < calendars:
        host += 1
        for _ in range(min(rng.randint(1, 5), calendars - len(rows))):
            rows.append((len(rows) + 1, host))
    return rows


def emulator_scenario(layout: list[tuple[int, int]]) -> dict[str, Any]:
    """The same fleet at the emulator: an account per host, its calendars already synced."""
    hosts = sorted({host for _cal, host in layout})
    return {
        "accounts": [
            {"email": f"h{host}@example.com", "refresh_token": f"1//fleet-h{host}"}
            for host in hosts
        ],
        "calendars": [
            {"id": f"c{cal}@example.com", "owner": f"h{host}@example.com", "syncToken": True}
            for cal, host in layout
        ],
    }


def load_fleet(
    database_url: str,
    layout: list[tuple[int, int]],
    settings: Any,
    *,
    accounts: dict[str, dict] | None = None,
    sync_tokens: dict[str, str] | None = None,
    channel_ttl: timedelta = CHANNEL_TTL,
    seed: int = 18,
    unwatched: Collection[int] = (),
    api_tokens: Mapping[int, str] | None = None,
    feed_tokens: Mapping[int, str] | None = None,
    history: bool = False,
) -> dict:
    """The fleet, written with COPY in one transaction, as in a steady state under
    `settings`: each calendar's last sync, last full sync, audit and channel expiry spread
    over its own (jittered) period. `accounts` / `sync_tokens`: the emulator's credentials
    and tokens (else placeholders nothing calls Google with); `unwatched`: calendars loaded
    without a channel (the caller watches them for real); `api_tokens`: host id -> API token
    for hosts that will be asked over the API, `feed_tokens` likewise for their CalDAV
    password and ICS feed; `history`: also what a deployment keeps of
    its past, for the periodic prunes to read (load_history). Returns counts."""
    import psycopg

    from models.credentials_box import encrypt_credentials
    from models.registry import hash_api_token
    from rules import audit as audit_rules
    from rules.sync_schedule import jitter_factor

    rng = random.Random(seed)
    now = datetime.now(UTC)
    placeholder = encrypt_credentials(
        {
            "type": "authorized_user",
            "client_id": "bench",
            "client_secret": "bench",
            "refresh_token": "1//bench",
        },
        settings,
    )
    hosts = sorted({host for _cal, host in layout})
    renew_before = settings.renew_before_seconds
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn, conn.cursor() as cur:
        columns = "id, name, time_zone, busy_policy, api_token_hash, feed_token_hash, created_at"
        with _copy(cur, "hosts", columns) as out:
            for host in hosts:
                hashed = [
                    hash_api_token(token) if token else "\\N"
                    for token in ((api_tokens or {}).get(host), (feed_tokens or {}).get(host))
                ]
                out.write(
                    f"{host}\thost {host}\tUTC\t{{}}\t" + "\t".join(hashed) + f"\t{_ts(now)}\n"
                )
        columns = "id, host_id, email, credentials_encrypted, state, created_at, updated_at"
        with _copy(cur, "google_accounts", columns) as out:
            for host in hosts:
                email = f"h{host}@example.com"
                sealed = encrypt_credentials(accounts[email], settings) if accounts else placeholder
                blob = "\\\\x" + sealed.hex()
                out.write(f"{host}\t{host}\t{email}\t{blob}\tok\t{_ts(now)}\t{_ts(now)}\n")
        columns = (
            "id, host_id, account_id, google_calendar_id, time_zone, watch_failures, created_at"
        )
        with _copy(cur, "calendars", columns) as out:
            created = _ts(now - timedelta(days=30))
            for cal, host in layout:
                out.write(f"{cal}\t{host}\t{host}\tc{cal}@example.com\tUTC\t0\t{created}\n")
        columns = (
            "calendar_id, sync_token, last_success_at, last_attempt_at, full_sync_at, "
            "consecutive_failures"
        )
        with _copy(cur, "sync_states", columns) as out:
            for cal, _host in layout:
                period = settings.safety_net_seconds * jitter_factor(cal, "sync")
                synced = _ts(now - timedelta(seconds=rng.uniform(0, period)))
                full = settings.full_resync_seconds * jitter_factor(cal, "full")
                fully = _ts(now - timedelta(seconds=rng.uniform(0, full)))
                token = (sync_tokens or {}).get(f"c{cal}@example.com", f"bench-token-{cal}")
                out.write(f"{cal}\t{token}\t{synced}\t{synced}\t{fully}\t0\n")
        columns = (
            "id, calendar_id, token_hash, resource_id, expiration, created_at, last_notification_at"
        )
        with _copy(cur, "channels", columns) as out:
            ttl = channel_ttl.total_seconds()
            skipped = set(unwatched)
            for cal, _host in layout:
                if cal in skipped:
                    continue
                # Renewed at RENEW_BEFORE: a live channel has between that and its TTL left.
                left = rng.uniform(min(renew_before, ttl / 2), ttl)
                expires = now + timedelta(seconds=left)
                created = expires - channel_ttl
                # Heard from within the last half of CHANNEL_SILENT (not silent).
                heard = now - timedelta(seconds=rng.uniform(0, settings.channel_silent_seconds / 2))
                out.write(
                    f"bench-{cal:08d}\t{cal}\t{'0' * 64}\tres-{cal}\t{_ts(expires)}\t"
                    f"{_ts(created)}\t{_ts(max(heard, created))}\n"
                )
        with _copy(cur, "busy_blocks", 'calendar_id, event_key, start, "end", applied_at') as out:
            day = now.replace(hour=0, minute=0, second=0, microsecond=0)
            for cal, _host in layout:
                for n in range(BLOCKS_PER_CALENDAR):
                    start = day + timedelta(days=n * 90 // BLOCKS_PER_CALENDAR, hours=8 + n % 9)
                    end = _ts(start + timedelta(hours=1))
                    out.write(f"{cal}\tev{n}\t{_ts(start)}\t{end}\t{_ts(now)}\n")
        columns = (
            "calendar_id, at, window_start, window_end, matched, outcome, differences, "
            "differing_seconds, policy_touched"
        )
        with _copy(cur, "audits", columns) as out:
            for cal, _host in layout:
                every = settings.audit_seconds * (0.75 + 0.5 * audit_rules._spread(cal))
                at = now - timedelta(seconds=rng.uniform(0, every))
                window_end = _ts(at + timedelta(days=60))
                out.write(f"{cal}\t{_ts(at)}\t{_ts(at)}\t{window_end}\tt\tmatched\t[]\t0\t0\n")
        if history:
            load_history(cur, layout, settings, now, rng)
        conn.commit()
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE")
    return {
        "hosts": len(hosts),
        "calendars": len(layout),
        "busy_blocks": len(layout) * BLOCKS_PER_CALENDAR,
    }


RUNS_PER_CALENDAR = 3
EVENTS_PER_CALENDAR = 2
PENDING_DELIVERIES = 100


def load_history(
    cur: Any, layout: list[tuple[int, int]], settings: Any, now: datetime, rng: random.Random
) -> None:
    """What a deployment keeps of its past, a slice of it per calendar: sync runs over the
    retention and a day more (the hourly prune's), and one webhook endpoint (every host)
    with busy.changed events and their deliveries over the outbound retention and a day
    more (the 10-s prune's and the sweep's; the newest PENDING_DELIVERIES still pending)."""
    from models.outbound_deliveries import RETENTION

    kept = timedelta(days=settings.sync_run_retention_days + 1).total_seconds()
    columns = (
        "calendar_id, kind, trigger, started_at, finished_at, duration_ms, pages, "
        "events_seen, blocks_upserted, blocks_deleted, outcome"
    )
    with _copy(cur, "sync_runs", columns) as out:
        for cal, _host in layout:
            for _ in range(RUNS_PER_CALENDAR):
                started = now - timedelta(seconds=rng.uniform(0, kept))
                finished = _ts(started + timedelta(milliseconds=90))
                out.write(
                    f"{cal}\tincremental\tsafety_net\t{_ts(started)}\t{finished}\t90\t1\t0\t0"
                    "\t0\tdone\n"
                )
    endpoint = "we_bench_history"
    columns = "id, url, description, host_ids, secret_encrypted, state, created_at"
    with _copy(cur, "webhook_endpoints", columns) as out:
        out.write(
            f"{endpoint}\thttps://receiver.example/hook\t\t\\N\t\\\\x00\tactive\t{_ts(now)}\n"
        )
    span = (RETENTION + timedelta(days=1)).total_seconds()
    events = sorted(
        (now - timedelta(seconds=rng.uniform(60, span)), cal, host)
        for cal, host in layout
        for _ in range(EVENTS_PER_CALENDAR)
    )
    columns = "id, type, host_id, calendar_id, cause, payload, committed_at, fanned_out_at"
    with _copy(cur, "outbox_events", columns) as out:
        for n, (at, cal, host) in enumerate(events, start=1):
            fanned = _ts(at + timedelta(milliseconds=200))
            out.write(
                f'{n}\tbusy.changed\t{host}\t{cal}\tsync\t{{"changed": []}}\t{_ts(at)}\t{fanned}\n'
            )
    columns = (
        "endpoint_id, event_id, host_id, status, attempts, next_attempt_at, first_attempt_at, "
        "last_attempt_at, last_status_code, last_duration_ms, delivered_at, created_at"
    )
    pending_from = len(events) - PENDING_DELIVERIES
    with _copy(cur, "webhook_deliveries", columns) as out:
        for n, (at, _cal, host) in enumerate(events, start=1):
            sent = _ts(at + timedelta(milliseconds=400))
            if n > pending_from:
                tail = f"pending\t0\t{sent}\t\\N\t\\N\t\\N\t\\N\t\\N"
            else:
                tail = f"delivered\t1\t{sent}\t{sent}\t{sent}\t204\t5\t{sent}"
            out.write(f"{endpoint}\t{n}\t{host}\t{tail}\t{_ts(at)}\n")
    cur.execute("SELECT setval(pg_get_serial_sequence('outbox_events', 'id'), %s)", (len(events),))


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

    def record(_conn, _cursor, statement, parameters, _context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "UPDATE", "INSERT", "WITH", "DELETE")):
            # A batch (executemany) is explained with its first row's parameters.
            if executemany and isinstance(parameters, list | tuple) and parameters:
                parameters = parameters[0]
            into.append(Captured(task, statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", record)


def periodic_tasks(settings: Any) -> dict[str, Callable[[], Any]]:
    """Each periodic task's database work, as beat's tasks (and the scrape) run it."""
    from models import fleet_counts
    from models.db import session_scope
    from models.host_log import prune_sync_runs
    from models.outbound_deliveries import disable_long_failing, endpoints_with_due_work, prune
    from models.outbound_fanout import SWEEP_GRACE, fan_out
    from models.outbound_states import announce_state_changes
    from models.sign_in_links import prune_sign_in_links
    from models.sync_flags import extend_lease, forgotten_dirty
    from webhook.metrics_view import DatabaseCollector
    from worker import channels, schedule_reads
    from worker.alert_notifier import run_cycle

    def now() -> datetime:
        return datetime.now(UTC)

    def sweep() -> Any:
        with session_scope() as session:
            return forgotten_dirty(session, now(), settings.sweep_after_seconds)

    def safety_net() -> Any:
        # The task's read and its judgement by the rules (storing the next moments).
        return schedule_reads.due_calendars(now(), settings)

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
        return schedule_reads.due_audits(now(), settings)

    def drainer_batch() -> Any:
        # Both of the drainer's writes: the calendars' dirty marks, then (once a second)
        # their channels' last notification.
        from intake.records import (
            CalendarBatchRow,
            ChannelBatchRow,
            record_calendar_batch,
            record_channel_batch,
        )
        from models.db import autocommit_engine

        at = now()
        calendars = range(1, DRAIN_BATCH + 1)
        rows = [CalendarBatchRow(cal, at, at) for cal in calendars]
        heard = [ChannelBatchRow(f"bench-{cal:08d}", at, cal) for cal in calendars]
        with autocommit_engine(settings.database_url).connect() as connection:
            marked = record_calendar_batch(connection, rows)
            record_channel_batch(connection, heard)
            return marked

    def lease() -> Any:
        with session_scope() as session:
            return extend_lease(session, 1, "bench-owner", now(), settings.lease_seconds)

    def alerts() -> Any:
        # With an alert webhook set (else the round does nothing); messages are discarded.
        configured = dataclasses.replace(settings, alert_webhook_url="http://127.0.0.1:9/")
        return run_cycle(configured, sender=lambda *_args, **_kwargs: None)

    def metrics() -> Any:
        return list(DatabaseCollector(settings).collect())

    def prune_history() -> Any:
        # The hourly housekeeping (worker.tasks.prune_history): sync runs past their
        # retention, expired sign-in links, the fold of the fleet counts' change rows.
        keep = timedelta(days=settings.sync_run_retention_days)
        with session_scope() as session:
            return (
                prune_sync_runs(session, now() - keep),
                prune_sign_in_links(session, now()),
                fleet_counts.fold(session),
            )

    def outbound_sweep() -> Any:
        # worker.outbound_tasks.outbound_sweep's database work (every second), without
        # starting senders: hosts to fan out, endpoints with due work, endpoints to disable.
        window = timedelta(milliseconds=settings.outbound_coalesce_ms)
        fanned = fan_out(now(), window + SWEEP_GRACE)
        with session_scope() as session:
            due = endpoints_with_due_work(session, now() - SWEEP_GRACE)
            return fanned, due, disable_long_failing(session, now())

    def outbound_states() -> Any:
        # worker.outbound_tasks.outbound_states (every 10 s): calendar states announced,
        # then events and deliveries past their retention pruned.
        with session_scope() as session:
            announced = announce_state_changes(session, now())
        with session_scope() as session:
            return announced, prune(session, now())

    return {
        "sweep": sweep,
        "safety_net": safety_net,
        "renewals": renewals,
        "audits_due": audits_due,
        "drainer_batch": drainer_batch,
        "lease": lease,
        "alerts": alerts,
        "metrics_scrape": metrics,
        "prune_history": prune_history,
        "outbound_sweep": outbound_sweep,
        "outbound_states": outbound_states,
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


def analyze(database_url: str) -> None:
    import psycopg

    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def table_sizes(database_url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(database_url.replace("+psycopg", "")) as conn, conn.cursor() as cur:
        cur.execute("SELECT relname, n_live_tup FROM pg_stat_user_tables")
        return {name: int(rows) for name, rows in cur.fetchall()}


def measure_size(calendars: int, report: Report, smoke: bool) -> dict[str, Any]:
    """One fleet size: load, run every periodic task (timed, captured), explain."""
    with (
        private_redis() as broker_url,
        fresh_database("calsync_bench_fleet") as database_url,
        tempfile.TemporaryDirectory(prefix="calsync-fleet-") as scratch,
    ):
        from bench.harness import activate
        from core.settings import get_settings
        from models.db import get_engine

        env = bench_env(database_url, broker_url, Path(scratch))
        activate(env)
        settings = get_settings()
        started = time.perf_counter()
        counts = load_fleet(database_url, fleet_layout(calendars), settings, history=True)
        load_seconds = time.perf_counter() - started
        prefix = f"n{calendars}"
        report.value(f"{prefix}.calendars", counts["calendars"])
        report.value(f"{prefix}.hosts", counts["hosts"])
        report.value(f"{prefix}.busy_blocks", counts["busy_blocks"])
        report.value(f"{prefix}.load_seconds", load_seconds, "s")
        sizes = table_sizes(database_url)
        engine = get_engine(database_url)
        runs: dict[str, TaskRun] = {}
        tasks = periodic_tasks(settings)
        for task in tasks.values():
            # Warm: caches, first connection; the first round of each task also stores
            # every calendar's moments (models/stored_moments.py), as after migration 0009.
            task()
        # That first round rewrote every sync_states row: ANALYZE as autovacuum would
        # (10% of a table changed), else the planner still sees the moments as all NULL.
        analyze(database_url)
        for name, task in tasks.items():
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


# --- idle cost: beat + worker + web on the fleet, time compressed ----------------------------


def compressed_settings(compression: float) -> dict[str, int]:
    """Every period of the periodic work divided by `compression` (C): a run of T seconds
    covers C x T seconds of a deployment's life, with safety net, full resyncs, audits,
    channel renewals and the silence threshold at their usual spread."""
    from core.settings import Settings

    d = Settings()

    def scaled(seconds: int) -> int:
        return max(1, round(seconds / compression))

    return {
        "safety_net_seconds": scaled(d.safety_net_seconds),
        "poll_seconds": scaled(d.poll_seconds),
        "full_resync_seconds": scaled(d.full_resync_seconds),
        "audit_seconds": scaled(d.audit_seconds),
        "renew_before_seconds": scaled(d.renew_before_seconds),
        "channel_silent_seconds": scaled(d.channel_silent_seconds),
    }


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found.extend(_descendants(int(child)))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for each in _descendants(pid):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def tree_peak_rss_mb(pid: int) -> float:
    """The largest peak RSS among a process and its descendants (one process's bar)."""
    from bench.harness import peak_rss_mb

    peaks = []
    for each in _descendants(pid):
        try:
            peaks.append(peak_rss_mb(each))
        except OSError:
            continue
    return max(peaks, default=0.0)


SCRAPE_SECONDS = 30.0  # as a Prometheus would scrape /metrics during the idle run


def scrape_every(url: str, every: float, seconds: float) -> list[float]:
    """GET `url` every `every` seconds for `seconds`; how long each scrape took."""
    import requests

    took: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        begun = time.monotonic()
        try:
            requests.get(url, timeout=60).raise_for_status()
            took.append(time.monotonic() - begun)
        except requests.RequestException as exc:
            print(f"  scrape failed: {exc}", flush=True)
        time.sleep(max(0.0, min(every - (time.monotonic() - begun), end - time.monotonic())))
    return took


@dataclass
class FleetStack:
    """calsync's processes (not started yet) on a loaded fleet the emulator serves."""

    stack: Any  # bench.harness.BenchStack
    settings: Any
    control: Any  # the emulator's control client
    layout: list[tuple[int, int]]
    accounts: dict[str, dict]  # email -> the emulator's credentials


@contextmanager
def fleet_stack(
    name: str,
    calendars: int,
    compression: float,
    keep_logs: bool,
    *,
    unwatched: Collection[int] = (),
    api_tokens: Mapping[int, str] | None = None,
    feed_tokens: Mapping[int, str] | None = None,
    **settings: Any,
) -> Iterator[FleetStack]:
    """A bench stack (private Redis, fresh database, the emulator) with the fleet loaded on
    both sides: the emulator holds every account and calendar at its current sync token,
    the database the same fleet (load_fleet) with time compressed by `compression`."""
    from bench.harness import bench_stack

    # Explicit settings (an operator's, for this size) win over the compressed defaults.
    configured_periods = {**compressed_settings(compression), **settings}
    with bench_stack(name, keep_logs=keep_logs, **configured_periods) as stack:
        from core.settings import get_settings

        configured = get_settings()
        control = stack.control()
        channel_ttl = CHANNEL_TTL / compression
        control.set_faults(
            max_channel_ttl_seconds=channel_ttl.total_seconds(),
            access_token_ttl_seconds=3600 / compression,
        )
        layout = fleet_layout(calendars)
        loaded = control.load_scenario(emulator_scenario(layout))
        load_fleet(
            configured.database_url,
            layout,
            configured,
            accounts=loaded["accounts"],
            sync_tokens=loaded["syncTokens"],
            channel_ttl=channel_ttl,
            unwatched=unwatched,
            api_tokens=api_tokens,
            feed_tokens=feed_tokens,
        )
        # A deployment that has run before: every calendar's stored moments are known (the
        # first rounds after migration 0009 store them; until then every calendar is a
        # candidate of the safety net, renewals, audits and the health snapshot)…
        tasks = periodic_tasks(configured)
        for first_round in ("safety_net", "renewals", "audits_due"):
            tasks[first_round]()
        # …and its intake epoch is in Redis (on a fresh Redis the drainer would fetch every
        # watched calendar once, as after a Redis data loss).
        import redis

        from intake import redis_intake

        with redis.Redis.from_url(configured.broker_url) as client:
            client.set(redis_intake.EPOCH, "bench")
        yield FleetStack(stack, configured, control, layout, loaded["accounts"])


def idle_cost(
    calendars: int,
    compression: float,
    seconds: float,
    report: Report,
    keep_logs: bool,
    concurrency: int = 12,
) -> dict[str, float]:
    """beat + worker + web for `seconds` on a fleet the emulator serves, no changes made."""
    import redis

    prefix = f"idle.n{calendars}"
    # The alert round runs only with a webhook set: a local port nobody answers on.
    alerts = {"alert_webhook_url": "http://127.0.0.1:9/alerts"}
    with fleet_stack(f"fleet{calendars}", calendars, compression, keep_logs, **alerts) as fleet:
        stack, settings, control = fleet.stack, fleet.settings, fleet.control
        web = stack.start_web(workers=2)
        worker = stack.start_worker(concurrency=concurrency)
        beat = stack.start_beat()
        stack.wait_ready()
        time.sleep(5)  # first ticks, first connections
        roles = {"web": web, "worker": worker, "beat": beat}
        cpu_before = {name: tree_cpu_seconds(p.pid or 0) for name, p in roles.items()}
        mark = len(control.requests())
        scrapes = scrape_every(stack.web_url + "/metrics", SCRAPE_SECONDS, seconds)
        cpu = {name: tree_cpu_seconds(p.pid or 0) - cpu_before[name] for name, p in roles.items()}
        rss = {name: tree_peak_rss_mb(p.pid or 0) for name, p in roles.items()}
        made = control.requests(since=mark)
        # Tasks still waiting: a worker that keeps up leaves (almost) none.
        with redis.Redis.from_url(settings.broker_url) as client:
            backlog = int(client.llen("calsync"))
        dead = [p.name for p in stack.dead()]
    lived_hours = seconds * compression / 3600
    calendar_hours = calendars * lived_hours
    by_method: dict[str, int] = {}
    for entry in made:
        by_method[entry["methodId"]] = by_method.get(entry["methodId"], 0) + 1
    report.value(f"{prefix}.compression", compression)
    report.value(f"{prefix}.run_seconds", seconds, "s")
    report.value(f"{prefix}.lived_hours", lived_hours, "h")
    for name in roles:
        report.value(f"{prefix}.cpu_seconds.{name}", cpu[name], "s")
        report.value(f"{prefix}.peak_rss_mb.{name}", rss[name], "MB")
    total_cpu = sum(cpu.values())
    per_1000 = total_cpu / (calendar_hours / 1000)
    report.value(f"{prefix}.cpu_seconds_per_1000_calendar_hours", per_1000, "s")
    per_day = len(made) / calendars / (lived_hours / 24)
    report.value(f"{prefix}.google_requests_per_calendar_day", per_day)
    for method, count in sorted(by_method.items()):
        report.value(
            f"{prefix}.google_requests_per_calendar_day.{method}",
            count / calendars / (lived_hours / 24),
        )
    report.value(f"{prefix}.worker_concurrency", concurrency)
    report.value(f"{prefix}.metrics_scrapes", len(scrapes))
    if scrapes:
        report.value(f"{prefix}.metrics_scrape_seconds_max", max(scrapes), "s")
    report.value(f"{prefix}.queue_backlog_at_end", backlog)
    lists = by_method.get("calendar.events.list", 0)
    if lists:
        report.value(f"{prefix}.worker_cpu_ms_per_events_list", cpu["worker"] * 1000 / lists, "ms")
    report.value(f"{prefix}.processes_died", ",".join(dead) or "-")
    return {
        "cpu_per_1000": per_1000,
        "requests_per_day": per_day,
        **{f"rss_{k}": v for k, v in rss.items()},
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


IDLE_SYNCS_PER_SECOND = 15  # the compression aims at this many safety-net syncs per second
RSS_BAR_MB = 300


def compression_for(calendars: int) -> float:
    """Compress time so that the run makes ~IDLE_SYNCS_PER_SECOND safety-net syncs a
    second (what this machine can do beside everything else), never slower than real time,
    never more than 60x."""
    from core.settings import Settings

    wanted = IDLE_SYNCS_PER_SECOND * Settings().safety_net_seconds / calendars
    return float(min(60, max(1, round(wanted))))


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="fleet sizes to measure")
    p.add_argument(
        "--idle-seconds", type=float, default=None, help="idle run length (600: 10 minutes)"
    )
    p.add_argument("--skip-explain", action="store_true", help="only the idle runs")
    p.add_argument("--skip-idle", action="store_true", help="only the periodic statements")
    p.add_argument("--worker-concurrency", type=int, default=None, help="idle run's (12)")
    p.add_argument(
        "--busy-load",
        action="store_true",
        help="also 50 changes/s and host busy reads on the largest fleet (bench/fleet_busy.py;"
        " always with --smoke)",
    )
    p.add_argument(
        "--recovery",
        action="store_true",
        help="with --busy-load: then the whole fleet overdue at once (back after downtime) and"
        " the same changes while it is worked off (always with --smoke)",
    )
    args = p.parse_args()
    sizes = tuple(args.sizes or (SMOKE_SIZES if args.smoke else DEFAULT_SIZES))
    idle_seconds = args.idle_seconds or (5.0 if args.smoke else 600.0)
    report = Report("fleet_scale", smoke=args.smoke)
    report.header()
    from core.settings import Settings

    defaults = Settings()
    for size in (10_000, 100_000, 1_000_000):
        for kind, count in quota_projection(size, defaults).items():
            report.value(f"projected.n{size}.google_requests_per_day.{kind}", round(count))
    smallest, largest = min(sizes), max(sizes)
    if not args.skip_explain:
        results = {size: measure_size(size, report, args.smoke) for size in sizes}
        for item in results[largest]["explained"]:
            what = f"{item.task}: {item.statement[:60]}"
            report.bar(
                f"{what} ms at {largest}", item.execution_ms, STATEMENT_BAR_MS, at_least=False
            )
            report.bar(
                f"{what} large tables read without index at {largest}",
                len(item.seq_scans),
                0,
                at_least=False,
            )
        if largest > smallest:
            for name, seconds in results[largest]["tasks"].items():
                report.ratio(
                    f"task.{name}.growth_{smallest}_to_{largest}",
                    seconds,
                    results[smallest]["tasks"][name],
                )
            report.value("fleet_ratio", largest / smallest)
    if not args.skip_idle:
        idle = {
            size: idle_cost(
                size,
                compression_for(size),
                idle_seconds,
                report,
                args.keep_logs,
                args.worker_concurrency or (2 if args.smoke else 12),
            )
            for size in sizes
        }
        for role in ("web", "worker", "beat"):
            report.bar(
                f"peak RSS of {role} at {largest} calendars MB",
                idle[largest][f"rss_{role}"],
                RSS_BAR_MB,
                at_least=False,
            )
        if largest > smallest:
            growth = report.ratio(
                f"idle.cpu_per_calendar_hour.growth_{smallest}_to_{largest}",
                idle[largest]["cpu_per_1000"],
                idle[smallest]["cpu_per_1000"],
            )
            # Linear growth keeps the cost per calendar-hour flat (ratio 1); noise allowed.
            report.bar(
                "idle cost per calendar-hour, largest / smallest", growth, 1.5, at_least=False
            )
    if args.busy_load or args.smoke:
        # Last: it imports the Celery app (enqueue), after which no other stack may start.
        from bench import fleet_busy

        busy = fleet_busy.busy_load(
            largest,
            fleet_busy.SMOKE if args.smoke else fleet_busy.FULL,
            report,
            args.keep_logs,
            args.worker_concurrency or (2 if args.smoke else 12),
            recovery=args.recovery or args.smoke,
        )
        fleet_busy.report_bars(report, largest, busy)
    return report.finish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
