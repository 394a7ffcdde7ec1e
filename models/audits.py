"""Audit rows: one per comparison of a calendar's busy table with Google's freeBusy."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, String, case, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, UTCDateTime, utcnow


class AuditOutcome(enum.StrEnum):
    MATCHED = "matched"
    MISMATCH = "mismatch"  # differed; a full resync and a second audit follow
    PERSISTENT = "persistent"  # still differed after the full resync: alerted
    # Undecided (no verdict, `matched` is null): the calendar changed during the audit, or
    # Google failed. Recorded so the log shows it and the schedule counts the attempt.
    DEFERRED = "deferred"
    ERROR = "error"


DECIDED = (AuditOutcome.MATCHED, AuditOutcome.MISMATCH, AuditOutcome.PERSISTENT)


class Audit(Base):
    __tablename__ = "audits"
    __table_args__ = (Index("ix_audits_calendar_at", "calendar_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    matched: Mapped[bool | None] = mapped_column(Boolean)  # null: undecided
    outcome: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(String(200))  # why undecided, in words
    # [{"start", "end"}] in UTC: ranges only, never titles.
    differences: Mapped[list[Any]] = mapped_column(JSON, default=list)
    differing_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    # Events whose host policy differs from Google's semantics, compared by their facts.
    policy_touched: Mapped[int] = mapped_column(default=0)


def last_audit(session: Session, calendar_id: int) -> Audit | None:
    """The calendar's newest audit with a verdict (undecided attempts are skipped)."""
    return session.scalars(
        select(Audit)
        .where(Audit.calendar_id == calendar_id, Audit.outcome.in_(DECIDED))
        .order_by(Audit.at.desc(), Audit.id.desc())
        .limit(1)
    ).first()


def audits_for_host(
    session: Session, host_id: int, since: datetime, limit: int = 500
) -> list[Audit]:
    """A host's audits (every outcome, undecided ones included) at or after `since`,
    newest first: for the host's log page."""
    from models.calendars import Calendar

    return list(
        session.scalars(
            select(Audit)
            .join(Calendar, Calendar.id == Audit.calendar_id)
            .where(Calendar.host_id == host_id, Audit.at >= since)
            .order_by(Audit.at.desc(), Audit.id.desc())
            .limit(limit)
        )
    )


def persistent_differences(session: Session) -> list[tuple[Audit, int]]:
    """Calendars whose newest verdict is a mismatch that survived the full resync, with
    that audit and the calendar's host id: what the alert notifier reports."""
    from models.calendars import Calendar

    newest = _newest_decided()
    rows = session.execute(
        select(Audit, Calendar.host_id)
        .join(newest, newest.c.last_id == Audit.id)
        .join(Calendar, Calendar.id == Audit.calendar_id)
        .where(Audit.outcome == AuditOutcome.PERSISTENT)
        .order_by(Audit.calendar_id)
    ).all()
    return [(audit, host_id) for audit, host_id in rows]


def _newest_decided() -> Any:
    return (
        select(Audit.calendar_id, func.max(Audit.id).label("last_id"))
        .where(Audit.outcome.in_(DECIDED))
        .group_by(Audit.calendar_id)
        .subquery()
    )


def differs_from_google(audit: Audit | None) -> bool:
    """The calendar's state says "differs from Google" from a surviving mismatch until an
    audit matches."""
    return audit is not None and audit.outcome == AuditOutcome.PERSISTENT


def audit_candidates(session: Session) -> list[tuple[int, int, datetime | None]]:
    """Every calendar of a usable account: (calendar id, account id, last audit time)."""
    from models.accounts import AccountState, GoogleAccount
    from models.calendars import Calendar, SyncState

    last = (
        select(Audit.calendar_id, func.max(Audit.at).label("last_at"))
        .group_by(Audit.calendar_id)
        .subquery()
    )
    rows = session.execute(
        select(Calendar.id, Calendar.account_id, last.c.last_at)
        .join(GoogleAccount, GoogleAccount.id == Calendar.account_id)
        .join(SyncState, SyncState.calendar_id == Calendar.id)
        .outerjoin(last, last.c.calendar_id == Calendar.id)
        .where(GoogleAccount.state == AccountState.OK, SyncState.blocked_reason.is_(None))
        .order_by(Calendar.account_id, Calendar.id)
    )
    return [(calendar_id, account_id, at) for calendar_id, account_id, at in rows]


def audit_gauges(session: Session, now: datetime) -> tuple[float, int]:
    """(largest time since a calendar's last matching audit, calendars differing from Google).

    Over calendars audited at least once; one never matched counts from its first audit."""
    per_calendar = session.execute(
        select(
            Audit.calendar_id,
            func.max(case((Audit.matched.is_(True), Audit.at))),
            func.min(Audit.at),
        ).group_by(Audit.calendar_id)
    ).all()
    oldest = 0.0
    for _calendar_id, last_match, first in per_calendar:
        since = last_match or first
        if since is not None:
            if since.tzinfo is None:  # SQLite returns aggregates without the type's zone
                since = since.replace(tzinfo=now.tzinfo)
            oldest = max(oldest, (now - since).total_seconds())
    newest = _newest_decided()
    differing = session.scalar(
        select(func.count())
        .select_from(Audit)
        .join(newest, newest.c.last_id == Audit.id)
        .where(Audit.outcome == AuditOutcome.PERSISTENT)
    )
    return oldest, int(differing or 0)
