"""From the outbox to deliveries: a host's outbox rows, once the newest is older than the
coalescing window, are merged (consecutive busy.changed rows become one event carrying the
union of their ranges) and get one delivery per endpoint that receives the host.

The outbox row is the truth: a fan-out that never ran (its message lost, its worker killed)
is done by beat's sweep; two that run at once are harmless, as each host's rows are claimed
with a conditional UPDATE and only one claim wins.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from models.outbound import (
    DeliveryStatus,
    EventType,
    OutboxEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from models.outbound_endpoints import live_endpoints, receives
from models.outbox_writer import iso
from rules.busy_changes import union_of

BATCH = 2000  # outbox rows read per fan-out round


@dataclass
class FanOutResult:
    endpoints: set[str] = field(default_factory=set)  # endpoints with deliveries to send
    wait_seconds: float | None = None  # a host still inside its window: come back then
    events: int = 0


def _spans(event: OutboxEvent) -> list[tuple[datetime, datetime]]:
    return [
        (datetime.fromisoformat(c["start"]), datetime.fromisoformat(c["end"]))
        for c in event.payload.get("changed", [])
    ]


def _merge_into(survivor: OutboxEvent, later: OutboxEvent) -> None:
    """`later` folded into `survivor`: the union of ranges, the later commit as asOf."""
    changed = union_of([_spans(survivor), _spans(later)])
    payload = dict(survivor.payload)
    payload["changed"] = [{"start": iso(s), "end": iso(e)} for s, e in changed]
    payload["asOf"] = iso(later.committed_at)
    causes = list(dict.fromkeys([*payload.get("causes", [survivor.cause]), later.cause]))
    payload["causes"] = causes
    survivor.payload = payload
    if survivor.calendar_id != later.calendar_id:
        survivor.calendar_id = None
    later.merged_into = survivor.id


def fan_out(
    session: Session,
    now: datetime,
    coalesce: timedelta,
    *,
    host_id: int | None = None,
) -> FanOutResult:
    """Fan out every host (or just `host_id`) whose newest outbox row is at least
    `coalesce` old. Commits nothing itself: the caller's transaction holds it all."""
    result = FanOutResult()
    query = select(OutboxEvent).where(OutboxEvent.fanned_out_at.is_(None))
    if host_id is not None:
        query = query.where(OutboxEvent.host_id == host_id)
    rows = list(session.scalars(query.order_by(OutboxEvent.id).limit(BATCH)))
    by_host: dict[int | None, list[OutboxEvent]] = defaultdict(list)
    for row in rows:
        by_host[row.host_id].append(row)
    endpoints: list[WebhookEndpoint] | None = None
    for host, events in by_host.items():
        age = now - max(event.committed_at for event in events)
        if age < coalesce:
            remaining = (coalesce - age).total_seconds()
            result.wait_seconds = min(result.wait_seconds or remaining, remaining)
            continue
        nested = session.begin_nested()
        claimed: CursorResult = session.execute(  # type: ignore[assignment]
            update(OutboxEvent)
            .where(
                OutboxEvent.id.in_([event.id for event in events]),
                OutboxEvent.fanned_out_at.is_(None),
            )
            .values(fanned_out_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != len(events):
            # Another fan-out took (some of) them first: leave the host to it.
            nested.rollback()
            continue
        survivors: list[OutboxEvent] = []
        for event in events:
            event.fanned_out_at = now
            busy = event.type == EventType.BUSY_CHANGED
            if survivors and busy and survivors[-1].type == EventType.BUSY_CHANGED:
                _merge_into(survivors[-1], event)
            else:
                survivors.append(event)
        if endpoints is None:
            endpoints = live_endpoints(session)
        receiving = [e for e in endpoints if receives(e, host)]
        for endpoint in receiving:
            deliveries = [
                WebhookDelivery(
                    endpoint_id=endpoint.id,
                    event_id=event.id,
                    host_id=host,
                    status=str(DeliveryStatus.PENDING),
                    attempts=0,
                    next_attempt_at=now,
                    created_at=event.committed_at,
                )
                for event in survivors
            ]
            session.add_all(deliveries)
            session.flush()
            if deliveries:
                result.endpoints.add(endpoint.id)
        result.events += len(survivors)
        nested.commit()
    return result


def outbox_depth(session: Session, now: datetime) -> tuple[int, int, float, float]:
    """Outbox rows not yet fanned out, deliveries pending, and the age in seconds of the
    oldest of each (0 when there is none)."""
    unfanned, oldest_event = session.execute(
        select(func.count(), func.min(OutboxEvent.committed_at)).where(
            OutboxEvent.fanned_out_at.is_(None)
        )
    ).one()
    pending, oldest_delivery = session.execute(
        select(func.count(), func.min(WebhookDelivery.created_at)).where(
            WebhookDelivery.status == str(DeliveryStatus.PENDING)
        )
    ).one()
    return (
        int(unfanned or 0),
        int(pending or 0),
        _age(oldest_event, now),
        _age(oldest_delivery, now),
    )


def _age(value: datetime | str | None, now: datetime) -> float:
    return 0.0 if value is None else max(0.0, (now - _aware(value)).total_seconds())


def _aware(value: datetime | str) -> datetime:
    # Aggregates bypass the column type on SQLite: naive UTC or text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
