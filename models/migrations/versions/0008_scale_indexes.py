"""indexes for periodic queries at 100,000 calendars (bench/fleet_scale.py)

Revision ID: 0008_scale_indexes
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_scale_indexes"
down_revision = "0007_audit_followups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_sync_states_syncing_since",
        "sync_states",
        ["syncing_since"],
        postgresql_where=sa.text("syncing_since IS NOT NULL"),
        sqlite_where=sa.text("syncing_since IS NOT NULL"),
    )
    op.create_index(
        "ix_channels_live_expiration",
        "channels",
        ["expiration", "created_at"],
        postgresql_where=sa.text("stopped_at IS NULL"),
        sqlite_where=sa.text("stopped_at IS NULL"),
    )
    op.create_index("ix_channels_last_notification_at", "channels", ["last_notification_at"])


def downgrade() -> None:
    op.drop_index("ix_channels_last_notification_at", table_name="channels")
    op.drop_index("ix_channels_live_expiration", table_name="channels")
    op.drop_index("ix_sync_states_syncing_since", table_name="sync_states")
