"""Fixtures for outbound webhooks: a receiver on a real HTTP server that verifies every
delivery with the standardwebhooks package, and a driver that runs the outbound tasks in
this process in the order their messages were sent (the broker stands aside)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import update
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from werkzeug.wrappers import Request, Response

from core.settings import Settings, configure
from models import WebhookDelivery
from models.db import session_scope
from tests.support.http_server import serving
from worker import enqueue, fan_out_gate, outbound_tasks


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    event: dict[str, Any] | None  # verified and parsed; None if no secret verified it


@dataclass
class Receiver:
    """A webhook receiver. `answers` are the statuses of the next requests (then 204);
    an int status, "slow" (sleep past the timeout) or ("redirect", url)."""

    url: str = ""
    secrets: list[str] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wsgi(self, environ: dict, start_response: Callable) -> Any:
        request = Request(environ)
        body = request.get_data()
        headers = {k.lower(): v for k, v in request.headers.items()}
        event = None
        for secret in self.secrets:
            try:
                event = Webhook(secret).verify(body, headers)
                break
            except WebhookVerificationError:
                continue
        with self.lock:
            self.received.append(Received(headers, body, event))
            answer = self.answers.pop(0) if self.answers else 204
        if answer == "slow":
            time.sleep(2.5)
            answer = 204
        if isinstance(answer, tuple):
            return Response(status=302, headers={"Location": answer[1]})(environ, start_response)
        return Response(status=answer)(environ, start_response)

    def events(self) -> list[dict[str, Any]]:
        """Every verified event received, in arrival order."""
        with self.lock:
            return [r.event for r in self.received if r.event is not None]

    def unverified(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.event is None]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with serving(receiver.wsgi) as url:
        receiver.url = url + "/hooks"
        yield receiver


@pytest.fixture
def outbound_settings(settings: Settings, db: None) -> Iterator[Settings]:
    configured = dataclasses.replace(settings, outbound_coalesce_ms=0, outbound_timeout_seconds=1)
    configure(configured)
    yield configured
    configure(settings)


@dataclass
class Driver:
    """The outbound messages sent, run here one after the other once their countdown is
    over (a message not yet due stays queued, as in a broker)."""

    messages: list[tuple[float, str, Any]] = field(default_factory=list)

    def fan_out(self, host_id: int | None, countdown: float = 0.0) -> None:
        self.messages.append((time.monotonic() + countdown, "fan_out", host_id))

    def deliver(self, endpoint_id: str, countdown: float = 0.0) -> None:
        self.messages.append((time.monotonic() + countdown, "deliver", endpoint_id))

    def kinds(self) -> list[tuple[str, Any]]:
        return [(kind, argument) for _due, kind, argument in self.messages]

    def run(self, limit: int = 500) -> int:
        ran = 0
        while ran < limit:
            due = [m for m in self.messages if m[0] <= time.monotonic()]
            if not due:
                return ran
            self.messages.remove(due[0])
            _at, kind, argument = due[0]
            if kind == "fan_out":
                outbound_tasks.outbound_fan_out(argument)
            else:
                outbound_tasks.outbound_deliver(argument)
            ran += 1
        return ran

    def elapse_backoff(self) -> None:
        """Every pending delivery due now (its backoff over), then the sweep."""
        with session_scope() as session:
            session.execute(update(WebhookDelivery).values(next_attempt_at=datetime.now(UTC)))
        self.sweep()

    def sweep(self) -> None:
        outbound_tasks.outbound_sweep()
        self.run()


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch, outbound_settings: Settings) -> Driver:
    driver = Driver()
    monkeypatch.setattr(enqueue, "enqueue_outbound_fan_out", driver.fan_out)
    fan_out_gate.reset()  # no message "still waiting" from before
    monkeypatch.setattr(outbound_tasks, "enqueue_outbound_delivery", driver.deliver)
    from webhook import api_webhook_endpoints

    monkeypatch.setattr(api_webhook_endpoints, "enqueue_outbound_delivery", driver.deliver)
    monkeypatch.setattr(outbound_tasks, "SWEEP_GRACE", outbound_tasks.timedelta(0))
    return driver


def body_of(received: Received) -> dict[str, Any]:
    return json.loads(received.body)
