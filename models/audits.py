"""Audit rows: one per comparison of a calendar's busy table with Google's freeBusy."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    String,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, UTCDateTime, utcnow

if TYPE_CHECKING:
    from models.stored_moments import PagePosition


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
    from models.calendars import Calendar, SyncState

    # The summary finds the few calendars (by index); their newest verdict gives the rows.
    differing = select(SyncState.calendar_id).where(
        SyncState.audit_verdict == AuditOutcome.PERSISTENT
    )
    newest = (
        select(Audit.calendar_id, func.max(Audit.id).label("last_id"))
        .where(Audit.outcome.in_(DECIDED), Audit.calendar_id.in_(differing))
        .group_by(Audit.calendar_id)
        .subquery()
    )
    rows = session.execute(
        select(Audit, Calendar.host_id)
        .join(newest, newest.c.last_id == Audit.id)
        .join(Calendar, Calendar.id == Audit.calendar_id)
        .where(Audit.outcome == AuditOutcome.PERSISTENT)
        .order_by(Audit.calendar_id)
    ).all()
    return [(audit, host_id) for audit, host_id in rows]


def differs_from_google(audit: Audit | None) -> bool:
    """The calendar's state says "differs from Google" from a surviving mismatch until an
    audit matches."""
    return audit is not None and audit.outcome == AuditOutcome.PERSISTENT


def audit_candidates(
    session: Session,
    until: datetime,
    at: PagePosition | None = None,
    limit: int | None = None,
) -> tuple[list[tuple[int, int, datetime | None, datetime | None]], PagePosition | None]:
    """One page (from `at`, at most `limit` sync states) of the calendars of a usable
    account whose stored `next_audit_at` is unknown or comes by `until` (by index:
    models/stored_moments.py): (calendar id, account id, last audit time, next_audit_at as
    read); and where the next page starts (None: none). rules.audit decides which are due."""
    from models import stored_moments
    from models.accounts import GoogleAccount
    from models.calendars import Calendar, SyncState

    # Two steps, each by index: the sync states whose moment comes, then their calendars
    # and accounts by key (one join over thousands of rows made PostgreSQL scan them all).
    states, following = stored_moments.page(
        session,
        select(SyncState.calendar_id, SyncState.next_audit_at).where(
            SyncState.blocked_reason.is_(None)
        ),
        SyncState.next_audit_at,
        until,
        at or stored_moments.START,
        limit or stored_moments.PAGE_ROWS,
    )
    moments = {calendar_id: moment for calendar_id, moment in states}
    if not moments:
        return [], following
    found = session.execute(
        select(Calendar.id, Calendar.account_id).where(
            Calendar.id.in_(sorted(moments)),
            # By the partial index of the few accounts not ok (a join read them all).
            Calendar.account_id.not_in(
                select(GoogleAccount.id).where(text("google_accounts.state <> 'ok'"))
            ),
        )
    ).all()
    rows = sorted(found, key=lambda row: (row.account_id, row.id))
    last = dict(
        session.execute(
            select(Audit.calendar_id, func.max(Audit.at))
            .where(Audit.calendar_id.in_([row.id for row in rows]))
            .group_by(Audit.calendar_id)
        ).all()
    )
    candidates = [
        (calendar_id, account_id, _aware(last.get(calendar_id)), moments[calendar_id])
        for calendar_id, account_id in rows
    ]
    return candidates, following


def _aware(value: Any) -> datetime | None:
    # Aggregates bypass the column type on SQLite: naive (UTC) or text.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def record_audits(session: Session, audits: list[Audit]) -> None:
    """Add audit rows and keep each calendar's audit summary in step (the gauges read it by
    index instead of every audit): the last matching audit else the first, the newest
    verdict; the calendar's next audit moment is judged again at the next round."""
    from models.calendars import SyncState
    from models.stored_moments import RECHECK_MARGIN

    session.add_all(audits)
    for audit in audits:
        values: dict[str, Any] = {"next_audit_at": audit.at - RECHECK_MARGIN}
        if audit.outcome in DECIDED:
            values["audit_verdict"] = audit.outcome
        values["audit_since"] = (
            audit.at if audit.matched else func.coalesce(SyncState.audit_since, audit.at)
        )
        session.execute(
            update(SyncState).where(SyncState.calendar_id == audit.calendar_id).values(values)
        )


def mark_persistent(session: Session, audit: Audit) -> None:
    """The calendar's newest audit, a mismatch, survived the full resync (and the summary)."""
    from models.calendars import SyncState

    audit.outcome = AuditOutcome.PERSISTENT
    session.execute(
        update(SyncState)
        .where(SyncState.calendar_id == audit.calendar_id)
        .values(audit_verdict=AuditOutcome.PERSISTENT)
    )


def audit_gauges(session: Session, now: datetime) -> tuple[float, int]:
    """(largest time since a calendar's last matching audit, calendars differing from Google).

    Over calendars audited at least once; one never matched counts from its first audit.
    Both from the summary `record_audits` keeps, by index."""
    from models.calendars import SyncState

    since = session.scalar(select(func.min(SyncState.audit_since)))
    differing = session.scalar(
        select(func.count())
        .select_from(SyncState)
        .where(SyncState.audit_verdict == AuditOutcome.PERSISTENT)
    )
    oldest = 0.0 if since is None else max(0.0, (now - _aware(since)).total_seconds())  # type: ignore[operator]
    return oldest, int(differing or 0)
