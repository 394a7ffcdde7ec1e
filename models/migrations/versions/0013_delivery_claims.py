"""pending deliveries: lane heads found in one ordered read; claims updated in place

Revision ID: 0013_delivery_claims
Revises: 0012_history_indexes

A sender now finds its lane heads in one read of the queue index (rules/outbound_lanes.py),
so the lane index only cost upkeep for every delivery written and claimed. Free space left
on the table's pages (fillfactor 80, PostgreSQL) lets a claim, which changes no indexed
column, rewrite its row on the same page with no new index entries (a HOT update): without
it the rows a fan-out has just written fill their pages and each claim adds an entry to
every index, the queue's included.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_delivery_claims"
down_revision = "0012_history_indexes"
branch_labels = None
depends_on = None

PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.drop_index("ix_webhook_deliveries_lane", table_name="webhook_deliveries")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE webhook_deliveries SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE webhook_deliveries RESET (fillfactor)")
    op.create_index(
        "ix_webhook_deliveries_lane",
        "webhook_deliveries",
        ["endpoint_id", "host_id", "event_id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
