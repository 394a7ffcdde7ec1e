"""history pruned by index

Revision ID: 0012_history_indexes
Revises: 0011_delivery_queue

Two periodic deletes read whole tables. The hourly prune of sync runs deletes by age
(`started_at`), which the per-calendar index (calendar_id, started_at) cannot serve: at
100,000 calendars a month of runs is tens of millions of rows. The outbound prune (every
10 s) deletes the deliveries of events older than the retention, then the events; each
deleted event makes the database look for deliveries still pointing at it (ON DELETE
CASCADE), and with no index leading with `event_id` both were scans of every delivery kept.
"""

from alembic import op

revision = "0012_history_indexes"
down_revision = "0011_delivery_queue"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sync_runs_started_at", "sync_runs", ["started_at"])
    op.create_index("ix_webhook_deliveries_event", "webhook_deliveries", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_event", table_name="webhook_deliveries")
    op.drop_index("ix_sync_runs_started_at", table_name="sync_runs")
