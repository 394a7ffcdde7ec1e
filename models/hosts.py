"""Hosts (whose time is booked) and their manual blocks."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class Host(Base):
    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    # camelCase keys as in the API; empty means the defaults of rules.busy_rules.BusyPolicy.
    busy_policy: Mapped[dict] = mapped_column(JSON, default=dict)
    # SHA-256 of the host's API token; the token itself is shown once and never stored.
    api_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # SHA-256 of the host's feed token: read-only busy time of this host, the one token a
    # URL may carry (status page, connect flow, feeds). None until one is issued.
    feed_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Carried in the host pages' session cookie: rotating the API token bumps it, and every
    # session of the host stops working.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsedOAuthState(Base):
    """A connect-flow state (or confirmation) already used, kept until it would have expired
    anyway: a state is good for one use, also across web processes."""

    __tablename__ = "oauth_used_states"

    state_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SignInLink(Base):
    """A one-time sign-in link of the host pages (models/sign_in_links.py)."""

    __tablename__ = "sign_in_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the token: the link itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ManualBlock(Base):
    """Time a host blocks by hand (any length, minutes to weeks), with a note."""

    __tablename__ = "manual_blocks"
    __table_args__ = (
        CheckConstraint('"end" > start', name="positive_length"),
        Index("ix_manual_blocks_host_start", "host_id", "start", "end"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    start: Mapped[datetime] = mapped_column(UTCDateTime)
    end: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# The table as Core sees it (statements every sync runs).
HOSTS = cast(Table, Host.__table__)
