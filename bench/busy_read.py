"""Busy read: `GET /v1/hosts/{host}/busy` for 14-day windows over a host's 5 calendars, with
1,000,000 busy blocks over 10,000 calendars on PostgreSQL, against asking the emulator's
`freeBusy.query` the same question every time ("ask Google every time").

What is measured.
* Data: a fresh PostgreSQL database (2,000 hosts x 5 calendars, 100 busy blocks per calendar
  spread over about a year around now: mostly 15-120 minute meetings in working hours, some
  whole days, a few multi-day absences; one manual block on every tenth host). The hosts the
  baseline samples are created through the product's registry (`create_host`,
  `attach_calendar` with the emulator's credentials); the rest are bulk-loaded with COPY in
  the shape the registry and the sync engine write (host token hash, account, calendar, sync
  state fresh and watched, one live channel). `calendar_events` rows are not loaded: the read
  path never touches them. ANALYZE runs after the load.
* Server time: the product's request handling without the network: the Flask app built by
  `webhook.create_app()` in this process, called through Flask's test client (routing, bearer
  auth with the host's own token, freshness, the block query, merging, JSON), wall time per
  request for random hosts and windows (14 days starting between yesterday and two months
  ahead). Also this thread's CPU time per request (what a request costs apart from waiting
  for PostgreSQL and for cores other processes hold) and the block query alone
  (`models.busy_queries.host_busy`).
* HTTP: the Procfile's gunicorn (`calsync.processes.web_process`, 2 workers x 4 threads) on
  loopback, one client with a persistent `requests.Session`, one request at a time, host
  tokens rotating over all hosts; send to last byte, client overhead included.
* Baseline: the emulator (its own process) holding the same events of the same 5 calendars
  for the sampled hosts, asked `POST /calendar/v3/freeBusy` for the same window and
  calendars with a valid access token from its `/token` endpoint, over HTTP by the same kind
  of client. The same questions go to our `GET .../busy` and to our Google-shaped
  `POST /v1/freeBusy`, interleaved question by question with the baseline. RATIO = baseline
  latency / ours. Answers are checked first: the union of the emulator's 5 calendars = our
  merged host busy, and our freeBusy = the emulator's per calendar; a mismatch fails the run.

Fairness and honesty: same machine, same (host, window) pairs, same client, interleaved.
The emulator keeps everything in memory and sits on loopback: its latency is not Google's.
Google's answers cross the internet and do more work, so the ratio here understates what
"ask Google every time" costs; it says only that the local table is not slower than even an
in-memory freeBusy next door.
"""

from __future__ import annotations

import base64
import os
import random
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from psycopg import sql

from bench.harness import Report, bench_stack, parser, percentile

CALENDARS_PER_HOST = 5
WINDOW = timedelta(days=14)
BAR_SERVER_P99_MS = 5.0
BAR_HTTP_P99_MS = 15.0
# Issue 15: the same busy time read by booking tools, server time at 1M rows.
BAR_CALDAV_REPORT_SERVER_P99_MS = 15.0
BAR_ICS_SERVER_P99_MS = 25.0
ACCOUNT_DOMAIN = "bench.example"


@dataclass(frozen=True)
class Size:
    hosts: int
    blocks: int
    baseline_hosts: int
    server_requests: int
    http_requests: int
    baseline_requests: int
    warmup_requests: int


FULL = Size(
    hosts=2000,
    blocks=1_000_000,
    baseline_hosts=50,
    server_requests=5000,
    http_requests=5000,
    baseline_requests=2000,
    warmup_requests=300,
)
# Every path and number once, not a measurement: the suite runs it (tests/bench). The 200
# answers compared with the emulator do not depend on the size; the booking-tool checks
# take min(50, server_requests).
SMOKE = Size(
    hosts=20,
    blocks=10_000,
    baseline_hosts=5,
    server_requests=50,
    http_requests=50,
    baseline_requests=30,
    warmup_requests=5,
)


# --- the synthetic calendars (pure) -------------------------------------------------------


@dataclass(frozen=True)
class Block:
    event_key: str
    start: datetime
    end: datetime


def google_calendar_id(host: int, k: int) -> str:
    return f"h{host}-c{k}@{ACCOUNT_DOMAIN}"


def account_email(host: int) -> str:
    return f"h{host}@{ACCOUNT_DOMAIN}"


def calendar_blocks(
    rng: random.Random, host: int, k: int, count: int, now: datetime
) -> list[Block]:
    """`count` busy events of one calendar over about a year around `now`: 85% meetings of
    15-120 minutes in working hours, 10% whole (UTC) days, 5% absences of 2-7 days. Event
    ids use Google's alphabet (a-v, 0-9) so the emulator accepts them as given."""
    first_day = (now - timedelta(days=180)).replace(hour=0, minute=0, second=0, microsecond=0)
    draw = rng.random  # randrange is several times slower, and a million blocks are drawn

    def pick(n: int) -> int:
        return int(draw() * n)

    blocks = []
    for i in range(count):
        day = first_day + timedelta(days=pick(365))
        kind = draw()
        if kind < 0.85:
            start = day + timedelta(hours=7 + pick(11), minutes=15 * pick(4))
            end = start + timedelta(minutes=15 * (1 + pick(8)))
        elif kind < 0.95:
            start, end = day, day + timedelta(days=1)
        else:
            start, end = day, day + timedelta(days=2 + pick(6))
        blocks.append(Block(f"h{host}c{k}e{i}", start, end))
    return blocks


def random_window(rng: random.Random, now: datetime) -> tuple[datetime, datetime]:
    """14 days from a whole hour between yesterday and two months ahead (a booking page)."""
    start = now.replace(minute=0, second=0, microsecond=0) + timedelta(
        hours=rng.randrange(-24, 1440)
    )
    return start, start + WINDOW


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merged(intervals: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Union of [start, end) pairs of same-format UTC strings, touching ones joined."""
    out: list[list[str]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


# --- loading ------------------------------------------------------------------------------


@dataclass
class Fleet:
    host_ids: list[int]  # index = host number
    tokens: list[str]
    feed_tokens: list[str]  # index = host number: the CalDAV password, in the ICS URL
    google_ids: dict[int, list[str]]  # host number -> its calendars' Google ids (sampled only)
    access_tokens: dict[int, str]  # host number -> emulator access token (sampled only)


def emulator_scenario(size: Size, blocks: dict[tuple[int, int], list[Block]]) -> dict[str, Any]:
    return {
        "accounts": [account_email(h) for h in range(size.baseline_hosts)],
        "calendars": [
            {
                "id": google_calendar_id(h, k),
                "timeZone": "UTC",
                "owner": account_email(h),
                "events": [
                    {
                        "id": b.event_key,
                        "summary": "busy",
                        "start": {"dateTime": rfc3339(b.start)},
                        "end": {"dateTime": rfc3339(b.end)},
                    }
                    for b in blocks[h, k]
                ],
            }
            for h in range(size.baseline_hosts)
            for k in range(CALENDARS_PER_HOST)
        ],
    }


def access_token(emulator_url: str, credentials: dict[str, Any]) -> str:
    answer = requests.post(
        emulator_url + "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": credentials["refresh_token"],
            "client_id": credentials["client_id"],
            "client_secret": credentials["client_secret"],
        },
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()["access_token"]


def _copy(cursor: Any, table: str, columns: tuple[str, ...], rows: Iterator[tuple]) -> None:
    quoted = ", ".join(f'"{c}"' for c in columns)
    with cursor.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def load(size: Size, stack: Any, report: Report) -> Fleet:
    from sqlalchemy import text

    from models.credentials_box import encrypt_credentials
    from models.db import get_engine, session_scope
    from models.registry import (
        attach_calendar,
        create_host,
        hash_api_token,
        new_feed_token,
        rotate_feed_token,
    )

    now = datetime.now(UTC)
    rng = random.Random(20240607)
    per_calendar = size.blocks // (size.hosts * CALENDARS_PER_HOST)
    started = time.perf_counter()
    blocks = {
        (h, k): calendar_blocks(rng, h, k, per_calendar, now)
        for h in range(size.hosts)
        for k in range(CALENDARS_PER_HOST)
    }

    # The sampled hosts: the same events in the emulator, attached through the registry.
    answer = stack.control().load_scenario(emulator_scenario(size, blocks))
    credentials = answer["accounts"]
    fleet = Fleet([], [], [], {}, {})
    with session_scope() as session:
        for h in range(size.baseline_hosts):
            host, token = create_host(session, f"bench host {h}", "UTC")
            fleet.host_ids.append(host.id)
            fleet.tokens.append(token)
            fleet.feed_tokens.append(rotate_feed_token(session, host))
            fleet.google_ids[h] = [google_calendar_id(h, k) for k in range(CALENDARS_PER_HOST)]
            for gid in fleet.google_ids[h]:
                attach_calendar(session, host.id, gid, credentials[account_email(h)])
    for h in range(size.baseline_hosts):
        fleet.access_tokens[h] = access_token(stack.emulator_url, credentials[account_email(h)])

    # Everything else in bulk, in the shape the registry writes.
    sealed = encrypt_credentials(credentials[account_email(0)])
    engine = get_engine()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SELECT coalesce(max(id), 0) FROM hosts")
        first_id = cursor.fetchone()[0] + 1
        bulk = range(size.baseline_hosts, size.hosts)
        for offset in range(len(bulk)):
            fleet.host_ids.append(first_id + offset)
            fleet.tokens.append(f"cs_{secrets.token_urlsafe(32)}")
            fleet.feed_tokens.append(new_feed_token())
        _copy(
            cursor,
            "hosts",
            (
                "id",
                "name",
                "time_zone",
                "busy_policy",
                "api_token_hash",
                "feed_token_hash",
                "created_at",
            ),
            (
                (
                    fleet.host_ids[h],
                    f"bench host {h}",
                    "UTC",
                    "{}",
                    hash_api_token(fleet.tokens[h]),
                    hash_api_token(fleet.feed_tokens[h]),
                    now,
                )
                for h in bulk
            ),
        )
        cursor.execute("SELECT coalesce(max(id), 0) FROM google_accounts")
        first_account = cursor.fetchone()[0] + 1
        account_ids = {h: first_account + offset for offset, h in enumerate(bulk)}
        _copy(
            cursor,
            "google_accounts",
            (
                "id",
                "host_id",
                "email",
                "credentials_encrypted",
                "state",
                "created_at",
                "updated_at",
            ),
            (
                (account_ids[h], fleet.host_ids[h], account_email(h), sealed, "ok", now, now)
                for h in bulk
            ),
        )
        cursor.execute("SELECT coalesce(max(id), 0) FROM calendars")
        first_calendar = cursor.fetchone()[0] + 1
        calendar_ids = {
            (h, k): first_calendar + (h - size.baseline_hosts) * CALENDARS_PER_HOST + k
            for h in bulk
            for k in range(CALENDARS_PER_HOST)
        }
        _copy(
            cursor,
            "calendars",
            (
                "id",
                "host_id",
                "account_id",
                "google_calendar_id",
                "time_zone",
                "watch_failures",
                "created_at",
            ),
            (
                (cid, fleet.host_ids[h], account_ids[h], google_calendar_id(h, k), "UTC", 0, now)
                for (h, k), cid in calendar_ids.items()
            ),
        )
        _copy(
            cursor,
            "sync_states",
            ("calendar_id", "consecutive_failures"),
            ((cid, 0) for cid in calendar_ids.values()),
        )
        cursor.execute(
            "SELECT c.id, c.host_id, c.google_calendar_id FROM calendars c WHERE c.id < %s",
            (first_calendar,),
        )
        host_number = {host_id: h for h, host_id in enumerate(fleet.host_ids)}
        for cid, host_id, gid in cursor.fetchall():
            h = host_number[host_id]
            calendar_ids[h, fleet.google_ids[h].index(gid)] = cid
        # Every calendar synced and watched: freshness answers are the real "ok" path.
        cursor.execute(
            "UPDATE sync_states SET sync_token = 'bench', last_success_at = now(), "
            "last_attempt_at = now(), full_sync_at = now()"
        )
        _copy(
            cursor,
            "channels",
            ("id", "calendar_id", "token_hash", "resource_id", "expiration", "created_at"),
            (
                (
                    secrets.token_hex(16),
                    cid,
                    secrets.token_hex(32),  # a sha256 hex, as stored
                    f"res-{cid}",
                    now + timedelta(days=6),
                    now,
                )
                for cid in calendar_ids.values()
            ),
        )
        _copy(
            cursor,
            "busy_blocks",
            ("calendar_id", "event_key", "start", "end", "applied_at"),
            (
                (calendar_ids[h, k], b.event_key, b.start, b.end, now)
                for (h, k), calendar in blocks.items()
                for b in calendar
            ),
        )
        manual_rng = random.Random(11)
        _copy(
            cursor,
            "manual_blocks",
            ("host_id", "start", "end", "note", "created_at"),
            (
                (fleet.host_ids[h], start, start + timedelta(hours=3), "bench", now)
                for h in range(size.baseline_hosts, size.hosts, 10)
                for start in [now + timedelta(hours=manual_rng.randrange(24 * 60))]
            ),
        )
        for table in ("hosts", "google_accounts", "calendars", "busy_blocks", "manual_blocks"):
            cursor.execute(
                sql.SQL(
                    "SELECT setval(pg_get_serial_sequence({name}, 'id'), "
                    "(SELECT coalesce(max(id), 1) FROM {table}))"
                ).format(name=sql.Literal(table), table=sql.Identifier(table))
            )
        raw.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
        rows = conn.execute(text("SELECT count(*) FROM busy_blocks")).scalar_one()
        calendars = conn.execute(text("SELECT count(*) FROM calendars")).scalar_one()
    report.value("busy_blocks", rows)
    report.value("calendars", calendars)
    report.value("hosts", size.hosts)
    report.value("load_seconds", time.perf_counter() - started, "s")
    return fleet


# --- measuring ----------------------------------------------------------------------------


def timed(calls: list[Callable[[], Any]]) -> list[float]:
    """Milliseconds per call, run one after another."""
    return timed_with_cpu(calls)[0]


def timed_with_cpu(calls: list[Callable[[], Any]]) -> tuple[list[float], list[float]]:
    """Wall and this thread's CPU milliseconds per call. CPU time shows what a request costs
    apart from waiting for the database and for cores other processes hold."""
    wall, cpu = [], []
    for call in calls:
        began, began_cpu = time.perf_counter(), time.thread_time()
        call()
        wall.append((time.perf_counter() - began) * 1000)
        cpu.append((time.thread_time() - began_cpu) * 1000)
    return wall, cpu


def report_latency(report: Report, key: str, samples_ms: list[float]) -> None:
    report.value(f"{key}_requests", len(samples_ms))
    report.value(f"{key}_p50_ms", percentile(samples_ms, 50), "ms")
    report.value(f"{key}_p99_ms", percentile(samples_ms, 99), "ms")


def busy_path(host_id: int, window: tuple[datetime, datetime]) -> str:
    return f"/v1/hosts/{host_id}/busy?timeMin={rfc3339(window[0])}&timeMax={rfc3339(window[1])}"


def freebusy_body(google_ids: list[str], window: tuple[datetime, datetime]) -> dict[str, Any]:
    return {
        "timeMin": rfc3339(window[0]),
        "timeMax": rfc3339(window[1]),
        "items": [{"id": gid} for gid in google_ids],
    }


def expect_ok(status: int, body: Any, what: str, ok: int = 200) -> None:
    if status != ok:
        raise SystemExit(f"{what}: HTTP {status}: {str(body)[:500]}")


# --- booking tools: CalDAV and the ICS feed (issue 15) ------------------------------------

# The calendar-query REPORT tsdav sends for Cal.com (fetchCalendarObjects, expand: true).
CALDAV_QUERY = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
    '<d:prop><d:getetag/><c:calendar-data><c:expand start="{start}" end="{end}"/>'
    '</c:calendar-data></d:prop><c:filter><c:comp-filter name="VCALENDAR">'
    '<c:comp-filter name="VEVENT"><c:time-range start="{start}" end="{end}"/>'
    "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"
)


def ical_stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True)
class DavRequest:
    path: str
    headers: dict[str, str]
    body: str


def caldav_report(fleet: Fleet, h: int, window: tuple[datetime, datetime]) -> DavRequest:
    """Cal.com's busy read over CalDAV: Basic auth with the host id and its feed token."""
    credentials = f"{fleet.host_ids[h]}:{fleet.feed_tokens[h]}".encode()
    return DavRequest(
        f"/dav/calendars/{fleet.host_ids[h]}/busy/",
        {
            "Authorization": "Basic " + base64.b64encode(credentials).decode(),
            "Depth": "1",
            "Content-Type": "application/xml; charset=utf-8",
        },
        CALDAV_QUERY.format(start=ical_stamp(window[0]), end=ical_stamp(window[1])),
    )


def ics_path(fleet: Fleet, h: int) -> str:
    return f"/feeds/{fleet.host_ids[h]}/{fleet.feed_tokens[h]}.ics"


def ical_spans(texts: list[str], window: tuple[datetime, datetime]) -> list[tuple[str, str]]:
    """Merged busy time of iCalendar texts (flattened UTC VEVENTs), clipped to the window."""
    from icalendar import Calendar

    spans = []
    for text in texts:
        for event in Calendar.from_ical(text).walk("VEVENT"):
            start = max(event.decoded("DTSTART"), window[0])
            end = min(event.decoded("DTEND"), window[1])
            if start < end:
                spans.append((rfc3339(start), rfc3339(end)))
    return merged(spans)


def report_calendar_data(xml: bytes) -> list[str]:
    from defusedxml.ElementTree import fromstring

    root = fromstring(xml)
    found = root.iter("{urn:ietf:params:xml:ns:caldav}calendar-data")
    return [element.text or "" for element in found]


@dataclass(frozen=True)
class BookingReads:
    """What booking tools ask, through a Flask test client: Cal.com's CalDAV busy read (the
    calendar-query REPORT) and the ICS feed, and `/busy` to compare them with."""

    fleet: Fleet
    client: Any

    def busy(self, h: int, window: tuple[datetime, datetime]) -> list[tuple[str, str]]:
        answer = self.client.get(
            busy_path(self.fleet.host_ids[h], window),
            headers={"Authorization": f"Bearer {self.fleet.tokens[h]}"},
        )
        expect_ok(answer.status_code, answer.data, "busy")
        return [(b["start"], b["end"]) for b in answer.json["busy"]]

    def report_answer(self, h: int, window: tuple[datetime, datetime]) -> bytes:
        dav = caldav_report(self.fleet, h, window)
        answer = self.client.open(dav.path, method="REPORT", headers=dav.headers, data=dav.body)
        expect_ok(answer.status_code, answer.data, "CalDAV REPORT", ok=207)
        return bytes(answer.data)

    def feed_answer(self, h: int) -> bytes:
        answer = self.client.get(ics_path(self.fleet, h))
        expect_ok(answer.status_code, answer.data, "ICS feed")
        return bytes(answer.data)

    def mismatched(self, rng: random.Random, checks: int, now: datetime) -> int:
        """Of `checks` random hosts and windows inside the feed's (now - 1 day .. now + 90
        days), how many answer other than `/busy` over CalDAV or the ICS feed."""
        differing = 0
        for _ in range(checks):
            h = rng.randrange(len(self.fleet.host_ids))
            window = random_window(rng, now + timedelta(days=1))
            expected = self.busy(h, window)
            over_caldav = ical_spans(report_calendar_data(self.report_answer(h, window)), window)
            over_ics = ical_spans([self.feed_answer(h).decode()], window)
            differing += over_caldav != expected or over_ics != expected
        return differing


@dataclass(frozen=True)
class HttpBookingReads:
    """The booking tools' reads over HTTP, through a requests session to the web process:
    the CalDAV REPORT (Basic auth) and the ICS feed (no headers)."""

    fleet: Fleet
    session: requests.Session
    web_url: str

    def report(self, h: int, window: tuple[datetime, datetime]) -> None:
        dav = caldav_report(self.fleet, h, window)
        answer = self.session.request(
            "REPORT", self.web_url + dav.path, headers=dav.headers, data=dav.body, timeout=30
        )
        expect_ok(answer.status_code, answer.text, "CalDAV REPORT", ok=207)

    def feed(self, h: int) -> None:
        answer = self.session.get(self.web_url + ics_path(self.fleet, h), timeout=30)
        expect_ok(answer.status_code, answer.text, "ICS feed")


def measure_booking_tools(size: Size, fleet: Fleet, client: Any, report: Report) -> None:
    """Server time of what booking tools ask: the CalDAV calendar-query REPORT for 14 days
    (Cal.com's CalDAV app) and the whole 90-day ICS feed (its ICS-feed app), in-process like
    the busy read; first checked to give the same busy time as `/busy`."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    reads = BookingReads(fleet, client)
    checks = min(50, size.server_requests)
    mismatched = reads.mismatched(rng, checks, now)
    report.value("booking_tool_answers_compared", checks)
    report.value("booking_tool_answers_mismatched", mismatched)
    if mismatched:
        raise SystemExit(f"{mismatched} of {checks} CalDAV/ICS answers differ from /busy")

    def caldav_call(h: int) -> Callable[[], Any]:
        window = random_window(rng, now)
        return lambda: reads.report_answer(h, window)

    def ics_call(h: int) -> Callable[[], Any]:
        return lambda: reads.feed_answer(h)

    def pick() -> int:
        return rng.randrange(size.hosts)

    timed([caldav_call(pick()) for _ in range(size.warmup_requests)])
    report_latency(
        report,
        "caldav_report_server",
        timed([caldav_call(pick()) for _ in range(size.server_requests)]),
    )
    timed([ics_call(pick()) for _ in range(size.warmup_requests)])
    report_latency(
        report, "ics_server", timed([ics_call(pick()) for _ in range(size.server_requests)])
    )


def measure_server(size: Size, fleet: Fleet, report: Report) -> None:
    from models.busy_queries import host_busy
    from models.db import session_factory
    from webhook import create_app

    client = create_app().test_client()
    rng = random.Random(3)
    now = datetime.now(UTC)

    def request(h: int) -> Callable[[], Any]:
        path = busy_path(fleet.host_ids[h], random_window(rng, now))
        headers = {"Authorization": f"Bearer {fleet.tokens[h]}"}

        def call() -> None:
            answer = client.get(path, headers=headers)
            expect_ok(answer.status_code, answer.data, path)
            if answer.json["stale"]:
                raise SystemExit(f"{path}: a calendar is stale; freshness setup is wrong")

        return call

    def pick() -> int:
        return rng.randrange(size.hosts)

    timed([request(pick()) for _ in range(size.warmup_requests)])
    wall, cpu = timed_with_cpu([request(pick()) for _ in range(size.server_requests)])
    report_latency(report, "server", wall)
    report.value("server_cpu_p50_ms", percentile(cpu, 50), "ms")
    report.value("server_cpu_p99_ms", percentile(cpu, 99), "ms")

    session = session_factory()()

    def query(h: int) -> Callable[[], Any]:
        start, end = random_window(rng, now)
        return lambda: (host_busy(session, fleet.host_ids[h], start, end), session.rollback())

    report_latency(report, "query", timed([query(pick()) for _ in range(size.server_requests)]))
    session.close()
    measure_booking_tools(size, fleet, client, report)


def measure_http(size: Size, fleet: Fleet, web_url: str, emulator_url: str, report: Report) -> None:
    rng = random.Random(5)
    now = datetime.now(UTC)
    ours, theirs = requests.Session(), requests.Session()

    def ask(client: requests.Session, method: str, url: str, token: str, what: str, **body):
        answer = client.request(
            method, url, headers={"Authorization": f"Bearer {token}"}, timeout=30, **body
        )
        expect_ok(answer.status_code, answer.text, what)
        return answer.json()

    def ask_ours(h: int, window: tuple[datetime, datetime]) -> dict[str, Any]:
        url = web_url + busy_path(fleet.host_ids[h], window)
        return ask(ours, "GET", url, fleet.tokens[h], "calsync busy")

    def ask_ours_google_shaped(h: int, window: tuple[datetime, datetime]) -> dict[str, Any]:
        """calsync's `POST /v1/freeBusy`: Google's request and answer shapes, per calendar."""
        body = freebusy_body(fleet.google_ids[h], window)
        return ask(
            ours, "POST", web_url + "/v1/freeBusy", fleet.tokens[h], "calsync freeBusy", json=body
        )

    def ask_emulator(h: int, window: tuple[datetime, datetime]) -> dict[str, Any]:
        body = freebusy_body(fleet.google_ids[h], window)
        url = emulator_url + "/calendar/v3/freeBusy"
        return ask(theirs, "POST", url, fleet.access_tokens[h], "emulator freeBusy", json=body)

    # Same answers: for sampled hosts, the emulator's busy (united over the 5 calendars) is
    # our merged host busy (sampled hosts have no manual blocks), and our Google-shaped
    # freeBusy answers each calendar exactly as the emulator does.
    questions = [(rng.randrange(size.baseline_hosts), random_window(rng, now)) for _ in range(200)]
    mismatched = 0
    intervals = 0
    for h, window in questions:
        ours_busy = [(b["start"], b["end"]) for b in ask_ours(h, window)["busy"]]
        google = ask_emulator(h, window)["calendars"]
        theirs_busy = merged([(b["start"], b["end"]) for c in google.values() for b in c["busy"]])
        shaped = ask_ours_google_shaped(h, window)["calendars"]
        same_per_calendar = all(
            [(b["start"], b["end"]) for b in shaped[gid]["busy"]]
            == [(b["start"], b["end"]) for b in google[gid]["busy"]]
            for gid in fleet.google_ids[h]
        )
        intervals += len(ours_busy)
        mismatched += ours_busy != theirs_busy or not same_per_calendar
    report.value("answers_compared", len(questions))
    report.value("answers_mismatched", mismatched)
    report.value("busy_intervals_per_answer", intervals / len(questions))
    if mismatched:
        raise SystemExit(f"{mismatched} of {len(questions)} answers differ from the emulator's")

    warm = [
        (rng.randrange(size.hosts), random_window(rng, now)) for _ in range(size.warmup_requests)
    ]
    timed([lambda q=q: ask_ours(*q) for q in warm])
    load = [(rng.randrange(size.hosts), random_window(rng, now)) for _ in range(size.http_requests)]
    report_latency(report, "http", timed([lambda q=q: ask_ours(*q) for q in load]))

    # Booking tools over HTTP.
    tools = HttpBookingReads(fleet, ours, web_url)
    timed([lambda q=q: tools.report(*q) for q in warm])
    report_latency(
        report, "caldav_report_http", timed([lambda q=q: tools.report(*q) for q in load])
    )
    timed([lambda q=q: tools.feed(q[0]) for q in warm])
    report_latency(report, "ics_http", timed([lambda q=q: tools.feed(q[0]) for q in load]))

    # The baseline question set: sampled hosts only, asked of both sides alike.
    same = [
        (rng.randrange(size.baseline_hosts), random_window(rng, now))
        for _ in range(size.baseline_requests)
    ]
    timed([lambda q=q: ask_emulator(*q) for q in same[: size.warmup_requests]])
    timed([lambda q=q: ask_ours_google_shaped(*q) for q in same[: size.warmup_requests]])
    # Interleaved, question by question, so the machine's ups and downs hit all sides alike.
    ours_same, ours_shaped, baseline = [], [], []
    for q in same:
        ours_same += timed([lambda q=q: ask_ours(*q)])
        ours_shaped += timed([lambda q=q: ask_ours_google_shaped(*q)])
        baseline += timed([lambda q=q: ask_emulator(*q)])
    report_latency(report, "http_same_questions", ours_same)
    report_latency(report, "http_freebusy_same_questions", ours_shaped)
    report_latency(report, "baseline_emulator_freebusy", baseline)
    for p in (50, 99):
        report.ratio(f"baseline_over_ours_p{p}", percentile(baseline, p), percentile(ours_same, p))
    for p in (50, 99):
        report.ratio(
            f"baseline_over_ours_freebusy_p{p}", percentile(baseline, p), percentile(ours_shaped, p)
        )
    ours.close()
    theirs.close()


def main() -> int:
    args = parser(__doc__.splitlines()[0]).parse_args()
    size = SMOKE if args.smoke else FULL
    report = Report("busy_read", smoke=args.smoke)
    report.header()
    with bench_stack("busyread", keep_logs=args.keep_logs) as stack:
        fleet = load(size, stack, report)
        # The machine's load around the measurements: p99s follow it, CPU times much less.
        report.value("load_average_1min_before", os.getloadavg()[0])
        measure_server(size, fleet, report)
        stack.start_web()
        stack.wait_ready()
        measure_http(size, fleet, stack.web_url, stack.emulator_url, report)
        report.value("load_average_1min_after", os.getloadavg()[0])
    report.bar(
        "server p99 ms (host busy, 14 days, 5 calendars)",
        report.values["server_p99_ms"],
        BAR_SERVER_P99_MS,
        at_least=False,
    )
    report.bar(
        "HTTP p99 ms (host busy, 14 days, 5 calendars)",
        report.values["http_p99_ms"],
        BAR_HTTP_P99_MS,
        at_least=False,
    )
    report.bar(
        "CalDAV REPORT server p99 ms (calendar-query, 14 days, 5 calendars)",
        report.values["caldav_report_server_p99_ms"],
        BAR_CALDAV_REPORT_SERVER_P99_MS,
        at_least=False,
    )
    report.bar(
        "ICS feed server p99 ms (90 days, 5 calendars)",
        report.values["ics_server_p99_ms"],
        BAR_ICS_SERVER_P99_MS,
        at_least=False,
    )
    return report.finish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
