"""Audit rows: one per comparison of a calendar's busy table with Google's freeBusy."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, UTCDateTime, utcnow


class AuditOutcome(enum.StrEnum):
    MATCHED = "matched"
    MISMATCH = "mismatch"  # differed; a full resync and a second audit follow
    PERSISTENT = "persistent"  # still differed after the full resync: alerted


class Audit(Base):
    __tablename__ = "audits"
    __table_args__ = (Index("ix_audits_calendar_at", "calendar_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    matched: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[str] = mapped_column(String(20))
    # [{"start", "end"}] in UTC: ranges only, never titles.
    differences: Mapped[list[Any]] = mapped_column(JSON, default=list)
    differing_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # Events whose host policy differs from Google's semantics, compared by their facts.
    policy_touched: Mapped[int] = mapped_column(default=0)


def last_audit(session: Session, calendar_id: int) -> Audit | None:
    return session.scalars(
        select(Audit)
        .where(Audit.calendar_id == calendar_id)
        .order_by(Audit.at.desc(), Audit.id.desc())
        .limit(1)
    ).first()


def differs_from_google(audit: Audit | None) -> bool:
    """The calendar's state says "differs from Google" from a surviving mismatch until an
    audit matches."""
    return audit is not None and audit.outcome == AuditOutcome.PERSISTENT
