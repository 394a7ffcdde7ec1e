"""Audit trail: one row per sync run."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ForeignKey, Index, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class SyncKind(enum.StrEnum):
    INCREMENTAL = "incremental"
    FULL = "full"
    RECOVERY_410 = "410-recovery"


class SyncOutcome(enum.StrEnum):
    RUNNING = "running"
    OK = "ok"
    RETRYING = "retrying"
    FAILED = "failed"
    NEEDS_REAUTH = "needs_reauth"


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_calendar_started", "calendar_id", "started_at"),
        # The hourly prune deletes by age alone (at 100,000 calendars a month of runs is
        # tens of millions of rows: by index, not a scan of them all).
        Index("ix_sync_runs_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    trigger: Mapped[str | None] = mapped_column(String(32))
    task_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    pages: Mapped[int] = mapped_column(Integer, default=0)
    events_seen: Mapped[int] = mapped_column(Integer, default=0)
    blocks_upserted: Mapped[int] = mapped_column(Integer, default=0)
    blocks_deleted: Mapped[int] = mapped_column(Integer, default=0)
    # First unprocessed notification received → this run committed.
    notification_lag_ms: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20), default=SyncOutcome.RUNNING)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)


# The table as Core sees it (a run row is written every sync).
SYNC_RUNS = cast(Table, SyncRun.__table__)


@dataclass
class SyncRunRecord:
    """One finished sync run as the engine reports it: the `SyncRun` row's fields plus what
    only the caller needs (the token to continue from, Google's `updated` of the changes)."""

    calendar_id: int
    kind: str
    trigger: str | None
    started_at: datetime
    finished_at: datetime
    outcome: str
    duration_ms: int | None = None
    pages: int = 0
    events_seen: int = 0
    blocks_upserted: int = 0
    blocks_deleted: int = 0
    notification_lag_ms: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    next_sync_token: str | None = None
    changed_updated: list[datetime] = field(default_factory=list)

    def row_values(self) -> dict[str, Any]:
        """The `sync_runs` row's columns (for a Core INSERT: one is written every sync)."""
        return {name: getattr(self, name) for name in _STORED}

    def to_row(self) -> SyncRun:
        return SyncRun(**self.row_values())


_STORED = tuple(
    f.name
    for f in dataclasses.fields(SyncRunRecord)
    if f.name not in {"next_sync_token", "changed_updated"}
)
