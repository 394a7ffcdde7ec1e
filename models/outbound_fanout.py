"""From the outbox to deliveries: a host's outbox rows, once the newest is older than the
coalescing window, are merged (consecutive busy.changed rows become one event carrying the
union of their ranges) and get one delivery per endpoint that receives the host.

The outbox row is the truth: a fan-out that never ran (its message lost, its worker killed)
is done by beat's sweep; two that run at once are harmless, as each host's rows are claimed
with a conditional UPDATE and only one claim wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.orm import Session

from models.db import session_scope
from models.outbound import (
    DELIVERIES,
    OUTBOX,
    DeliveryStatus,
    EventType,
    OutboxEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from models.outbound_endpoints import live_endpoints, receives
from models.outbox_writer import iso
from rules.busy_changes import union_of

BATCH = 2000  # hosts read per fan-out round


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


def fan_out(now: datetime, coalesce: timedelta) -> FanOutResult:
    """Fan out every host whose newest outbox row is at least `coalesce` old.

    Hosts go in chunks, each its own transaction (its own session) of a few statements
    whatever its size, and never lock a host's row, so busy writers never wait for a
    fan-out. Two fan-outs at once are harmless: each row is claimed by one conditional
    UPDATE, and a host's rows claimed by two fan-outs become two events, still in order."""
    result = FanOutResult()
    query = select(OutboxEvent.host_id, func.max(OutboxEvent.committed_at)).where(
        OutboxEvent.fanned_out_at.is_(None)
    )
    with session_scope() as session:
        pending = session.execute(query.group_by(OutboxEvent.host_id).limit(BATCH)).all()
        endpoints = live_endpoints(session) if pending else []
        session.expunge_all()  # read-only from here on, across the chunks' sessions
    ready: list[int | None] = []
    for host, newest in pending:
        if not _wait_for(result, now - _aware(newest), coalesce):
            ready.append(host)
    for start in range(0, len(ready), HOSTS_PER_TRANSACTION):
        with session_scope() as session:
            _fan_out_chunk(
                session, ready[start : start + HOSTS_PER_TRANSACTION], endpoints, now, result
            )
    return result


# Hosts per transaction: the statements are the same few for 1 host or 200; the rows'
# locks are held for one short transaction.
HOSTS_PER_TRANSACTION = 200


def _fan_out_chunk(
    session: Session,
    hosts: list[int | None],
    endpoints: list[WebhookEndpoint],
    now: datetime,
    result: FanOutResult,
) -> None:
    # Claim the hosts' rows not yet fanned out (a concurrent fan-out's rows are skipped
    # once it commits: the condition is checked again on each row).
    of_hosts = [OUTBOX.c.host_id.in_([h for h in hosts if h is not None])]
    if None in hosts:
        of_hosts.append(OUTBOX.c.host_id.is_(None))
    claimed = list(
        session.scalars(
            update(OUTBOX)
            .where(OUTBOX.c.fanned_out_at.is_(None), or_(*of_hosts))
            .values(fanned_out_at=now)
            .returning(OUTBOX.c.id)
        )
    )
    if not claimed:
        return
    events = session.scalars(
        select(OutboxEvent).where(OutboxEvent.id.in_(claimed)).order_by(OutboxEvent.id)
    ).all()
    by_host: dict[int | None, list[OutboxEvent]] = {}
    for event in events:
        by_host.setdefault(event.host_id, []).append(event)
    rows: list[dict[str, Any]] = []
    for host, host_events in by_host.items():
        survivors = _coalesced(host_events)
        rows.extend(
            _delivery_row(endpoint, event, now)
            for endpoint in endpoints
            if receives(endpoint, host)
            for event in survivors
        )
        result.events += len(survivors)
    session.flush()  # the merges (rare: only a host's rows within one window)
    if rows:
        session.execute(insert(DELIVERIES), rows)
        result.endpoints.update(row["endpoint_id"] for row in rows)


def _coalesced(events: list[OutboxEvent]) -> list[OutboxEvent]:
    """A host's claimed rows, consecutive busy.changed ones merged into the first."""
    survivors: list[OutboxEvent] = []
    for event in events:
        busy = event.type == EventType.BUSY_CHANGED
        if survivors and busy and survivors[-1].type == EventType.BUSY_CHANGED:
            _merge_into(survivors[-1], event)
        else:
            survivors.append(event)
    return survivors


def _delivery_row(endpoint: WebhookEndpoint, event: OutboxEvent, now: datetime) -> dict[str, Any]:
    return {
        "endpoint_id": endpoint.id,
        "event_id": event.id,
        "host_id": event.host_id,
        "status": str(DeliveryStatus.PENDING),
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": event.committed_at,
    }


def _wait_for(result: FanOutResult, age: timedelta, coalesce: timedelta) -> bool:
    """Whether a host is still inside its coalescing window (noting when to come back)."""
    if age >= coalesce:
        return False
    remaining = (coalesce - age).total_seconds()
    result.wait_seconds = min(result.wait_seconds or remaining, remaining)
    return True


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
