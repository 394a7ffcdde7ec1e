"""What the webhook reads and writes for a Google push notification: the live channel, the
channel's bookkeeping, and the calendar's last-notification time and dirty mark.

On the webhook's hot path, so every statement is built once at import with bound
parameters (building SQLAlchemy expressions per request cost more CPU than the database work
they describe), and each is a single statement that is atomic on its own: they run on an
autocommit connection, with no BEGIN/COMMIT round trips.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    Case,
    Connection,
    Row,
    Update,
    bindparam,
    case,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute

from models.base import UTCDateTime
from models.calendars import Channel, SyncState

# channels.last_message_number is a 64-bit column; a larger number is accepted, not stored.
MAX_STORED_MESSAGE_NUMBER = 2**63 - 1


@dataclass(frozen=True)
class ChannelMessage:
    """The parts of a notification a channel keeps."""

    channel_id: str
    resource_id: str
    message_number: int

    def params(self) -> dict[str, Any]:
        return {
            "for_channel_id": self.channel_id,
            "given_resource_id": self.resource_id,
            "number": self.message_number,
        }


_NOW = bindparam("now", type_=UTCDateTime())
_NUMBER = bindparam("number", type_=BigInteger())


def _later(column: InstrumentedAttribute[Any], value: BindParameter[Any]) -> Case[Any]:
    """SQL for "the later of the column and value": concurrent requests never move it back."""
    return case((or_(column.is_(None), column < value), value), else_=column)


# By the primary key alone, "not stopped" checked on the row: with `stopped_at IS NULL` in
# the WHERE clause PostgreSQL may pick the live-channel partial indexes instead (on a table
# without statistics it estimates them nearly empty) and then scan every live channel for
# one id, on every notification (~800 pages at 1,000 calendars in benchmark 7).
_FIND_CHANNEL = select(
    Channel.token_hash, Channel.calendar_id, Channel.resource_id, Channel.stopped_at
).where(Channel.id == bindparam("for_channel_id"))

_ON_CHANNEL = (
    update(Channel)
    .where(Channel.id == bindparam("for_channel_id"))
    .values(
        last_notification_at=_later(Channel.last_notification_at, _NOW),
        # The `sync` message may arrive before the watch response stored the resource id.
        resource_id=func.coalesce(Channel.resource_id, bindparam("given_resource_id")),
    )
)
_ON_CHANNEL_WITH_NUMBER = _ON_CHANNEL.values(
    last_message_number=_later(Channel.last_message_number, _NUMBER)
)

_LATER_NOTIFICATION = _later(SyncState.last_notification_at, _NOW)
# Portable (SQLite): the clean→dirty mark, else only the last-notification time.
_MARK_DIRTY_AND_NOTIFIED = (
    update(SyncState)
    .where(SyncState.calendar_id == bindparam("for_calendar_id"), SyncState.dirty_since.is_(None))
    .values(dirty_since=_NOW, last_notification_at=_LATER_NOTIFICATION)
)
_NOTIFIED = (
    update(SyncState)
    .where(SyncState.calendar_id == bindparam("for_calendar_id"))
    .values(last_notification_at=_LATER_NOTIFICATION)
)
# PostgreSQL in one statement: lock the row, keep its previous mark, set both columns, and
# return whether the mark was clean before. A concurrent notification waits on the lock and
# then sees the committed mark, so exactly one of them reports the transition.
_PREVIOUS = (
    select(SyncState.calendar_id, SyncState.dirty_since)
    .where(SyncState.calendar_id == bindparam("for_calendar_id"))
    .with_for_update()
    .subquery("previous")
)
_MARK_DIRTY_RETURNING_TRANSITION = (
    update(SyncState)
    .where(SyncState.calendar_id == _PREVIOUS.c.calendar_id)
    .values(
        dirty_since=func.coalesce(SyncState.dirty_since, _NOW),
        last_notification_at=_LATER_NOTIFICATION,
    )
    .returning(_PREVIOUS.c.dirty_since.is_(None))
)
# ... with the channel's bookkeeping as a data-modifying CTE: one round trip in all.
_ALONG_WITH_CHANNEL = {
    channel: _MARK_DIRTY_RETURNING_TRANSITION.add_cte(channel.cte("channel"))
    for channel in (_ON_CHANNEL, _ON_CHANNEL_WITH_NUMBER)
}


def find_live_channel(connection: Connection, channel_id: str) -> Row | None:
    """(token_hash, calendar_id, resource_id, stopped_at: None) of a channel that was not
    stopped."""
    row = connection.execute(_FIND_CHANNEL, {"for_channel_id": channel_id}).one_or_none()
    return None if row is None or row.stopped_at is not None else row


def _channel_statement(message: ChannelMessage) -> Update:
    if message.message_number <= MAX_STORED_MESSAGE_NUMBER:
        return _ON_CHANNEL_WITH_NUMBER
    return _ON_CHANNEL


def record_sync_message(connection: Connection, message: ChannelMessage, now: datetime) -> None:
    """A `sync` message: the channel's bookkeeping only."""
    connection.execute(_channel_statement(message), {**message.params(), "now": now})


def record_change_notification(
    connection: Connection,
    calendar_id: int,
    received_at: datetime,
    message: ChannelMessage | None = None,
) -> bool:
    """A change notification: the channel's bookkeeping (when `message` is given), the
    calendar's last-notification time (never moved back) and its dirty mark. True only on the
    clean→dirty transition (enqueue then).

    PostgreSQL: one statement. Elsewhere (SQLite returns no other table's columns): the
    channel's update, then one statement if the calendar was clean or two if it was dirty."""
    params = {"for_calendar_id": calendar_id, "now": received_at}
    channel = None
    if message is not None:
        channel = _channel_statement(message)
        params |= message.params()
    if connection.dialect.name == "postgresql":
        statement = (
            _MARK_DIRTY_RETURNING_TRANSITION if channel is None else _ALONG_WITH_CHANNEL[channel]
        )
        return bool(connection.execute(statement, params).scalar())
    if channel is not None:
        connection.execute(channel, params)
    if connection.execute(_MARK_DIRTY_AND_NOTIFIED, params).rowcount == 1:
        return True
    connection.execute(_NOTIFIED, params)
    return False


def unmark_dirty(connection: Connection, calendar_id: int, received_at: datetime) -> None:
    """Undo this notification's clean→dirty mark when its task could not be enqueued, so
    Google's retry (we answered 503) makes the transition again."""
    connection.execute(
        update(SyncState)
        .where(SyncState.calendar_id == calendar_id, SyncState.dirty_since == received_at)
        .values(dirty_since=None)
    )


# --- batches from the Redis intake (PostgreSQL only) ---------------------------------------


@dataclass(frozen=True)
class CalendarBatchRow:
    """A calendar's notifications of a batch: the first and the latest receive time."""

    calendar_id: int
    first_at: datetime
    latest_at: datetime


@dataclass(frozen=True)
class ChannelBatchRow:
    """A channel's notifications since its last write: latest receive time, highest number."""

    channel_id: str
    latest_at: datetime
    message_number: int | None


# Rows locked in calendar order (two batches never deadlock each other); the previous mark
# is read under the lock, so exactly one writer reports each clean→dirty transition. Later-of
# semantics (GREATEST ignores NULLs), so a batch applied twice never moves a value back.
_CALENDAR_BATCH = text(
    """
    WITH v AS (
        SELECT * FROM unnest(
            CAST(:calendar_ids AS integer[]), CAST(:firsts AS timestamptz[]),
            CAST(:lasts AS timestamptz[])
        ) AS v(calendar_id, first_at, last_at)
    ), previous AS (
        SELECT s.calendar_id, s.dirty_since FROM sync_states AS s
        JOIN v ON v.calendar_id = s.calendar_id
        ORDER BY s.calendar_id FOR UPDATE OF s
    )
    UPDATE sync_states AS s SET
        dirty_since = COALESCE(s.dirty_since, v.first_at),
        last_notification_at = GREATEST(s.last_notification_at, v.last_at)
    FROM v JOIN previous AS p ON p.calendar_id = v.calendar_id
    WHERE s.calendar_id = v.calendar_id
    RETURNING s.calendar_id, p.dirty_since IS NULL
    """
)
_CHANNEL_BATCH = text(
    """
    UPDATE channels AS c SET
        last_notification_at = GREATEST(c.last_notification_at, v.at),
        last_message_number = GREATEST(c.last_message_number, v.number)
    FROM (
        SELECT * FROM unnest(
            CAST(:ids AS varchar[]), CAST(:ats AS timestamptz[]), CAST(:numbers AS bigint[])
        ) AS v(id, at, number) ORDER BY id
    ) AS v
    WHERE c.id = v.id
    """
)
# After Redis lost the intake's data: whatever was pending is unknown, so every calendar
# with a live channel counts as notified now.
_MARK_WATCHED_DIRTY = text(
    """
    UPDATE sync_states AS s SET dirty_since = :now
    WHERE s.dirty_since IS NULL AND EXISTS (
        SELECT 1 FROM channels AS c WHERE c.calendar_id = s.calendar_id AND c.stopped_at IS NULL
    )
    RETURNING s.calendar_id
    """
)


def record_calendar_batch(connection: Connection, rows: list[CalendarBatchRow]) -> list[int]:
    """Each calendar's dirty mark (set if clean) and last-notification time (the later), in
    one statement. Returns the calendars that went from clean to dirty (enqueue those). A
    calendar deleted meanwhile is skipped."""
    if not rows:
        return []
    rows = sorted(rows, key=lambda row: row.calendar_id)
    result = connection.execute(
        _CALENDAR_BATCH,
        {
            "calendar_ids": [row.calendar_id for row in rows],
            "firsts": [row.first_at for row in rows],
            "lasts": [row.latest_at for row in rows],
        },
    )
    return sorted(calendar_id for calendar_id, was_clean in result if was_clean)


def record_channel_batch(connection: Connection, rows: list[ChannelBatchRow]) -> None:
    """Channels' last-notification time and message number (the later of stored and given);
    a channel deleted meanwhile is skipped."""
    if not rows:
        return
    connection.execute(
        _CHANNEL_BATCH,
        {
            "ids": [row.channel_id for row in rows],
            "ats": [row.latest_at for row in rows],
            "numbers": [
                row.message_number
                if row.message_number is not None
                and row.message_number <= MAX_STORED_MESSAGE_NUMBER
                else None
                for row in rows
            ],
        },
    )


def mark_watched_calendars_dirty(connection: Connection, now: datetime) -> list[int]:
    """Mark every calendar with a live channel dirty (if clean); the newly marked ones."""
    return sorted(connection.execute(_MARK_WATCHED_DIRTY, {"now": now}).scalars())
