"""Calendars, their watch channels, and their sync state."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class Calendar(Base):
    __tablename__ = "calendars"
    __table_args__ = (UniqueConstraint("host_id", "google_calendar_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("google_accounts.id", ondelete="CASCADE"), index=True
    )
    google_calendar_id: Mapped[str] = mapped_column(String(1024))
    # The calendar's own zone as Google reports it; all-day events are placed in it.
    time_zone: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[str | None] = mapped_column(Text)
    # Why the calendar is not push-watched (Google refused, or access lost); None = watched.
    watch_problem: Mapped[str | None] = mapped_column(Text)
    # Failed attempts to open a channel (Google unreachable), and when to try again.
    watch_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    watch_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def channel_token_hash(token: str) -> str:
    """The stored form of a channel token. One fast hash suffices: the token is random and
    long (a slow, salted hash would only cost the push receiver's hot path)."""
    return hashlib.sha256(token.encode()).hexdigest()


class Channel(Base):
    """A Google watch channel. Several overlap during renewal; all are accepted."""

    __tablename__ = "channels"
    # Periodic reads at 100,000 calendars (bench/fleet_scale.py): live channels by expiry
    # (renewals, the metrics' expiring count) and the newest notification (silence gauge).
    __table_args__ = (
        Index(
            "ix_channels_live_expiration",
            "expiration",
            "created_at",
            postgresql_where=text("stopped_at IS NULL"),
            sqlite_where=text("stopped_at IS NULL"),
        ),
        Index("ix_channels_last_notification_at", "last_notification_at"),
        # The metrics' oldest live channel: the first entry.
        Index(
            "ix_channels_live_created_at",
            "created_at",
            postgresql_where=text("stopped_at IS NULL"),
            sqlite_where=text("stopped_at IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    calendar_id: Mapped[int] = mapped_column(
        ForeignKey("calendars.id", ondelete="CASCADE"), index=True
    )
    # SHA-256 (hex) of the channel token: the token goes to Google in events.watch and comes
    # back in each notification; what is stored cannot be replayed as a notification.
    token_hash: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(256))
    expiration: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_notification_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_message_number: Mapped[int | None] = mapped_column(BigInteger)


# Sync states that may make a calendar other than "ok" (rules/health.py): the partial index
# ix_sync_states_attention holds only these, so the ops snapshot reads them by index.
ATTENTION = (
    "dirty_since IS NOT NULL OR syncing_since IS NOT NULL OR blocked_reason IS NOT NULL"
    " OR consecutive_failures > 0 OR last_success_at IS NULL OR lease_owner IS NOT NULL"
)


class SyncState(Base):
    """One row per calendar: the sync token, the dirty flag, the lease and the health."""

    __tablename__ = "sync_states"
    __table_args__ = (
        Index("ix_sync_states_dirty_since", "dirty_since"),
        # The sweeper's "a worker died mid-sync" half (few rows ever have it set).
        Index(
            "ix_sync_states_syncing_since",
            "syncing_since",
            postgresql_where=text("syncing_since IS NOT NULL"),
            sqlite_where=text("syncing_since IS NOT NULL"),
        ),
        # Periodic reads find the few rows whose stored moment came, a page at a time in
        # the order (moment, calendar) (models/stored_moments.py).
        Index("ix_sync_states_next_check_at", "next_check_at", "calendar_id"),
        Index("ix_sync_states_next_audit_at", "next_audit_at", "calendar_id"),
        Index("ix_sync_states_watch_check_at", "watch_check_at"),
        Index("ix_sync_states_audit_since", "audit_since"),
        Index("ix_sync_states_last_success_at", "last_success_at"),
        Index(
            "ix_sync_states_attention",
            "calendar_id",
            postgresql_where=text(ATTENTION),
            sqlite_where=text(ATTENTION),
        ),
        Index(
            "ix_sync_states_audit_persistent",
            "calendar_id",
            postgresql_where=text("audit_verdict = 'persistent'"),
            sqlite_where=text("audit_verdict = 'persistent'"),
        ),
    )

    calendar_id: Mapped[int] = mapped_column(
        ForeignKey("calendars.id", ondelete="CASCADE"), primary_key=True
    )
    sync_token: Mapped[str | None] = mapped_column(Text)
    # Receive time of the first notification not yet applied; None = clean.
    dirty_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The dirty mark a lease holder took and has not committed yet. If that worker dies,
    # the mark is still here, and its expired lease makes the sweeper pick it up.
    syncing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_notification_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    full_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when Google must not be called for this calendar (gone, access lost).
    blocked_reason: Mapped[str | None] = mapped_column(String(64))
    # Stored moments (models/stored_moments.py): no earlier than when the rule in rules/ first says
    # "due", so a periodic read fetches only rows whose moment came and lets the rule judge
    # them. None = unknown: judged at the next round, which stores the moment. A writer
    # that may make a moment earlier sets it to None; a later one may leave it (the round
    # that finds the row not due stores the new moment).
    next_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # safety net / poll
    next_audit_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    watch_check_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # channel works until
    # Kept with each audit row (worker/audit.py): the last matching audit, else the first
    # one (None = never audited); the newest verdict's outcome. For the audit gauges.
    audit_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    audit_verdict: Mapped[str | None] = mapped_column(String(20))


# The table as Core sees it: statements every sync runs skip the ORM (models/sync_flags.py
# has SYNC_STATES).
CALENDARS = cast(Table, Calendar.__table__)
