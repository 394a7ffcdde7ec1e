"""Re-deciding a host's stored events after its busy policy changed, without calling Google.

`models` cannot import the busy rules (they live in `worker`), so the caller passes the
decision function; this module only reads the stored events and rewrites `decision` and
`busy_blocks` to match, inside the caller's transaction (policy and blocks commit together).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from models.calendars import Calendar
from models.events import BusyBlock, CalendarEvent

BUSY = "busy"


@dataclass
class RedecideStats:
    events_changed: int = 0
    blocks_added: int = 0
    blocks_removed: int = 0


def redecide_host_events(
    session: Session,
    host_id: int,
    decide: Callable[[CalendarEvent], str],
    now: datetime,
) -> RedecideStats:
    """Apply `decide` to every stored event of the host's calendars; busy ⇔ a block."""
    stats = RedecideStats()
    calendar_ids = list(session.scalars(select(Calendar.id).where(Calendar.host_id == host_id)))
    for calendar_id in calendar_ids:
        blocks = {
            key: (block_id, start, end)
            for block_id, key, start, end in session.execute(
                select(BusyBlock.id, BusyBlock.event_key, BusyBlock.start, BusyBlock.end).where(
                    BusyBlock.calendar_id == calendar_id
                )
            )
        }
        events = session.scalars(
            select(CalendarEvent).where(CalendarEvent.calendar_id == calendar_id)
        ).all()
        for event in events:
            decision = str(decide(event))
            if decision != event.decision:
                session.execute(
                    update(CalendarEvent)
                    .where(CalendarEvent.id == event.id)
                    .values(decision=decision, applied_at=now)
                )
                stats.events_changed += 1
            block = blocks.get(event.google_event_id)
            wants_block = decision == BUSY and event.start is not None and event.end is not None
            if wants_block and block is None:
                session.execute(
                    insert(BusyBlock).values(
                        calendar_id=calendar_id,
                        event_key=event.google_event_id,
                        start=event.start,
                        end=event.end,
                        applied_at=now,
                    )
                )
                stats.blocks_added += 1
            elif wants_block and block is not None and block[1:] != (event.start, event.end):
                session.execute(
                    update(BusyBlock)
                    .where(BusyBlock.id == block[0])
                    .values(start=event.start, end=event.end, applied_at=now)
                )
            elif not wants_block and block is not None:
                session.execute(delete(BusyBlock).where(BusyBlock.id == block[0]))
                stats.blocks_removed += 1
    session.flush()
    return stats
