"""stored moments and audit summaries, so every periodic read uses an index

Revision ID: 0009_periodic_indexes
Revises: 0008_scale_indexes

The moments (next_check_at, next_audit_at, watch_check_at) start unknown (NULL): the first
round of each periodic task judges every calendar by the rules, as before, and stores its
moment (models/stored_moments.py). The audit summaries are filled from the audits.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_periodic_indexes"
down_revision = "0008_scale_indexes"
branch_labels = None
depends_on = None

MOMENTS = ("next_check_at", "next_audit_at", "watch_check_at")
PERSISTENT = "audit_verdict = 'persistent'"
ATTENTION = (
    "dirty_since IS NOT NULL OR syncing_since IS NOT NULL OR blocked_reason IS NOT NULL"
    " OR consecutive_failures > 0 OR last_success_at IS NULL OR lease_owner IS NOT NULL"
)
NOT_OK = "state <> 'ok'"


def upgrade() -> None:
    with op.batch_alter_table("sync_states") as batch:
        for name in (*MOMENTS, "audit_since"):
            batch.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("audit_verdict", sa.String(20), nullable=True))
    for name in (*MOMENTS, "audit_since"):
        op.create_index(f"ix_sync_states_{name}", "sync_states", [name])
    op.create_index(
        "ix_sync_states_audit_persistent",
        "sync_states",
        ["calendar_id"],
        postgresql_where=sa.text(PERSISTENT),
        sqlite_where=sa.text(PERSISTENT),
    )
    op.create_index("ix_sync_states_last_success_at", "sync_states", ["last_success_at"])
    op.create_index(
        "ix_sync_states_attention",
        "sync_states",
        ["calendar_id"],
        postgresql_where=sa.text(ATTENTION),
        sqlite_where=sa.text(ATTENTION),
    )
    op.create_index(
        "ix_google_accounts_needs_reauth",
        "google_accounts",
        ["id"],
        postgresql_where=sa.text(NOT_OK),
        sqlite_where=sa.text(NOT_OK),
    )
    op.execute(
        """
        UPDATE sync_states SET
          audit_since = COALESCE(
            (SELECT MAX(a.at) FROM audits a
              WHERE a.calendar_id = sync_states.calendar_id AND a.matched = TRUE),
            (SELECT MIN(a.at) FROM audits a WHERE a.calendar_id = sync_states.calendar_id)),
          audit_verdict = (
            SELECT a.outcome FROM audits a
             WHERE a.calendar_id = sync_states.calendar_id
               AND a.outcome IN ('matched', 'mismatch', 'persistent')
             ORDER BY a.id DESC LIMIT 1)
        WHERE EXISTS (SELECT 1 FROM audits a WHERE a.calendar_id = sync_states.calendar_id)
        """
    )


def downgrade() -> None:
    op.drop_index("ix_google_accounts_needs_reauth", table_name="google_accounts")
    op.drop_index("ix_sync_states_attention", table_name="sync_states")
    op.drop_index("ix_sync_states_last_success_at", table_name="sync_states")
    op.drop_index("ix_sync_states_audit_persistent", table_name="sync_states")
    for name in (*MOMENTS, "audit_since"):
        op.drop_index(f"ix_sync_states_{name}", table_name="sync_states")
    with op.batch_alter_table("sync_states") as batch:
        for name in ("audit_verdict", "audit_since", *reversed(MOMENTS)):
            batch.drop_column(name)
