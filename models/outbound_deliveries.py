"""Deliveries of outbound events: claiming one to send, recording how it went, what the
sweep must (re)send, replays, and the recent attempts an endpoint's owner sees.

A delivery is sent only while it heads its lane (the oldest pending event of its endpoint
and host), so a host's events reach an endpoint in order; a sender holds it with a claim
(its task id, until a deadline past the request timeout), so two senders never send it at
once, and a sender that died is replaced once the claim runs out. One sender task per
endpoint at a time (`take_senders`) sends its due lane heads in batches.
"""

from __future__ import annotations

import json
import random
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    CursorResult,
    Integer,
    bindparam,
    delete,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from models.outbound import (
    DELIVERIES,
    ENDPOINTS,
    OUTBOX_ROWS_BY_ID,
    DeliveryStatus,
    EndpointState,
    EventType,
    OutboxEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from models.outbound_endpoints import signing_secrets
from models.outbox_writer import iso
from rules.outbound_lanes import LaneScan, Pending
from rules.outbound_retry import FIRST_DELAY_SECONDS, disable_due, gives_up, retry_delay

RECENT_LIMIT = 100


@dataclass(frozen=True)
class DeliveryWork:
    """What a sender needs, read in the claim's transaction."""

    delivery_id: int
    endpoint_id: str
    url: str
    secrets: list[str]
    message_id: str
    body: bytes  # the event's JSON (event_json)
    committed_at: datetime


@dataclass(frozen=True)
class Claimed:
    """A claim's batch, and whether a claim right after it may find more: a lane of the
    batch has another delivery queued behind its head, or the batch is full."""

    work: list[DeliveryWork]
    more: bool = False
    endpoint_failing: bool = False  # as claimed: a 2xx then ends the failing spell


def event_body(event: Any) -> dict[str, Any]:
    """The JSON an endpoint receives for `event` (an OutboxEvent or a row of its columns):
    ids, times, ranges and states; never titles or attendees (the outbox holds none)."""
    payload = dict(event.payload)
    body: dict[str, Any] = {
        "type": event.type,
        "id": event_message_id(event.id),
        "occurredAt": iso(event.committed_at),
    }
    if event.type == EventType.PING:
        return body
    body["hostId"] = event.host_id
    if event.calendar_id is not None:
        body["calendarId"] = event.calendar_id
    body["cause"] = event.cause if len(payload.get("causes", [])) <= 1 else "coalesced"
    if event.type == EventType.BUSY_CHANGED:
        body["changed"] = payload["changed"]
        if len(payload.get("causes", [])) > 1:
            body["causes"] = payload["causes"]
    else:
        for key in ("previousState", "state", "error"):
            body[key] = payload.get(key)
    body["asOf"] = payload.get("asOf") or iso(event.committed_at)
    return body


# Events encoded by this process: an event goes to every endpoint that receives its host,
# each endpoint's sender sends the same bytes, so it is encoded once, not once per endpoint.
# An event is final once fanned out (merging happens before); keyed with its commit time
# too, so an id used again (SQLite may, after the newest row is pruned) is encoded afresh.
ENCODED_KEPT = 4096
_encoded: dict[tuple[int, datetime], bytes] = {}
_encoded_lock = threading.Lock()


def encoded(event_id: int, committed_at: datetime) -> bytes | None:
    """The event's JSON if this process encoded it already."""
    return _encoded.get((event_id, committed_at))


def event_json(event: Any) -> bytes:
    """`event_body(event)` as the compact JSON sent and signed."""
    key = (event.id, event.committed_at)
    body = _encoded.get(key)
    if body is None:
        body = json.dumps(event_body(event), separators=(",", ":")).encode()
        with _encoded_lock:
            if len(_encoded) >= ENCODED_KEPT:
                _encoded.clear()
            _encoded[key] = body
    return body


def event_message_id(event_id: int) -> str:
    """The event's id, also its `webhook-id` (the same on every retry and replay, so a
    receiver can drop duplicates)."""
    return f"evt_{event_id}"


# Inline, not a bound parameter: only then may PostgreSQL use the partial indexes of pending
# deliveries in a prepared statement's generic plan.
_PENDING: ColumnElement[str] = literal_column(f"'{DeliveryStatus.PENDING}'")
_MOMENT = DELIVERIES.c.claimed_until.type


def _free(with_owner: bool) -> ColumnElement[bool]:
    """Filter: the delivery is held by nobody (or its hold ran out at :now), or by
    :owner."""
    claimed_until = DELIVERIES.c.claimed_until
    free = or_(claimed_until.is_(None), claimed_until <= bindparam("now", type_=_MOMENT))
    return or_(free, DELIVERIES.c.claimed_by == bindparam("owner")) if with_owner else free


# An endpoint's pending deliveries, oldest event first, a page at a time after :after (an
# event id): where lane heads are found (rules/outbound_lanes.py). A range of the partial
# index of pending deliveries (ix_webhook_deliveries_queue), the only index in event order.
_PENDING_PAGE = (
    select(
        DELIVERIES.c.id,
        DELIVERIES.c.host_id,
        DELIVERIES.c.event_id,
        DELIVERIES.c.next_attempt_at,
        DELIVERIES.c.claimed_until,
        DELIVERIES.c.claimed_by,
    )
    .where(
        DELIVERIES.c.endpoint_id == bindparam("endpoint"),
        DELIVERIES.c.status == _PENDING,
        DELIVERIES.c.event_id > bindparam("after", type_=Integer),
    )
    .order_by(DELIVERIES.c.event_id)
    .limit(bindparam("page", type_=Integer))
)
# Pages grow from twice what is wanted (a steady state: the heads are at the front) up to
# this (a backlog of blocked lanes: retries of a failing host).
LARGEST_PAGE = 2000


def _lane_heads(connection: Connection, endpoint_id: str, scan: LaneScan) -> list[int]:
    """The ids of the endpoint's sendable lane heads, oldest event first, up to the scan's
    limit."""
    after, page_size = 0, 2 * scan.limit
    while not scan.full:
        page = [
            Pending(*row)
            for row in connection.execute(
                _PENDING_PAGE, {"endpoint": endpoint_id, "after": after, "page": page_size}
            )
        ]
        scan.take(page)
        if len(page) < page_size:
            break
        after, page_size = page[-1].event_id, min(LARGEST_PAGE, page_size * 4)
    return scan.ids


# The claim of the heads found: the hold is re-checked on each row as it is updated, so of
# two senders racing for a row (a sweep's and a redelivered message's) one gets it.
_CLAIM = (
    update(DELIVERIES)
    .where(
        DELIVERIES.c.id.in_(bindparam("ids", expanding=True)),
        DELIVERIES.c.status == _PENDING,
        _free(with_owner=True),
    )
    .values(claimed_by=bindparam("owner"), claimed_until=bindparam("until", type_=_MOMENT))
    .returning(DELIVERIES.c.event_id, DELIVERIES.c.id, DELIVERIES.c.created_at)
)


# What a sender needs of its endpoint (a Core read: it runs for every batch).
_SENDING_ENDPOINT = select(
    ENDPOINTS.c.id,
    ENDPOINTS.c.state,
    ENDPOINTS.c.url,
    ENDPOINTS.c.secret_encrypted,
    ENDPOINTS.c.previous_secret_encrypted,
    ENDPOINTS.c.previous_secret_expires_at,
).where(ENDPOINTS.c.id == bindparam("endpoint"))


def claim_batch(
    session: Session,
    endpoint_id: str,
    owner: str,
    now: datetime,
    hold: timedelta,
    limit: int = 50,
) -> Claimed:
    """Take up to `limit` deliveries of the endpoint for sending: lane heads (so a host's
    events go out in order), due, held by nobody else. Each is held for `hold` under
    `owner`; what another sender took first is left to it."""
    connection = session.connection()
    scan = LaneScan(due_by=now + timedelta(seconds=1), now=now, owner=owner, limit=limit)
    heads = _lane_heads(connection, endpoint_id, scan)
    if not heads:
        return Claimed([])  # the usual answer to a waiting sender's look: one read
    endpoint = connection.execute(_SENDING_ENDPOINT, {"endpoint": endpoint_id}).one_or_none()
    if endpoint is None or endpoint.state == EndpointState.DISABLED:
        return Claimed([])
    claimed = sorted(  # (event id, delivery id, created at), in event order
        connection.execute(
            _CLAIM, {"ids": heads, "now": now, "owner": owner, "until": now + hold}
        ).all()
    )
    if not claimed:
        return Claimed([])
    # A fan-out gives a delivery its event's commit time as created_at, and this process's
    # fan-outs keep what they encoded: mostly nothing is left to read.
    committed = {event_id: created_at for event_id, _id, created_at in claimed}
    bodies = {event_id: encoded(event_id, at) for event_id, at in committed.items()}
    missing = [event_id for event_id, body in bodies.items() if body is None]
    if missing:
        for event in connection.execute(OUTBOX_ROWS_BY_ID, {"ids": missing}):
            bodies[event.id] = event_json(event)
            committed[event.id] = event.committed_at
    secrets = signing_secrets(endpoint, now)
    work = [
        DeliveryWork(
            delivery_id=delivery_id,
            endpoint_id=endpoint.id,
            url=endpoint.url,
            secrets=secrets,
            message_id=event_message_id(event_id),
            body=body,
            committed_at=committed[event_id],
        )
        for event_id, delivery_id, _created in claimed
        if (body := bodies[event_id]) is not None
    ]
    return Claimed(
        work,
        more=scan.full or scan.followed,
        endpoint_failing=endpoint.state == EndpointState.FAILING,
    )


def take_senders(
    session: Session, endpoint_ids: list[str], now: datetime, hold: timedelta
) -> list[str]:
    """Mark a sender task as running for each endpoint that has none running (one
    statement); the endpoints the caller should queue a sender for."""
    return list(
        session.scalars(
            update(ENDPOINTS)
            .where(
                ENDPOINTS.c.id.in_(endpoint_ids),
                ENDPOINTS.c.state != str(EndpointState.DISABLED),
                or_(ENDPOINTS.c.sender_until.is_(None), ENDPOINTS.c.sender_until <= now),
            )
            .values(sender_until=now + hold)
            .returning(ENDPOINTS.c.id)
        )
    )


def release_sender(session: Session, endpoint_id: str) -> None:
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(sender_until=None)
        .execution_options(synchronize_session=False)
    )


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str | None  # in words; None for a 2xx
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Recorded:
    outcome: str  # delivered | retrying | given_up | gone
    retry_in: float | None  # seconds until this delivery is tried again


_AT = bindparam("at", type_=_MOMENT)
_DELIVERED = (
    update(DELIVERIES)
    .where(DELIVERIES.c.id == bindparam("delivery_id"))
    .values(
        attempts=DELIVERIES.c.attempts + 1,
        first_attempt_at=func.coalesce(DELIVERIES.c.first_attempt_at, _AT),
        last_attempt_at=_AT,
        last_status_code=bindparam("code"),
        last_duration_ms=bindparam("took"),
        last_error=None,
        claimed_by=None,
        claimed_until=None,
        status=str(DeliveryStatus.DELIVERED),
        delivered_at=_AT,
    )
)
# A 2xx ends a failing spell.
_RECOVERED = (
    update(ENDPOINTS)
    .where(
        ENDPOINTS.c.id == bindparam("endpoint"),
        ENDPOINTS.c.state == str(EndpointState.FAILING),
    )
    .values(state=str(EndpointState.ACTIVE), failing_since=None, state_reason=None)
)


def record_delivered(
    session: Session,
    endpoint_id: str,
    delivered: list[tuple[int, Attempt]],
    now: datetime,
    was_failing: bool = True,
) -> None:
    """Deliveries of one endpoint answered 2xx (the common case of a batch), in one
    statement; what `record_attempt` does for each, with less work per row. The endpoint
    is marked active again if it `was_failing` when the batch was claimed (only its own
    sender gives deliveries up, so it cannot have started failing since)."""
    if not delivered:
        return
    connection = session.connection()
    connection.execute(
        _DELIVERED,
        [
            {"delivery_id": i, "code": a.status_code, "took": a.duration_ms, "at": now}
            for i, a in delivered
        ],
    )
    if was_failing:
        connection.execute(_RECOVERED, {"endpoint": endpoint_id})


def record_attempt(
    session: Session,
    delivery_id: int,
    attempt: Attempt,
    now: datetime,
    first_retry_seconds: float = FIRST_DELAY_SECONDS,
) -> Recorded:
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None:  # its endpoint was deleted meanwhile
        return Recorded("gone", None)
    endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
    delivery.attempts += 1
    delivery.first_attempt_at = delivery.first_attempt_at or now
    delivery.last_attempt_at = now
    delivery.last_status_code = attempt.status_code
    delivery.last_duration_ms = attempt.duration_ms
    delivery.last_error = attempt.error
    delivery.claimed_by = delivery.claimed_until = None
    retry_in = None
    if attempt.ok:
        outcome = "delivered"
        delivery.status = str(DeliveryStatus.DELIVERED)
        delivery.delivered_at = now
        if endpoint is not None and endpoint.state == EndpointState.FAILING:
            endpoint.state, endpoint.failing_since, endpoint.state_reason = (
                str(EndpointState.ACTIVE),
                None,
                None,
            )
    elif gives_up(delivery.created_at, now):
        outcome = "given_up"
        delivery.status = str(DeliveryStatus.FAILED)
        if endpoint is not None and endpoint.state == EndpointState.ACTIVE:
            endpoint.state = str(EndpointState.FAILING)
            endpoint.failing_since = now
            given_up = event_message_id(delivery.event_id)
            endpoint.state_reason = (
                f"Event {given_up} was not accepted within 24 hours and was given up. "
                f"Last attempt: {attempt.error}"
            )
        elif endpoint is not None:
            endpoint.state_reason = (
                f"Failing since {iso(endpoint.failing_since or now)}; last attempt: {attempt.error}"
            )
    else:
        outcome = "retrying"
        retry_in = retry_delay(delivery.attempts, random.uniform(-1, 1), first_retry_seconds)
        delivery.next_attempt_at = now + timedelta(seconds=retry_in)
    session.flush()
    return Recorded(outcome, retry_in)


def endpoints_with_due_work(
    session: Session, now: datetime, endpoint_id: str | None = None
) -> list[str]:
    """Endpoints with a lane head that is due and held by nobody: what the sweep (re)starts
    a sender for (a retry that came due, a sender that died, a lost message). One indexed
    probe per endpoint (endpoints are few)."""
    query = select(WebhookEndpoint.id).where(WebhookEndpoint.state != str(EndpointState.DISABLED))
    if endpoint_id is not None:
        query = query.where(WebhookEndpoint.id == endpoint_id)
    connection = session.connection()
    return [
        candidate
        for candidate in session.scalars(query.order_by(WebhookEndpoint.id)).all()
        if _lane_heads(connection, candidate, LaneScan(due_by=now, now=now, owner=None, limit=1))
    ]


def disable_long_failing(session: Session, now: datetime) -> list[str]:
    """Disable endpoints failing for 5 days; their ids."""
    disabled = []
    for endpoint in session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.state == str(EndpointState.FAILING))
    ):
        if disable_due(endpoint.failing_since, now):
            endpoint.state = str(EndpointState.DISABLED)
            endpoint.state_reason = (
                f"Disabled: deliveries failed for 5 days (failing since "
                f"{iso(endpoint.failing_since or now)}). Fix the receiver, then PATCH "
                '{"enabled": true} to turn it on again.'
            )
            disabled.append(endpoint.id)
    return disabled


def replay(session: Session, endpoint: WebhookEndpoint, since: datetime, now: datetime) -> int:
    """Send again every event of the endpoint's hosts since `since`, in event order: those
    delivered or given up become pending again, and those it never got (it was disabled,
    or registered later) get a delivery. Returns how many are queued."""
    events = session.scalars(
        select(OutboxEvent)
        .where(
            OutboxEvent.committed_at >= since,
            OutboxEvent.fanned_out_at.is_not(None),
            OutboxEvent.merged_into.is_(None),
            OutboxEvent.type != str(EventType.PING),
        )
        .order_by(OutboxEvent.id)
    )
    existing = {
        delivery.event_id: delivery
        for delivery in session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
        )
    }
    queued = 0
    for event in events:
        if endpoint.host_ids is not None and event.host_id not in endpoint.host_ids:
            continue
        delivery = existing.get(event.id)
        if delivery is None:
            session.add(
                WebhookDelivery(
                    endpoint_id=endpoint.id,
                    event_id=event.id,
                    host_id=event.host_id,
                    status=str(DeliveryStatus.PENDING),
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
        elif delivery.status != DeliveryStatus.PENDING:
            delivery.status = str(DeliveryStatus.PENDING)
            delivery.next_attempt_at = delivery.created_at = now
            delivery.claimed_by = delivery.claimed_until = None
        else:
            continue
        queued += 1
    session.flush()
    return queued


def recent_deliveries(session: Session, endpoint_id: str, limit: int = RECENT_LIMIT) -> list[Any]:
    """The endpoint's latest deliveries with their event's type, newest first."""
    return list(
        session.execute(
            select(WebhookDelivery, OutboxEvent.type)
            .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
    )


# Sent events and their deliveries are kept this long (what a replay can reach, and what
# GET …/deliveries shows); events still pending for some endpoint are kept until done.
RETENTION = timedelta(days=7)


def prune(session: Session, now: datetime) -> int:
    """Delete finished deliveries and fanned-out events older than RETENTION."""
    cutoff = now - RETENTION
    old_events = select(OutboxEvent.id).where(
        OutboxEvent.committed_at < cutoff, OutboxEvent.fanned_out_at.is_not(None)
    )
    session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.event_id.in_(old_events),
            WebhookDelivery.status != str(DeliveryStatus.PENDING),
        )
    )
    still_pending = select(WebhookDelivery.event_id).where(
        WebhookDelivery.status == str(DeliveryStatus.PENDING)
    )
    result: CursorResult = session.execute(  # type: ignore[assignment]
        delete(OutboxEvent).where(
            OutboxEvent.id.in_(old_events), OutboxEvent.id.not_in(still_pending)
        )
    )
    return int(result.rowcount or 0)
