"""Writes outbound events into the outbox, inside the caller's transaction: the event
commits with the change that caused it, or neither does.

`record_busy_change` is called by every writer of a host's busy time (the busy-block
writer, manual blocks, detaching a calendar, deleting a host) with the blocks it removed
and added; it works out which ranges changed their busy/free answer for the host and writes
nothing when none did, or when no endpoint receives the host's events: an endpoint gets the
changes of the transactions that see it registered (its owner reads `/busy` once after
registering), so a deployment without endpoints pays one small read per write, not a row
lock, a read of the host's blocks and an outbox row per change.

Whoever sends work after commits (worker.enqueue) registers a listener, so a fan-out is
enqueued once the transaction commits; without one, beat's sweep finds the row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, true
from sqlalchemy.orm import Session

from models.busy_queries import HOST_BLOCK_SPANS
from models.calendars import CALENDARS
from models.hosts import HOSTS
from models.outbound import ENDPOINTS, OUTBOX, EventType, OutboxEvent, WebhookEndpoint, covers
from rules.busy_changes import Span, changed_ranges

OutboxListener = Callable[[Session, int | None], None]
_listeners: list[OutboxListener] = []


def add_outbox_listener(listener: OutboxListener) -> None:
    """Call `listener(session, host_id)` whenever an outbox row is added to a session."""
    if listener not in _listeners:
        _listeners.append(listener)


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _add(session: Session, **row: Any) -> None:
    """An outbox row, by one INSERT (it is written in every announced sync: no ORM
    unit-of-work flush for it), then the listeners."""
    session.execute(_OUTBOX_INSERT, row)
    for listener in _listeners:
        listener(session, row["host_id"])


def host_announced(session: Session, host_id: int) -> bool:
    """Whether any endpoint receives the host's events (a handful of rows: endpoints are
    few). A disabled one counts: once enabled again, its owner may replay what it missed."""
    receivers = session.scalars(select(WebhookEndpoint.host_ids))
    return any(covers(ids, host_id) for ids in receivers)


def announced_host_of(session: Session, calendar_id: int) -> int | None:
    """The calendar's host if an endpoint receives its events, its row then locked for the
    rest of the transaction (PostgreSQL; SQLite's writers are serialized anyway); None when
    no endpoint does (then no outbox row is written for this transaction's writes)."""
    rows = session.execute(_HOST_AND_ENDPOINTS, {"calendar_id": calendar_id}).all()
    host_id = rows[0].host_id if rows else None
    if host_id is None or not any(
        endpoint is not None and covers(ids, host_id) for _, endpoint, ids in rows
    ):
        return None
    session.execute(_LOCK_HOST, {"host_id": host_id})
    return host_id


# One round trip, built once (it runs for every sync): the calendar's host beside every
# endpoint's hosts (a row with no endpoint when there is none).
_HOST_AND_ENDPOINTS = (
    select(CALENDARS.c.host_id, ENDPOINTS.c.id, ENDPOINTS.c.host_ids)
    .select_from(CALENDARS)
    .outerjoin(ENDPOINTS, true())
    .where(CALENDARS.c.id == bindparam("calendar_id"))
)
# A writer of the host's busy time takes its row first (see host_busy_change).
_LOCK_HOST = select(HOSTS.c.id).where(HOSTS.c.id == bindparam("host_id")).with_for_update()
_OUTBOX_INSERT = insert(OUTBOX)


def host_busy_change(
    session: Session, host_id: int, removed: list[Span], added: list[Span], *, locked: bool = False
) -> list[Span]:
    """The ranges whose busy/free answer for the host changed, given the blocks just
    removed and added (already written in this session). Takes the host's row lock first
    (unless the caller holds it: `locked`), so two writers of one host compute one after the
    other and neither misses the other's change (PostgreSQL; SQLite writers are serialized
    anyway)."""
    if not removed and not added:
        return []
    session.flush()
    if not locked:
        session.execute(_LOCK_HOST, {"host_id": host_id})
    spans = [*removed, *added]
    window = {
        "host_id": host_id,
        "time_min": min(start for start, _ in spans),
        "time_max": max(end for _, end in spans),
    }
    # The host's blocks now, minus the ones just added: the blocks that stayed.
    others = Counter((start, end) for start, end in session.execute(HOST_BLOCK_SPANS, window))
    others.subtract(Counter(added))
    return changed_ranges(others.elements(), removed, added)


def record_busy_change(
    session: Session,
    *,
    host_id: int,
    calendar_id: int | None,
    cause: str,
    removed: Iterable[Span],
    added: Iterable[Span],
    now: datetime,
    announced: bool = False,
) -> bool:
    """A `busy.changed` outbox row if the host's busy/free answer changed anywhere and an
    endpoint receives the host (`announced`: the caller found that out already and holds
    the host's row lock, as `announced_host_of` leaves it); whether one was written."""
    if not announced and not host_announced(session, host_id):
        return False
    changed = host_busy_change(session, host_id, list(removed), list(added), locked=announced)
    if not changed:
        return False
    payload: dict[str, Any] = {
        "changed": [{"start": iso(start), "end": iso(end)} for start, end in changed]
    }
    _add(
        session,
        type=str(EventType.BUSY_CHANGED),
        host_id=host_id,
        calendar_id=calendar_id,
        cause=cause,
        payload=payload,
        committed_at=now,
    )
    return True


def record_state_change(
    session: Session,
    *,
    host_id: int,
    calendar_id: int,
    previous: str | None,
    state: str,
    error: dict[str, str | None] | None,
    now: datetime,
) -> None:
    """A `calendar.state_changed` outbox row; `error` holds code, message and fix in words."""
    _add(
        session,
        type=str(EventType.CALENDAR_STATE_CHANGED),
        host_id=host_id,
        calendar_id=calendar_id,
        cause="health",
        payload={"previousState": previous, "state": state, "error": error},
        committed_at=now,
    )


def record_ping(session: Session, now: datetime) -> OutboxEvent:
    """A `ping` (an endpoint's test): no host, delivered only to the endpoint asking."""
    event = OutboxEvent(
        type=str(EventType.PING),
        host_id=None,
        calendar_id=None,
        cause="test",
        payload={},
        committed_at=now,
        fanned_out_at=now,
    )
    session.add(event)
    session.flush()
    return event
