"""Every synced event instance with its busy decision, and the busy subset frontends read."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class CalendarEvent(Base):
    """An event instance as the busy rules saw it, kept so `explain` can answer and a
    policy change can re-decide without calling Google."""

    __tablename__ = "calendar_events"
    __table_args__ = (
        UniqueConstraint("calendar_id", "google_event_id"),
        Index("ix_calendar_events_calendar_start", "calendar_id", "start", "end"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    google_event_id: Mapped[str] = mapped_column(String(1024))
    recurring_event_id: Mapped[str | None] = mapped_column(String(1024))
    start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20))
    transparency: Mapped[str] = mapped_column(String(20))
    event_type: Mapped[str] = mapped_column(String(32))
    response_status: Mapped[str | None] = mapped_column(String(20))
    summary: Mapped[str | None] = mapped_column(Text)
    google_updated: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "busy" or the reason it is not (rules.busy_rules.Reason).
    decision: Mapped[str] = mapped_column(String(32))
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BusyBlock(Base):
    """What frontends read: the busy subset, written in the same transaction as the events."""

    __tablename__ = "busy_blocks"
    __table_args__ = (
        UniqueConstraint("calendar_id", "event_key"),
        # Rows start at most a day in the past (the sync horizon), so a range scan on start
        # below the window's end touches little more than the window itself.
        Index("ix_busy_blocks_calendar_start", "calendar_id", "start", "end"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    event_key: Mapped[str] = mapped_column(String(1024))
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    end: Mapped[datetime] = mapped_column(UTCDateTime)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
