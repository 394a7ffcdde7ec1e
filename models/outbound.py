"""Outbound webhooks: the endpoints a booking frontend registers, the outbox of events
(written in the same transaction as the change that caused them), and one delivery row per
endpoint and event."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import cast

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    select,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class EndpointState(enum.StrEnum):
    ACTIVE = "active"
    FAILING = "failing"  # a delivery was given up after 24 h of retries
    DISABLED = "disabled"  # failing for 5 days, or disabled by its owner


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # retried for 24 h without a 2xx


class EventType(enum.StrEnum):
    BUSY_CHANGED = "busy.changed"
    CALENDAR_STATE_CHANGED = "calendar.state_changed"
    PING = "ping"


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "we_..."
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    # Hosts whose events it receives; None = every host (only an admin may register that).
    host_ids: Mapped[list[int] | None] = mapped_column(JSON)
    # The host whose token registered it; None = the admin. Deleted with that host.
    created_by_host: Mapped[int | None] = mapped_column(Integer, index=True)
    # Standard Webhooks secrets, encrypted like Google credentials. After a rotation the
    # previous one also signs until `previous_secret_expires_at`.
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default=EndpointState.ACTIVE)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state_reason: Mapped[str | None] = mapped_column(Text)  # why, in words
    # A sender task runs (or is queued) for this endpoint until then: new work does not
    # queue a second one (one task per endpoint at a time holds at most one pool slot).
    sender_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxEvent(Base):
    """One event, independent of endpoints. Written in the transaction that caused it; a
    fan-out merges a host's rows within the coalescing window (the survivor carries the
    union, the others point at it) and creates the deliveries."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_events_pending", "fanned_out_at", "host_id", "id"),
        Index("ix_outbox_events_committed_at", "committed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    host_id: Mapped[int | None] = mapped_column(Integer)
    calendar_id: Mapped[int | None] = mapped_column(Integer)
    cause: Mapped[str] = mapped_column(String(40))
    # The event's own fields (changed ranges, states); never titles or attendees.
    payload: Mapped[dict] = mapped_column(JSON)
    # When the change was written (its transaction's clock): delivery lag starts here.
    committed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    fanned_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    merged_into: Mapped[int | None] = mapped_column(Integer)


def covers(host_ids: list[int] | None, host_id: int | None) -> bool:
    """Whether an endpoint with these `host_ids` (None: every host) gets `host_id`'s events."""
    return host_ids is None or host_id in host_ids


PENDING = "status = 'pending'"


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id"),
        # Only pending deliveries are indexed for sending (delivered ones leave the index):
        # an endpoint's queue in event order, where a sender finds its lane heads (one lane
        # per host: a delivery goes out only when no earlier one of its host is pending).
        Index(
            "ix_webhook_deliveries_queue",
            "endpoint_id",
            "event_id",
            postgresql_where=text(PENDING),
            sqlite_where=text(PENDING),
        ),
        # The prune's delete by event, and the cascade from each pruned event, by index
        # (without it: a scan of a week of deliveries per pruned event, every 10 s).
        Index("ix_webhook_deliveries_event", "event_id"),
        # Room on each page for a claim to rewrite its row in place (migration 0013).
        {"postgresql_with": {"fillfactor": 80}},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    host_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A sender holds the delivery until then (its task id in claimed_by): never two at once.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_duration_ms: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# The tables as Core sees them: the statements that run for every sync or delivery (outbox
# rows, claims, records) skip the ORM's unit of work.
OUTBOX = cast(Table, OutboxEvent.__table__)
DELIVERIES = cast(Table, WebhookDelivery.__table__)
ENDPOINTS = cast(Table, WebhookEndpoint.__table__)

# Outbox rows by id, oldest first: what a fan-out merges and a sender sends (columns, not
# entities: both run under load).
OUTBOX_ROWS_BY_ID = (
    select(
        OUTBOX.c.id,
        OUTBOX.c.type,
        OUTBOX.c.host_id,
        OUTBOX.c.calendar_id,
        OUTBOX.c.cause,
        OUTBOX.c.payload,
        OUTBOX.c.committed_at,
    )
    .where(OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(OUTBOX.c.id)
)


class AnnouncedCalendarState(Base):
    """The state last announced for each calendar (`calendar.state_changed`)."""

    __tablename__ = "outbound_calendar_states"

    calendar_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
