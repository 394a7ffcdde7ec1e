"""Watch channels and push delivery with Google's headers, retries and injected faults.

Changes only enqueue messages (callers may hold the store lock); worker threads deliver,
so no HTTP call ever happens under a lock.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Any

import requests

from emulator.clock import Clock
from emulator.faults import Faults
from emulator.store import format_updated

RETRY_STATUSES = {500, 502, 503, 504}
DELIVERED_STATUSES = {102, 200, 201, 202, 204}
USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"


@dataclass(slots=True)
class Channel:
    id: str
    token: str | None
    address: str
    calendar_id: str
    resource_id: str
    resource_uri: str
    expiration: datetime
    account: str
    stopped: bool = False
    next_number: int = 1

    def expiration_ms(self) -> str:
        return str(int(self.expiration.timestamp() * 1000))


@dataclass(order=True, slots=True)
class _Message:
    due: float  # time.monotonic()
    order: int
    channel_id: str = field(compare=False)
    number: int = field(compare=False)
    state: str = field(compare=False)  # "sync" or "exists"
    attempt: int = field(compare=False)
    generation: int = field(compare=False)


class PushDispatcher:
    """Channel registry plus a delayed-delivery queue served by worker threads."""

    def __init__(
        self,
        clock: Clock,
        faults: Faults,
        seed: int = 0,
        workers: int = 8,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._clock = clock
        self._faults = faults
        self._cond = threading.Condition()
        self._queue: list[_Message] = []
        self._order = itertools.count()
        self._rng = random.Random(f"{seed}-push")
        self._generation = 0
        self._running = False
        self._threads: list[threading.Thread] = []
        self._workers = workers
        self._timeout = timeout_seconds
        self._in_flight = 0
        # One delivery at a time per channel, so a receiver sees a channel's messages in
        # queue order; messages due while their channel is busy wait here.
        self._busy: set[str] = set()
        self._parked: dict[str, list[_Message]] = {}
        self.channels: dict[str, Channel] = {}
        self._by_calendar: dict[str, list[str]] = {}
        self.deliveries: list[dict[str, Any]] = []

    # ----- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._running:
                return
            self._running = True
        for index in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"emulator-push-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def shutdown(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=self._timeout + 1)
        self._threads.clear()

    def reset(self, seed: int) -> None:
        with self._cond:
            self._generation += 1
            self._queue.clear()
            self._parked.clear()
            self._rng = random.Random(f"{seed}-push")
            self.channels.clear()
            self._by_calendar.clear()
            self.deliveries.clear()

    def idle(self) -> bool:
        """True when nothing is queued or being delivered (tests wait for this)."""
        with self._cond:
            return not self._queue and not self._parked and self._in_flight == 0

    # ----- channels ---------------------------------------------------------------------
    def register(self, channel: Channel) -> None:
        """Add a channel (id must be new) and queue its sync message."""
        with self._cond:
            if channel.id in self.channels:
                raise KeyError(channel.id)
            self.channels[channel.id] = channel
            self._by_calendar.setdefault(channel.calendar_id, []).append(channel.id)
            self._enqueue(channel, "sync")

    def stop(self, channel_id: str, resource_id: str | None, account: str | None) -> bool:
        """Stop a live channel; False when there is no such channel for this caller."""
        with self._cond:
            channel = self.channels.get(channel_id)
            if (
                channel is None
                or channel.stopped
                or (resource_id is not None and resource_id != channel.resource_id)
                or (account is not None and account != channel.account)
            ):
                return False
            channel.stopped = True
            return True

    def stop_calendar(self, calendar_id: str) -> None:
        with self._cond:
            for channel_id in self._by_calendar.pop(calendar_id, []):
                self.channels[channel_id].stopped = True

    def notify(self, calendar_id: str) -> None:
        """A calendar changed: queue an `exists` message for each of its live channels."""
        with self._cond:
            for channel_id in self._by_calendar.get(calendar_id, ()):
                channel = self.channels[channel_id]
                if self._live(channel):
                    self._enqueue(channel, "exists")

    def _live(self, channel: Channel) -> bool:
        return not channel.stopped and channel.expiration > self._clock.now()

    def describe(self) -> list[dict[str, Any]]:
        with self._cond:
            return [
                {
                    "id": c.id,
                    "resourceId": c.resource_id,
                    "resourceUri": c.resource_uri,
                    "calendarId": c.calendar_id,
                    "address": c.address,
                    "account": c.account,
                    "token": c.token,
                    "expiration": c.expiration_ms(),
                    "stopped": c.stopped,
                    "expired": c.expiration <= self._clock.now(),
                    "messagesIssued": c.next_number - 1,
                }
                for c in self.channels.values()
            ]

    def deliveries_since(self, since: int) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(d) for d in self.deliveries[since:]]

    # ----- queueing ---------------------------------------------------------------------
    def _enqueue(self, channel: Channel, state: str) -> None:
        """Caller holds self._cond. Numbers grow per channel even when delivery reorders."""
        number = channel.next_number
        channel.next_number += 1
        config = self._faults.config
        if config.drop_rate > 0 and self._rng.random() < config.drop_rate:
            self._log(channel.id, number, state, 0, "dropped", None)
            return
        copies = (
            2 if config.duplicate_rate > 0 and self._rng.random() < config.duplicate_rate else 1
        )
        for _ in range(copies):
            delay = config.delay_ms / 1000.0
            if config.reorder:
                delay += self._rng.uniform(0, max(config.delay_ms, 200.0) / 1000.0)
            heapq.heappush(
                self._queue,
                _Message(
                    time.monotonic() + delay,
                    next(self._order),
                    channel.id,
                    number,
                    state,
                    1,
                    self._generation,
                ),
            )
        self._cond.notify()

    def _log(
        self,
        channel_id: str,
        number: int,
        state: str,
        attempt: int,
        outcome: str,
        status: int | str | None,
    ) -> None:
        self.deliveries.append(
            {
                "seq": len(self.deliveries),
                "channelId": channel_id,
                "messageNumber": number,
                "resourceState": state,
                "state": outcome,
                "attempt": attempt,
                "status": status,
                "time": format_updated(self._clock.now()),
            }
        )

    # ----- delivery ---------------------------------------------------------------------
    def _work(self) -> None:
        session = requests.Session()
        try:
            while True:
                with self._cond:
                    message = self._next_due()
                    if message is None:
                        return
                    channel = self.channels.get(message.channel_id)
                    if message.generation != self._generation or channel is None:
                        continue
                    if not self._live(channel):
                        self._log(
                            channel.id,
                            message.number,
                            message.state,
                            message.attempt,
                            "skipped",
                            None,
                        )
                        continue
                    headers = self._headers(channel, message)
                    self._in_flight += 1
                    self._busy.add(channel.id)
                status: int | str = "error"
                try:
                    status = self._post(session, channel.address, headers)
                finally:
                    with self._cond:
                        self._in_flight -= 1
                        self._busy.discard(channel.id)
                        for parked in self._parked.pop(channel.id, []):
                            heapq.heappush(self._queue, parked)
                        self._cond.notify_all()
                        self._settle(message, status)
        finally:
            session.close()

    def _next_due(self) -> _Message | None:
        """Caller holds self._cond; blocks until a message is due or shutdown."""
        while self._running:
            if self._queue:
                wait = self._queue[0].due - time.monotonic()
                if wait <= 0:
                    message = heapq.heappop(self._queue)
                    if message.channel_id in self._busy:
                        self._parked.setdefault(message.channel_id, []).append(message)
                        continue
                    return message
                self._cond.wait(timeout=wait)
            else:
                self._cond.wait(timeout=1.0)
        return None

    @staticmethod
    def _headers(channel: Channel, message: _Message) -> dict[str, str]:
        headers = {
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Channel-Expiration": format_datetime(channel.expiration, usegmt=True),
            "X-Goog-Message-Number": str(message.number),
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-State": message.state,
            "X-Goog-Resource-URI": channel.resource_uri,
            "User-Agent": USER_AGENT,
            "Content-Length": "0",
        }
        if channel.token:
            headers["X-Goog-Channel-Token"] = channel.token
        return headers

    def _post(self, session: requests.Session, address: str, headers: dict[str, str]) -> int | str:
        try:
            response = session.post(
                address, data=b"", headers=headers, timeout=self._timeout, allow_redirects=False
            )
            response.close()
            return response.status_code
        except requests.RequestException:
            return "error"

    def _settle(self, message: _Message, status: int | str) -> None:
        """Caller holds self._cond: log the attempt and schedule a retry when due."""
        if message.generation != self._generation:
            return
        config = self._faults.config
        if status in DELIVERED_STATUSES:
            outcome = "delivered"
        elif status in RETRY_STATUSES or status == "error":
            outcome = "retrying" if message.attempt < config.push_max_attempts else "failed"
        else:
            outcome = "failed"
        self._log(
            message.channel_id, message.number, message.state, message.attempt, outcome, status
        )
        if outcome == "retrying":
            backoff = config.push_retry_base_seconds * 2 ** (message.attempt - 1)
            heapq.heappush(
                self._queue,
                _Message(
                    time.monotonic() + backoff,
                    next(self._order),
                    message.channel_id,
                    message.number,
                    message.state,
                    message.attempt + 1,
                    message.generation,
                ),
            )
            self._cond.notify()
