"""Issue 16 on real processes (web, worker, beat, the Google emulator): a receiver in this
test verifies every delivery with the standardwebhooks package.

One stack, one long scenario: a random sequence of Google changes, manual blocks and busy
policy changes, with `/busy` snapshots at quiet moments: every instant whose answer differs
between two snapshots lies inside the `changed` ranges delivered in between; a change that
does not alter busy time sends nothing. Then the faults: the receiver redirects to the
metadata address (not followed), answers 500 and times out, then recovers (every event
arrives, in order per host); the worker is SIGKILLed while it sends (the delivery still
arrives: a restarted worker or beat's sweep sends it again).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from werkzeug.wrappers import Request, Response

from core.settings import Settings
from models import OutboxEvent, WebhookDelivery
from models.db import session_scope
from tests.backends import Backend
from tests.conftest import TEST_ADMIN_TOKEN
from tests.support.calendar_edits import CalendarEditor
from tests.support.http_server import serving

from .conftest import Stack, attach_watched, running_stack, wait_for, wait_idle, watching_and_synced

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
TIMEOUT_SECONDS = 2
STEPS = 10


@pytest.fixture(scope="module")
def stack(
    backend: Backend, base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(
        backend,
        base_settings,
        tmp_path_factory,
        "e2e-outbound-logs",
        worker_concurrency=3,
        lease_seconds=5,
        sweep_after_seconds=3,
        outbound_coalesce_ms=200,
        outbound_timeout_seconds=TIMEOUT_SECONDS,
        outbound_first_retry_seconds=2,  # the faults' retries in seconds (default 5, doubling)
    ) as running:
        yield running


class Receiver:
    """Verifies each request with the endpoint's secret; answers from a plan (then 204)."""

    def __init__(self) -> None:
        self.secret = ""
        self.plan: list[Any] = []
        self.accepted: list[dict[str, Any]] = []  # verified events answered 2xx, in order
        self.requests = 0
        self.forged = 0
        self.lock = threading.Lock()
        self.in_flight = threading.Event()

    def wsgi(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        body = request.get_data()
        try:
            event = Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            with self.lock:
                self.forged += 1
            return Response(status=401)(environ, start_response)
        with self.lock:
            self.requests += 1
            answer = self.plan.pop(0) if self.plan else 204
        if answer == "slow":
            time.sleep(TIMEOUT_SECONDS + 1)
            answer = 204  # nobody is listening any more: not accepted
            return Response(status=answer)(environ, start_response)
        if answer == "hold":  # the sender is killed while it waits here
            self.in_flight.set()
            time.sleep(TIMEOUT_SECONDS - 0.5)
            return Response(status=204)(environ, start_response)
        if isinstance(answer, tuple):
            return Response(status=302, headers={"Location": answer[1]})(environ, start_response)
        if 200 <= answer < 300:
            with self.lock:
                self.accepted.append(event)
        return Response(status=answer)(environ, start_response)

    def busy_events(self, host_id: int, since: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [
                e
                for e in self.accepted[since:]
                if e["type"] == "busy.changed" and e["hostId"] == host_id
            ]


def api(stack: Stack, method: str, path: str, **kwargs: Any) -> Any:
    answer = requests.request(method, stack.web_url + path, headers=ADMIN, timeout=10, **kwargs)
    assert answer.status_code < 300, (method, path, answer.status_code, answer.text)
    return answer.json() if answer.content else None


def outbox_drained() -> bool:
    with session_scope() as session:
        unfanned = session.scalar(select(func.count()).where(OutboxEvent.fanned_out_at.is_(None)))
        pending = session.scalar(select(func.count()).where(WebhookDelivery.status == "pending"))
    return not unfanned and not pending


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


Span = tuple[datetime, datetime]


def differing(before: list[Span], after: list[Span]) -> list[Span]:
    """Where exactly one of two merged busy lists is busy (the boundary points of both)."""
    points = sorted({p for span in before + after for p in span})

    def busy(spans: list[Span], at: datetime) -> bool:
        return any(start <= at < end for start, end in spans)

    return [(a, b) for a, b in itertools.pairwise(points) if busy(before, a) != busy(after, a)]


def covered(span: Span, ranges: list[Span]) -> bool:
    """Whether every instant of `span` lies inside the union of `ranges`."""
    cursor, end = span
    for start, stop in sorted(ranges):
        if start <= cursor < stop:
            cursor = stop
        if cursor >= end:
            return True
    return cursor >= end


def test_outbound_webhooks_on_real_processes(live: Stack) -> None:
    receiver = Receiver()
    with serving(receiver.wsgi) as base:
        endpoint = api(live, "POST", "/v1/webhook-endpoints", json={"url": base + "/hooks"})
        receiver.secret = endpoint["secret"]
        cal = attach_watched(live, "outbound@example.com")
        host = cal.host_id
        wait_for(lambda: watching_and_synced([cal.calendar_id]), 30, "the first sync", live)
        window_start = datetime.now(UTC).replace(microsecond=0)
        window = {
            "timeMin": window_start.isoformat(),
            "timeMax": (window_start + timedelta(days=45)).isoformat(),
        }

        def quiet_snapshot() -> list[Span]:
            wait_idle(timeout=30)
            wait_for(outbox_drained, 30, "the outbox to drain", live)
            answer = api(live, "GET", f"/v1/hosts/{host}/busy", params=window)
            return [(parse(i["start"]), parse(i["end"])) for i in answer["busy"]]

        rng = random.Random(16)
        editor = CalendarEditor(live.emulator.control, cal.google_calendar_id, rng)
        blocks: list[int] = []
        policy = {"declinedBusy": False, "tentativeBusy": True}
        previous = quiet_snapshot()
        mark = len(receiver.accepted)
        checked = 0
        for _step in range(STEPS):
            for _ in range(rng.randint(1, 3)):
                roll = rng.random()
                if roll < 0.6:
                    editor.random_edit()
                elif roll < 0.8 or not blocks:
                    day = window_start + timedelta(
                        days=rng.randint(1, 30), hours=rng.randint(0, 20)
                    )
                    created = api(
                        live,
                        "POST",
                        f"/v1/hosts/{host}/blocks",
                        json={
                            "start": day.isoformat(),
                            "end": (day + timedelta(minutes=rng.choice([30, 90]))).isoformat(),
                        },
                    )
                    blocks.append(created["id"])
                elif roll < 0.9:
                    api(live, "DELETE", f"/v1/hosts/{host}/blocks/{blocks.pop()}")
                else:
                    key = rng.choice(list(policy))
                    policy[key] = not policy[key]
                    api(live, "PATCH", f"/v1/hosts/{host}", json={"busyPolicy": policy})
            current = quiet_snapshot()
            delivered = [
                (parse(c["start"]), parse(c["end"]))
                for e in receiver.busy_events(host, mark)
                for c in e["changed"]
            ]
            for span in differing(previous, current):
                assert covered(span, delivered), (span, delivered)
                checked += 1
            previous, mark = current, len(receiver.accepted)
        assert checked, "the random sequence never changed busy time"

        # A change that does not alter busy time sends nothing.
        free_at = window_start + timedelta(days=3, hours=5)
        live.emulator.control.insert_event(
            cal.google_calendar_id,
            {
                "summary": "free",
                "transparency": "transparent",
                "start": {"dateTime": free_at.isoformat()},
                "end": {"dateTime": (free_at + timedelta(hours=1)).isoformat()},
            },
        )
        quiet_snapshot()
        time.sleep(1)
        assert receiver.busy_events(host, mark) == []

        # Faults: a redirect to the metadata address, then a timeout, then recovery.
        receiver.plan = [("redirect", "http://169.254.169.254/latest/meta-data/"), "slow"]
        before_faults = len(receiver.accepted)
        for hour in (1, 3, 5):
            at = window_start + timedelta(days=41, hours=hour)
            span = {"start": at.isoformat(), "end": (at + timedelta(hours=1)).isoformat()}
            api(live, "POST", f"/v1/hosts/{host}/blocks", json=span)
            time.sleep(0.4)  # past the coalescing window: one event each

        def first_attempt_redirected() -> bool:
            deliveries = api(live, "GET", f"/v1/webhook-endpoints/{endpoint['id']}/deliveries")
            return any(d["lastStatusCode"] == 302 for d in deliveries["deliveries"])

        wait_for(first_attempt_redirected, 20, "the redirected attempt", live)
        [redirected] = [
            d
            for d in api(live, "GET", f"/v1/webhook-endpoints/{endpoint['id']}/deliveries")[
                "deliveries"
            ]
            if d["lastStatusCode"] == 302
        ]
        assert redirected["status"] == "pending" and "never followed" in redirected["lastError"]
        expected = [
            (window_start + timedelta(days=41, hours=h)).isoformat().replace("+00:00", "Z")
            for h in (1, 3, 5)
        ]

        def recovered() -> list[str]:
            # Changes that waited behind the failing one may go out merged: their ranges.
            return [
                c["start"] for e in receiver.busy_events(host, before_faults) for c in e["changed"]
            ]

        wait_for(lambda: len(recovered()) >= 3, 60, "every event after the recovery", live)
        assert recovered() == expected

        # The outbound worker SIGKILLed while it sends: the delivery still arrives (after a
        # 500).
        receiver.plan = ["hold", 500]
        receiver.in_flight.clear()
        before_kill = len(receiver.accepted)
        at = window_start + timedelta(days=42)
        api(
            live,
            "POST",
            f"/v1/hosts/{host}/blocks",
            json={"start": at.isoformat(), "end": (at + timedelta(hours=2)).isoformat()},
        )
        assert receiver.in_flight.wait(20), "the delivery never started"
        sender = live.outbound
        assert sender is not None
        sender.kill()
        live.restart(sender).wait_ready()
        wait_for(
            lambda: len(receiver.busy_events(host, before_kill)) >= 1,
            40,
            "the delivery interrupted by the kill",
            live,
        )
        [after_kill] = receiver.busy_events(host, before_kill)[:1]
        assert after_kill["changed"][0]["start"] == at.isoformat().replace("+00:00", "Z")

        # Order per host over the whole run: accepted events never go back.
        ids = [int(e["id"].removeprefix("evt_")) for e in receiver.busy_events(host)]
        assert ids == sorted(ids)
        assert receiver.forged == 0


def nice_of_threads(pid: int) -> set[int]:
    """The nice value of each thread of a process (field 19 of /proc/…/task/…/stat)."""
    values = set()
    for task in (Path("/proc") / str(pid) / "task").iterdir():
        stat = (task / "stat").read_text()
        values.add(int(stat.rsplit(")", 1)[1].split()[16]))
    return values


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux's /proc")
def test_the_outbound_worker_runs_below_the_sync_workers_priority(live: Stack) -> None:
    # CALSYNC_OUTBOUND_NICE (10): on a shared machine deliveries take the CPU syncing
    # leaves, never the other way round; every thread of its pool inherits it.
    by_kind = {process.kind: process.pid for process in live.processes}
    assert by_kind["outbound"] is not None and by_kind["worker"] is not None
    assert nice_of_threads(by_kind["outbound"]) == {live.settings.outbound_nice} == {10}
    assert nice_of_threads(by_kind["worker"]) == {0}
