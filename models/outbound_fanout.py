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

from sqlalchemy import ColumnElement, bindparam, func, select, update
from sqlalchemy.orm import Session

from models.bulk_insert import insert_rows
from models.db import session_scope
from models.outbound import (
    DELIVERIES,
    ENDPOINTS,
    OUTBOX,
    OUTBOX_ROWS_BY_ID,
    DeliveryStatus,
    EndpointState,
    EventType,
    OutboxEvent,
    WebhookDelivery,
    covers,
)
from models.outbound_deliveries import event_json
from models.outbox_writer import iso
from rules.busy_changes import union_of

BATCH = 2000  # hosts read per fan-out round
# The normal path (the message sent after the commit) gets this long before beat's sweep
# steps in, so the two rarely do the same work: when they do, the one that claims a host's
# rows second waits for the first's transaction, host after host.
SWEEP_GRACE = timedelta(seconds=5)


@dataclass
class FanOutResult:
    endpoints: set[str] = field(default_factory=set)  # endpoints with deliveries to send
    wait_seconds: float | None = None  # a host still inside its window: come back then
    events: int = 0


@dataclass(slots=True)
class _Claimed:
    """A claimed outbox row, as read (merging changes `payload` and `calendar_id`)."""

    id: int
    type: str
    host_id: int | None
    calendar_id: int | None
    cause: str
    payload: dict[str, Any]
    committed_at: datetime
    merged: bool = False  # another row was folded into this one: its row is rewritten


def _spans(event: _Claimed) -> list[tuple[datetime, datetime]]:
    return [
        (datetime.fromisoformat(c["start"]), datetime.fromisoformat(c["end"]))
        for c in event.payload.get("changed", [])
    ]


def _merge_into(survivor: _Claimed, later: _Claimed) -> None:
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
    survivor.merged = True


# The fan-out's statements, built once (Core, on the tables): under load a fan-out runs
# every coalescing window, and building them, and the ORM's loading of rows, cost more
# CPU than running them.
_PENDING_HOSTS = (
    select(OUTBOX.c.host_id, func.max(OUTBOX.c.committed_at))
    .where(OUTBOX.c.fanned_out_at.is_(None))
    .group_by(OUTBOX.c.host_id)
    .limit(BATCH)
)
_LIVE_ENDPOINTS = (
    select(ENDPOINTS.c.id, ENDPOINTS.c.host_ids)
    .where(ENDPOINTS.c.state != str(EndpointState.DISABLED))
    .order_by(ENDPOINTS.c.id)
)


def _claim(of_hosts: ColumnElement[bool]) -> Any:
    """Mark the rows of `of_hosts` not yet fanned out as fanned out at :now; their ids."""
    return (
        update(OUTBOX)
        .where(OUTBOX.c.fanned_out_at.is_(None), of_hosts)
        .values(fanned_out_at=bindparam("now"))
        .returning(OUTBOX.c.id)
    )


_CLAIM_OF_HOSTS = _claim(OUTBOX.c.host_id.in_(bindparam("hosts", expanding=True)))
_CLAIM_WITHOUT_HOST = _claim(OUTBOX.c.host_id.is_(None))  # pings: no host
_MERGED = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("row_id"))
    .values(payload=bindparam("new_payload"), calendar_id=bindparam("new_calendar_id"))
)
_MERGED_AWAY = (
    update(OUTBOX).where(OUTBOX.c.id == bindparam("row_id")).values(merged_into=bindparam("into"))
)


def fan_out(now: datetime, coalesce: timedelta) -> FanOutResult:
    """Fan out every host whose newest outbox row is at least `coalesce` old.

    Hosts go in chunks, each its own transaction (its own session) of a few statements
    whatever its size, and never lock a host's row, so busy writers never wait for a
    fan-out. Two fan-outs at once are harmless: each row is claimed by one conditional
    UPDATE, and a host's rows claimed by two fan-outs become two events, still in order."""
    result = FanOutResult()
    with session_scope() as session:
        pending = session.execute(_PENDING_HOSTS).all()
        endpoints = (
            [(e.id, e.host_ids) for e in session.execute(_LIVE_ENDPOINTS)] if pending else []
        )
    ready: list[int | None] = []
    for host, newest in pending:
        if not _wait_for(result, now - _aware(newest), coalesce):
            ready.append(host)
    for start in range(0, len(ready), HOSTS_PER_TRANSACTION):
        with session_scope() as session:
            delivered = _fan_out_chunk(
                session, ready[start : start + HOSTS_PER_TRANSACTION], endpoints, now, result
            )
        # Committed, so final: encoded now, and this process's senders (the usual ones)
        # need not read them back (outbound_deliveries.claim_batch).
        for event in delivered:
            event_json(event)
    return result


# Hosts per transaction: the statements are the same few for 1 host or 200; the rows'
# locks are held for one short transaction.
HOSTS_PER_TRANSACTION = 200


def _fan_out_chunk(
    session: Session,
    hosts: list[int | None],
    endpoints: list[tuple[str, list[int] | None]],
    now: datetime,
    result: FanOutResult,
) -> list[_Claimed]:
    """Fan out the hosts' rows; the events that got deliveries."""
    # Claim the hosts' rows not yet fanned out (a concurrent fan-out's rows are skipped
    # once it commits: the condition is checked again on each row).
    with_host = [h for h in hosts if h is not None]
    claimed: list[int] = []
    if with_host:
        claimed += session.scalars(_CLAIM_OF_HOSTS, {"hosts": with_host, "now": now})
    if None in hosts:
        claimed += session.scalars(_CLAIM_WITHOUT_HOST, {"now": now})
    if not claimed:
        return []
    by_host: dict[int | None, list[_Claimed]] = {}
    for row in session.execute(OUTBOX_ROWS_BY_ID, {"ids": claimed}):
        by_host.setdefault(row.host_id, []).append(_Claimed(*row))
    rows: list[tuple[Any, ...]] = []
    delivered: list[_Claimed] = []
    merges: list[dict[str, Any]] = []
    merged_away: list[dict[str, Any]] = []
    for host, host_events in by_host.items():
        survivors = _coalesced(host_events, merged_away)
        merges.extend(
            {"row_id": e.id, "new_payload": e.payload, "new_calendar_id": e.calendar_id}
            for e in survivors
            if e.merged
        )
        receiving = [endpoint_id for endpoint_id, host_ids in endpoints if covers(host_ids, host)]
        rows.extend(
            _delivery_row(endpoint_id, event, now)
            for endpoint_id in receiving
            for event in survivors
        )
        if receiving:
            delivered.extend(survivors)
        result.events += len(survivors)
    if merges:  # rare: only a host's rows within one window
        session.execute(_MERGED, merges)
        session.execute(_MERGED_AWAY, merged_away)
    if rows:
        insert_rows(session, DELIVERIES, DELIVERY_COLUMNS, rows)
        result.endpoints.update(row[0] for row in rows)
    return delivered


def _coalesced(events: list[_Claimed], merged_away: list[dict[str, Any]]) -> list[_Claimed]:
    """A host's claimed rows, consecutive busy.changed ones merged into the first (each
    merged row noted in `merged_away`)."""
    survivors: list[_Claimed] = []
    for event in events:
        busy = event.type == EventType.BUSY_CHANGED
        if survivors and busy and survivors[-1].type == EventType.BUSY_CHANGED:
            _merge_into(survivors[-1], event)
            merged_away.append({"row_id": event.id, "into": survivors[-1].id})
        else:
            survivors.append(event)
    return survivors


DELIVERY_COLUMNS = (
    "endpoint_id",
    "event_id",
    "host_id",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
)


def _delivery_row(endpoint_id: str, event: _Claimed, now: datetime) -> tuple[Any, ...]:
    """A new pending delivery's DELIVERY_COLUMNS (every column with a default included:
    COPY applies none)."""
    return (
        endpoint_id,
        event.id,
        event.host_id,
        str(DeliveryStatus.PENDING),
        0,
        now,
        event.committed_at,
    )


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
