"""Outbound webhooks at one instant, read from the database: for the /metrics gauges (at
scrape time) and the built-in alert notifier."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.outbound import EndpointState, WebhookEndpoint
from models.outbound_fanout import outbox_depth


@dataclass(frozen=True)
class OutboundHealth:
    endpoints_by_state: dict[str, int]
    failing: list[tuple[str, str | None]] = field(default_factory=list)  # (id, reason)
    unfanned_events: int = 0
    pending_deliveries: int = 0
    oldest_unfanned_seconds: float = 0.0  # an event not yet turned into deliveries
    oldest_pending_seconds: float = 0.0  # a delivery not yet accepted

    @property
    def depth(self) -> int:
        return self.unfanned_events + self.pending_deliveries


def outbound_health(session: Session, now: datetime) -> OutboundHealth:
    rows = list(
        session.execute(
            select(WebhookEndpoint.id, WebhookEndpoint.state, WebhookEndpoint.state_reason)
        )
    )
    counts = Counter(state for _id, state, _reason in rows)
    unfanned, pending, oldest_event, oldest_delivery = outbox_depth(session, now)
    return OutboundHealth(
        endpoints_by_state={str(state): counts.get(str(state), 0) for state in EndpointState},
        failing=sorted(
            (endpoint_id, reason)
            for endpoint_id, state, reason in rows
            if state == EndpointState.FAILING
        ),
        unfanned_events=unfanned,
        pending_deliveries=pending,
        oldest_unfanned_seconds=oldest_event,
        oldest_pending_seconds=oldest_delivery,
    )
