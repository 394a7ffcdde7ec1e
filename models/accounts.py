"""Google accounts: OAuth credentials, encrypted at rest."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import cast

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Table, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class AccountState(enum.StrEnum):
    OK = "ok"
    NEEDS_REAUTH = "needs_reauth"


class GoogleAccount(Base):
    __tablename__ = "google_accounts"
    # The ops snapshot's "needs re-authorization" calendars, by index (few accounts are).
    __table_args__ = (
        Index(
            "ix_google_accounts_needs_reauth",
            "id",
            postgresql_where=text("state <> 'ok'"),
            sqlite_where=text("state <> 'ok'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    # Fernet token of the authorized-user JSON (client id/secret, refresh token, token URI).
    credentials_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(20), default=AccountState.OK)
    state_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# The table as Core sees it (statements every sync runs).
ACCOUNTS = cast(Table, GoogleAccount.__table__)
