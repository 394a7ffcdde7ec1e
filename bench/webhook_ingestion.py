"""Webhook ingestion: Google push notifications per second through calsync's
`POST /webhooks/google` under gunicorn, against a bare 204 endpoint served the same way.

What is measured. calsync's web process (the Procfile's gunicorn command line, unchanged:
`calsync.processes.web_process`, 2 workers x 4 threads) and its beat process (which drains the
push intake, intake/drainer.py) on a fresh PostgreSQL database and a private Redis
broker, loaded by `wrk` on loopback with valid notifications (empty body, the X-Goog-*
headers Google sends, `Resource-State: exists`) rotating over many watched calendars, each
with its own channel. Calendars are attached through `models.registry` and channels stored
as `worker.channels.start_watch` stores them. With PostgreSQL + Redis the webhook appends
each notification to its process's spool (intake/spool.py), the process's forwarder
thread sends the spool to Redis (intake/redis_intake.py), and the drainer writes the dirty
marks in batches and enqueues the syncs; all of it runs on the same two cores and counts.
Two phases:

* `flood` (the bar): notifications for calendars that already wait for their sync - what the
  webhook faces when notifications come faster than syncs finish, the case an ingestion bar
  protects (Google backs off from a receiver that cannot keep up). Nothing consumes the
  queue; the first notification of each calendar still makes its clean->dirty transition.
* `transition` (informational): a stand-in for the sync worker clears every dirty mark and
  empties the queue every CONSUME_EVERY seconds, so nearly every notification finds its
  calendar clean and needs its own sync: one Celery message each, published by the drainer.
  That is a sync rate of ~20 per second per calendar (tens of thousands per second in all),
  far beyond what a worker pool on this machine does (each sync is a Google fetch and a
  database transaction), so this phase prices the enqueue, not a state a deployment reaches.

The baseline is `bench.bare_app`: a Flask app whose `POST /webhooks/google` answers 204 at
once, started with exactly the same gunicorn argv (only the app named differs) and loaded by
the same wrk script, parameters and duration, in the same run. RATIO = calsync / bare
requests per second; the issue's bar is >= 0.5. p50/p99 latencies come from wrk's own
histogram (per request, send to last byte). Any answer other than 204 from calsync fails the
run; afterwards the intake must be drained, the database must show every calendar's
notification time and channel message number, and the broker must have received the
clean->dirty enqueues.

Fairness: same machine, same processes, same load, back to back; wrk uses one thread (it
needs far less than one core at these rates) and competes with gunicorn, beat, Redis and
PostgreSQL for the machine's cores; the bare endpoint has the machine to itself and wrk. Each
run is preceded by a short warm-up.
"""

from __future__ import annotations

import json
import math
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.calendar_fleet import wait_until
from bench.harness import BenchStack, Report, bench_stack, parser

LUA_SCRIPT = Path(__file__).resolve().parent / "webhook_notifications.lua"
BARE_APP = "bench.bare_app:create_app()"
WEB_WORKERS = 2  # web_process's default, what the Procfile runs on a small machine
CONSUME_EVERY = 0.05  # seconds between the stand-in worker's passes in the transition phase
QUEUE = "calsync"  # worker.celery_factory.QUEUE: the Redis list kombu publishes to
BAR_RATIO = 0.5


@dataclass(frozen=True)
class Size:
    calendars: int
    seconds: int
    warmup_seconds: int
    connections: int
    wrk_threads: int = 1


FULL = Size(calendars=1000, seconds=20, warmup_seconds=3, connections=16)
SMOKE = Size(calendars=20, seconds=2, warmup_seconds=1, connections=8)


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    statuses: dict[int, int]
    socket_errors: dict[str, int]
    latency_ms: dict[str, float]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else math.nan

    @property
    def not_204(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 204)


# --- setup ------------------------------------------------------------------------------


def watched_calendars(count: int) -> list[dict[str, str]]:
    """`count` calendars of one host and one Google account, each with a live channel."""
    from models.base import utcnow
    from models.calendars import Channel, channel_token_hash
    from models.db import session_scope
    from models.registry import attach_calendar, create_host

    credentials = {
        "client_id": "bench-client.apps.googleusercontent.com",
        "client_secret": secrets.token_urlsafe(16),
        "refresh_token": secrets.token_urlsafe(32),
        "token_uri": "http://127.0.0.1:9/token",
    }
    expiration = utcnow() + timedelta(days=7)
    channels: list[dict[str, str]] = []
    with session_scope() as session:
        host, _api_token = create_host(session, "bench-host", "UTC")
        for number in range(count):
            google_id = f"bench-{number}@group.calendar.google.com"
            calendar, _created = attach_calendar(session, host.id, google_id, credentials)
            # As worker.channels.start_watch makes them; resource id as Google would answer.
            token = secrets.token_urlsafe(48)
            channel = Channel(
                id=secrets.token_hex(16),
                calendar_id=calendar.id,
                token_hash=channel_token_hash(token),
                resource_id=secrets.token_urlsafe(20),
                expiration=expiration,
            )
            session.add(channel)
            channels.append(
                {
                    "id": channel.id,
                    "token": token,
                    "resource": channel.resource_id or "",
                    "uri": "https://www.googleapis.com/calendar/v3/calendars/"
                    f"{google_id}/events?alt=json",
                }
            )
    return channels


def write_channel_file(channels: list[dict[str, str]], directory: Path) -> Path:
    """The channels as a Lua file the wrk script loads (tokens: private temp dir only)."""
    path = directory / "channels.lua"
    rows = [
        "{" + ", ".join(f"{key} = {json.dumps(value)}" for key, value in row.items()) + "}"
        for row in channels
    ]
    path.write_text("return {\n" + ",\n".join(rows) + "\n}\n")
    path.chmod(0o600)
    return path


# --- load -------------------------------------------------------------------------------


def run_wrk(url: str, channel_file: Path, size: Size, seconds: int) -> LoadResult:
    wrk = shutil.which("wrk")
    assert wrk is not None
    argv = [
        wrk,
        *("-t", str(size.wrk_threads), "-c", str(size.connections), "-d", f"{seconds}s"),
        *("--timeout", "10s", "-s", str(LUA_SCRIPT), url + "/webhooks/google"),
        *("--", str(channel_file)),
    ]
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    lines = [line for line in completed.stdout.splitlines() if line.startswith("WRK_JSON ")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed:\n{completed.stdout}\n{completed.stderr}")
    raw = json.loads(lines[-1].removeprefix("WRK_JSON "))
    return LoadResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        statuses={int(status): count for status, count in raw["statuses"].items()},
        socket_errors=raw["socket_errors"],
        latency_ms={key: value / 1000 for key, value in raw["latency_us"].items()},
    )


class StandInWorker:
    """Does what the sync workers' bookkeeping does to the webhook's tables, without Google:
    every `every` seconds, clears all dirty marks and takes every message off the queue."""

    def __init__(self, broker_url: str, every: float) -> None:
        import redis

        self.redis = redis.Redis.from_url(broker_url)
        self.every = every
        self.consumed = 0
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stand-in-worker", daemon=True)

    def __enter__(self) -> StandInWorker:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.consume_once()

    def consume_once(self) -> None:
        from sqlalchemy import update

        from models.calendars import SyncState
        from models.db import session_scope

        with session_scope() as session:
            session.execute(
                update(SyncState).where(SyncState.dirty_since.is_not(None)).values(dirty_since=None)
            )
        self.consumed += take_queue(self.redis)
        self.passes += 1


def take_queue(client: Any) -> int:
    """Empty the task queue; how many messages it held."""
    pipe = client.pipeline(transaction=True)
    pipe.llen(QUEUE)
    pipe.delete(QUEUE)
    length, _deleted = pipe.execute()
    return int(length)


def wait_until_drained(timeout: float = 60) -> float:
    """Seconds until the intake (spools and Redis) holds no notification the drainer has
    not committed."""
    from core.settings import get_settings
    from intake.redis_intake import intake_holds_notifications

    def drained() -> bool:
        return not intake_holds_notifications(get_settings())

    started = time.monotonic()
    wait_until(drained, timeout, "the push intake to drain", step=0.05)
    return time.monotonic() - started


def database_effect() -> dict[str, int]:
    from sqlalchemy import func, select

    from models.calendars import Channel, SyncState
    from models.db import session_scope

    with session_scope() as session:
        return {
            "calendars_notified": session.scalar(
                select(func.count()).where(SyncState.last_notification_at.is_not(None))
            )
            or 0,
            "calendars_dirty": session.scalar(
                select(func.count()).where(SyncState.dirty_since.is_not(None))
            )
            or 0,
            "channels_with_message_number": session.scalar(
                select(func.count()).where(Channel.last_message_number.is_not(None))
            )
            or 0,
        }


# --- phases -----------------------------------------------------------------------------


def report_load(report: Report, prefix: str, result: LoadResult) -> None:
    report.value(f"{prefix}.requests", result.requests)
    report.value(f"{prefix}.requests_per_second", result.per_second, "req/s")
    report.value(f"{prefix}.p50_ms", result.latency_ms["p50"], "ms")
    report.value(f"{prefix}.p99_ms", result.latency_ms["p99"], "ms")
    report.value(f"{prefix}.max_ms", result.latency_ms["max"], "ms")
    report.value(f"{prefix}.non_204", result.not_204)
    report.value(f"{prefix}.socket_errors", sum(result.socket_errors.values()))


def measure_calsync(
    stack: BenchStack, report: Report, size: Size, channel_file: Path, calendars: int
) -> tuple[LoadResult, LoadResult]:
    import redis

    from core.settings import get_settings

    broker_url = get_settings().broker_url
    broker = redis.Redis.from_url(broker_url)
    beat = stack.start_beat()  # drains the push intake (intake/drainer.py)
    web = stack.start_web(workers=WEB_WORKERS).wait_ready()
    try:
        run_wrk(stack.web_url, channel_file, size, size.warmup_seconds)
        flood = run_wrk(stack.web_url, channel_file, size, size.seconds)
        report_load(report, "calsync.flood", flood)
        report.value("calsync.flood.enqueued", take_queue(broker))

        with StandInWorker(broker_url, CONSUME_EVERY) as stand_in:
            transition = run_wrk(stack.web_url, channel_file, size, size.seconds)
        report_load(report, "calsync.transition", transition)
        report.value("intake.drain_wait_seconds", wait_until_drained(), "s")
        enqueued = stand_in.consumed + take_queue(broker)
        report.value("calsync.transition.enqueued", enqueued)
        report.value(
            "calsync.transition.enqueued_fraction",
            enqueued / transition.requests if transition.requests else math.nan,
        )
        report.value("calsync.transition.stand_in_passes", stand_in.passes)
    finally:
        stack.stop(web)
        stack.stop(beat)

    effect = database_effect()
    for key, value in effect.items():
        report.value(f"db.{key}", value)
    problems = [
        f"{name}: {result.not_204} answers other than 204 {result.statuses}"
        for name, result in (("flood", flood), ("transition", transition))
        if result.not_204 or sum(result.socket_errors.values())
    ]
    if effect["calendars_notified"] != calendars:
        problems.append(f"only {effect['calendars_notified']}/{calendars} calendars notified")
    if effect["channels_with_message_number"] != calendars:
        problems.append("channels lack their message number")
    if effect["calendars_dirty"] == 0 or enqueued == 0:
        problems.append("no calendar was marked dirty / no sync was enqueued")
    if problems:
        raise SystemExit(
            "webhook_ingestion: notifications were not ingested: " + "; ".join(problems)
        )
    return flood, transition


def measure_bare(stack: BenchStack, report: Report, size: Size, channel_file: Path) -> LoadResult:
    web = stack.start_web(workers=WEB_WORKERS, app=BARE_APP).wait_ready()
    try:
        run_wrk(stack.web_url, channel_file, size, size.warmup_seconds)
        bare = run_wrk(stack.web_url, channel_file, size, size.seconds)
    finally:
        stack.stop(web)
    report_load(report, "bare", bare)
    return bare


def main(argv: list[str] | None = None) -> int:
    cli = parser(__doc__.split("\n\n")[0])
    cli.add_argument("--seconds", type=int, default=None, help="length of each measured run")
    cli.add_argument("--calendars", type=int, default=None, help="watched calendars")
    args = cli.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: install the Debian package wrk")
    size = SMOKE if args.smoke else FULL
    size = replace(
        size,
        seconds=args.seconds or size.seconds,
        calendars=args.calendars or size.calendars,
    )
    report = Report("webhook_ingestion", smoke=args.smoke)
    report.header()
    report.value("calendars", size.calendars)
    report.value("web_workers", WEB_WORKERS)
    report.value("wrk.threads", size.wrk_threads)
    report.value("wrk.connections", size.connections)
    report.value("wrk.seconds", size.seconds)
    with (
        bench_stack("webhook", keep_logs=args.keep_logs) as stack,
        tempfile.TemporaryDirectory(prefix="calsync-bench-wrk-") as scratch,
    ):
        started = time.monotonic()
        channel_file = write_channel_file(watched_calendars(size.calendars), Path(scratch))
        report.value("setup_seconds", time.monotonic() - started, "s")
        flood, transition = measure_calsync(stack, report, size, channel_file, size.calendars)
        bare = measure_bare(stack, report, size, channel_file)
    ratio = report.ratio("calsync_flood_vs_bare", flood.per_second, bare.per_second)
    report.ratio("calsync_transition_vs_bare", transition.per_second, bare.per_second)
    report.ratio("p99_flood_vs_bare", flood.latency_ms["p99"], bare.latency_ms["p99"])
    report.bar("notifications/s calsync (flood) / bare", ratio, BAR_RATIO, at_least=True)
    return report.finish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
