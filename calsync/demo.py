"""`calsync demo`: the whole pipeline on one machine with nothing installed but calsync.

Starts the Google emulator (in this process), web (gunicorn), worker and beat (Celery on the
embedded SQLite broker), attaches a demo calendar, then makes the changes that cause double
bookings elsewhere and prints, as each is applied, the busy table, why the other events do
not block, and the measured notification→applied lag.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from sqlalchemy import func, select

from calsync.processes import ProcessStack, child_env, free_port, settings_vars
from core.settings import Settings, configure

DEMO_ZONE = "Europe/Berlin"
DEMO_ACCOUNT = "host@demo.calsync.test"
APPLY_TIMEOUT = 60


@dataclass
class Step:
    title: str
    change: Callable[[], Any]


class DemoStopped(Exception):
    pass


def _local(day: date, hour: int, minute: int = 0) -> str:
    return datetime(
        day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(DEMO_ZONE)
    ).isoformat()


def _timed(day: date, start_hour: int, end_hour: int, **fields: Any) -> dict:
    return {
        "start": {"dateTime": _local(day, start_hour), "timeZone": DEMO_ZONE},
        "end": {"dateTime": _local(day, end_hour), "timeZone": DEMO_ZONE},
        **fields,
    }


def _steps(control: Any, calendar: str) -> list[Step]:
    today = datetime.now(ZoneInfo(DEMO_ZONE)).date()
    day1, day2, day3 = (today + timedelta(days=n) for n in (1, 2, 3))
    made: dict[str, str] = {}

    def insert(key: str, body: dict) -> None:
        made[key] = control.insert_event(calendar, body)["id"]

    me = {"email": DEMO_ACCOUNT, "self": True}
    return [
        Step(
            "A busy meeting tomorrow 10:00-11:00",
            lambda: insert("meeting", _timed(day1, 10, 11, summary="Customer call")),
        ),
        Step(
            "An event marked Free tomorrow 12:00-13:00 (must NOT block)",
            lambda: insert(
                "free",
                _timed(day1, 12, 13, summary="Lunch (shown as Free)", transparency="transparent"),
            ),
        ),
        Step(
            "An invitation the host declined, tomorrow 15:00-16:00 (must NOT block)",
            lambda: insert(
                "declined",
                _timed(
                    day1,
                    15,
                    16,
                    summary="Optional sync",
                    attendees=[
                        {**me, "responseStatus": "declined"},
                        {"email": "boss@example.com", "responseStatus": "accepted"},
                    ],
                ),
            ),
        ),
        Step(
            f"An all-day event on {day2} (whole day in {DEMO_ZONE}, not UTC midnight)",
            lambda: insert(
                "allday",
                {
                    "summary": "Offsite",
                    "start": {"date": day2.isoformat()},
                    "end": {"date": (day2 + timedelta(days=1)).isoformat()},
                },
            ),
        ),
        Step(
            "A daily standup 09:00-09:15, 5 times (recurring series)",
            lambda: insert(
                "series",
                {
                    **_timed(day1, 9, 9, summary="Standup"),
                    "end": {"dateTime": _local(day1, 9, 15), "timeZone": DEMO_ZONE},
                    "recurrence": ["RRULE:FREQ=DAILY;COUNT=5"],
                },
            ),
        ),
        Step(
            f"Move the customer call to {day3} 14:00-15:00",
            lambda: control.patch_event(
                calendar,
                made["meeting"],
                {
                    "start": {"dateTime": _local(day3, 14), "timeZone": DEMO_ZONE},
                    "end": {"dateTime": _local(day3, 15), "timeZone": DEMO_ZONE},
                },
            ),
        ),
        Step(
            "Delete the all-day event",
            lambda: control.delete_event(calendar, made["allday"]),
        ),
    ]


class Demo:
    def __init__(self, web_port: int, emulator_port: int) -> None:
        self.web_port = web_port or free_port()
        self.emulator_port = emulator_port
        self.data_dir = Path(tempfile.mkdtemp(prefix="calsync-demo-"))
        self.stack: ProcessStack | None = None
        self.emulator: Any = None
        self.calendar_id: int | None = None
        self.host_id: int | None = None
        self.runs_seen = 0

    # --- setup --------------------------------------------------------------------------

    def start(self) -> None:
        from emulator import EmulatorServer

        self.emulator = EmulatorServer(port=self.emulator_port).start()
        env = {
            "CALSYNC_DATA_DIR": str(self.data_dir),
            "CALSYNC_PUBLIC_URL": f"http://127.0.0.1:{self.web_port}",
            "CALSYNC_GOOGLE_API_ENDPOINT": self.emulator.api_endpoint,
            "CALSYNC_GOOGLE_TOKEN_URI": self.emulator.token_uri,
            "CALSYNC_SECRET_KEY": secrets.token_urlsafe(32),
            "CALSYNC_ADMIN_TOKEN": secrets.token_urlsafe(24),
            "CALSYNC_SWEEP_AFTER_SECONDS": "5",
            "CALSYNC_LEASE_SECONDS": "20",
        }
        settings = Settings.from_env(env)
        configure(settings)
        from models.migrate import upgrade

        upgrade(settings.database_url)
        from worker.celery_app import app
        from worker.celery_factory import declare_queue

        declare_queue(app)  # before web, worker and beat all race to create it
        logs = self.data_dir / "logs"
        self.stack = ProcessStack(child_env(settings_vars(settings)), logs, self.web_port)
        self.stack.start_web(workers=1)
        self.stack.start_worker(concurrency=2)
        self.stack.start_outbound()
        self.stack.start_beat()
        self.stack.wait_ready()
        click.echo(f"  web      http://127.0.0.1:{self.web_port}  (logs in {logs})")
        click.echo(f"  emulator {self.emulator.url}")
        click.echo(f"  data     {self.data_dir}")

    def attach(self) -> str:
        from models.db import session_scope
        from models.registry import attach_calendar, create_host
        from worker.enqueue import enqueue_sync, enqueue_watch

        control = self.emulator.control
        credentials = control.create_account(DEMO_ACCOUNT)
        control.create_calendar(
            DEMO_ACCOUNT, time_zone=DEMO_ZONE, owner=DEMO_ACCOUNT, summary="Demo host"
        )
        with session_scope() as session:
            host, _token = create_host(session, "Demo host", DEMO_ZONE)
            calendar, _ = attach_calendar(session, host.id, DEMO_ACCOUNT, credentials)
            self.host_id, self.calendar_id = host.id, calendar.id
        enqueue_sync(self.calendar_id, reason="attach", full=True)
        enqueue_watch(self.calendar_id)
        return DEMO_ACCOUNT

    def print_host_links(self) -> None:
        """The host's sign-in link (open it to watch the changes land in the week view) and
        what a booking tool needs to read the busy time."""
        from core.settings import get_settings
        from models.db import session_scope
        from models.hosts import Host
        from models.registry import rotate_feed_token
        from models.sign_in_links import issue_sign_in_link, sign_in_url
        from rules.busy_feed import connection_values

        public_url = get_settings().public_url
        with session_scope() as session:
            host = session.get(Host, self.host_id)
            assert host is not None
            link = issue_sign_in_link(session, host, datetime.now(UTC))
            feed_token = rotate_feed_token(session, host)
        assert self.host_id is not None
        values = connection_values(public_url, self.host_id, feed_token)
        click.echo("\nThe host's own page (week view, blocks by the hour, sync log):")
        click.echo(f"  sign in  {sign_in_url(public_url, link)}  (once, within 15 minutes)")
        click.echo("Booking-tool values (Cal.com: CalDAV; others: the ICS feed):")
        click.echo(f"  CalDAV URL {values['caldavUrl']}")
        click.echo(f"  username   {values['username']}")
        click.echo(f"  password   {values['password']}")
        click.echo(f"  ICS feed   {values['icsUrl']}")

    # --- observing ----------------------------------------------------------------------

    def _check_processes(self) -> None:
        for process in self.stack.dead() if self.stack is not None else []:
            raise click.ClickException(
                f"{process.name} exited; last log lines:\n{process.log_tail()}"
            )

    def _run_count(self) -> int:
        from models import SyncRun
        from models.db import session_scope

        with session_scope() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(SyncRun)
                    .where(SyncRun.calendar_id == self.calendar_id, SyncRun.outcome == "ok")
                )
                or 0
            )

    def wait_applied(self, runs_before: int, what: str) -> None:
        deadline = time.monotonic() + APPLY_TIMEOUT
        while self._run_count() <= runs_before:
            self._check_processes()
            if time.monotonic() > deadline:
                raise click.ClickException(f"{what} was not applied within {APPLY_TIMEOUT}s")
            time.sleep(0.05)

    def wait_watching(self) -> None:
        from models import Channel
        from models.db import session_scope

        deadline = time.monotonic() + APPLY_TIMEOUT
        while True:
            with session_scope() as session:
                watching = session.scalar(
                    select(func.count())
                    .select_from(Channel)
                    .where(
                        Channel.calendar_id == self.calendar_id,
                        Channel.resource_id.is_not(None),
                    )
                )
            if watching:
                return
            self._check_processes()
            if time.monotonic() > deadline:
                raise click.ClickException("the push channel did not start")
            time.sleep(0.05)

    def print_table(self) -> None:
        from models import CalendarEvent, SyncRun
        from models.busy_queries import host_busy
        from models.db import session_scope

        now = datetime.now(UTC)
        zone = ZoneInfo(DEMO_ZONE)
        assert self.host_id is not None, "the demo host is created first"
        with session_scope() as session:
            busy = host_busy(
                session, self.host_id, now - timedelta(days=1), now + timedelta(days=8)
            )
            events = session.execute(
                select(CalendarEvent.summary, CalendarEvent.start, CalendarEvent.decision)
                .where(CalendarEvent.calendar_id == self.calendar_id)
                .order_by(CalendarEvent.start)
            ).all()
            run = session.scalars(
                select(SyncRun)
                .where(SyncRun.calendar_id == self.calendar_id)
                .order_by(SyncRun.id.desc())
                .limit(1)
            ).first()
        click.echo("  busy (host time, merged):")
        for interval in busy:
            start, end = interval.start.astimezone(zone), interval.end.astimezone(zone)
            click.echo(f"    {start:%a %d %b %H:%M} - {end:%a %d %b %H:%M}")
        if not busy:
            click.echo("    (nothing)")
        free = [e for e in events if e.decision != "busy"]
        if free:
            click.echo("  not blocking, and why:")
            for summary, event_start, decision in free:
                when = (
                    event_start.astimezone(zone).strftime("%a %d %b %H:%M") if event_start else "?"
                )
                click.echo(f"    {when}  {summary or '(no title)'}: {decision}")
        if run is not None:
            lag = f"{run.notification_lag_ms} ms" if run.notification_lag_ms is not None else "n/a"
            click.echo(
                f"  sync run: {run.kind} via {run.trigger}, {run.events_seen} events seen, "
                f"notification→applied lag {lag}"
            )

    # --- teardown -----------------------------------------------------------------------

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()
        if self.emulator is not None:
            self.emulator.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def run_demo(web_port: int = 8000, emulator_port: int = 0, keep_running: bool = True) -> int:
    demo = Demo(web_port, emulator_port)
    # Ctrl-C and SIGTERM both end up in the `finally` below.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        click.echo("calsync demo: starting emulator, web, worker and beat ...")
        demo.start()
        calendar = demo.attach()
        demo.print_host_links()
        click.echo(f"\nAttached Google calendar {calendar!r}; first full sync ...")
        demo.wait_applied(0, "the first full sync")
        demo.wait_watching()
        click.echo("Full sync done and push channel open.\n")
        for number, step in enumerate(_steps(demo.emulator.control, calendar), 1):
            before = demo._run_count()
            click.echo(f"[{number}] {step.title}")
            step.change()
            demo.wait_applied(before, step.title)
            demo.print_table()
            click.echo("")
            time.sleep(0.5)
        if keep_running:
            # From here Ctrl-C and SIGTERM only ask the loop to end: raised at an arbitrary
            # point (inside a database commit, say) the interrupt could surface as another
            # error and the demo would exit non-zero. Installed before the line that invites
            # Ctrl-C, so a Ctrl-C right after it never lands in between.
            stop_requested = threading.Event()
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop_requested.set())
            click.echo(
                "All changes applied. Still running: change events at the emulator "
                f"({demo.emulator.url}/_emulator/...) and watch; Ctrl-C to stop."
            )
            seen = demo._run_count()
            while not stop_requested.wait(0.2):
                demo._check_processes()
                count = demo._run_count()
                if count > seen:
                    seen = count
                    click.echo(f"[{datetime.now():%H:%M:%S}] change applied")
                    demo.print_table()
            click.echo("\nstopping ...")
        return 0
    except KeyboardInterrupt:
        click.echo("\nstopping ...")
        return 0
    finally:
        demo.stop()
        click.echo("stopped.")
