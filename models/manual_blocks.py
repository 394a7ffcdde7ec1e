"""Changes to a host's manual blocks, each with its `busy.changed` outbox row in the same
transaction: the API (`webhook/api_blocks.py`) and the host's page (`webhook/host_pages/`)
both change blocks only through here, so neither can forget to announce a change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from models.hosts import ManualBlock
from models.outbox_writer import record_busy_change
from rules.busy_changes import Span


def add_blocks(
    session: Session, host_id: int, spans: Sequence[Span], note: str
) -> list[ManualBlock]:
    """New blocks (one per span; a weekly repeat is several spans) announced as one change."""
    blocks = [ManualBlock(host_id=host_id, start=start, end=end, note=note) for start, end in spans]
    session.add_all(blocks)
    session.flush()
    record_busy_change(
        session,
        host_id=host_id,
        calendar_id=None,
        cause="manual_block_added",
        removed=[],
        added=[(block.start, block.end) for block in blocks],
        now=blocks[0].created_at if blocks else datetime.now(UTC),
    )
    return blocks


def move_block(
    session: Session, block: ManualBlock, start: datetime, end: datetime, note: str
) -> None:
    before = (block.start, block.end)
    block.start, block.end, block.note = start, end, note
    session.flush()
    record_busy_change(
        session,
        host_id=block.host_id,
        calendar_id=None,
        cause="manual_block_changed",
        removed=[before],
        added=[(start, end)],
        now=datetime.now(UTC),
    )


def remove_block(session: Session, block: ManualBlock) -> None:
    session.delete(block)
    session.flush()
    record_busy_change(
        session,
        host_id=block.host_id,
        calendar_id=None,
        cause="manual_block_removed",
        removed=[(block.start, block.end)],
        added=[],
        now=datetime.now(UTC),
    )
