"""pending deliveries indexed for sending

Revision ID: 0011_delivery_queue
Revises: 0010_fleet_counts

A sender claims its endpoint's oldest due deliveries that head their host's lane. The old
indexes held every delivery ever made (a week of them) and served the lane heads only by
grouping all pending rows at every claim; partial indexes hold just the pending ones, in
queue order and per lane, so a claim reads a page of index entries.
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_delivery_queue"
down_revision = "0010_fleet_counts"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.drop_index("ix_webhook_deliveries_lane", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_queue",
        "webhook_deliveries",
        ["endpoint_id", "event_id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    op.create_index(
        "ix_webhook_deliveries_lane",
        "webhook_deliveries",
        ["endpoint_id", "host_id", "event_id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_lane", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_queue", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_webhook_deliveries_lane",
        "webhook_deliveries",
        ["endpoint_id", "host_id", "status", "event_id"],
    )
