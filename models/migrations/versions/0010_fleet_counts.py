"""paged periodic reads: the moments' indexes end with the calendar id

Revision ID: 0010_fleet_counts
Revises: 0009_periodic_indexes

The safety net and the audit round read the sync states whose moment came a page at a
time, ordered by (moment, calendar id) (models/stored_moments.py): an index on both
columns serves each page as one range, however many calendars are due.
"""

from alembic import op

revision = "0010_fleet_counts"
down_revision = "0009_periodic_indexes"
branch_labels = None
depends_on = None

PAGED = ("next_check_at", "next_audit_at")


def upgrade() -> None:
    for name in PAGED:
        op.drop_index(f"ix_sync_states_{name}", table_name="sync_states")
        op.create_index(f"ix_sync_states_{name}", "sync_states", [name, "calendar_id"])


def downgrade() -> None:
    for name in PAGED:
        op.drop_index(f"ix_sync_states_{name}", table_name="sync_states")
        op.create_index(f"ix_sync_states_{name}", "sync_states", [name])
