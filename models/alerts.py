"""State of the built-in alert notifier: one row per incident key, and a delivery log.

An incident is open while `resolved_at` is null. `trigger_sent_at` / `resolve_sent_at` record
what on-call was told, so a condition that stays true is announced once, and its resolve is
sent only if its trigger was.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class AlertIncident(Base):
    __tablename__ = "alert_incidents"

    # Stable across trigger and resolve: also the PagerDuty dedup_key.
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    trigger_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolve_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AlertDelivery(Base):
    """Every message sent, for the per-window cap."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (Index("ix_alert_deliveries_sent_at", "sent_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(16))  # trigger | resolve | digest
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
