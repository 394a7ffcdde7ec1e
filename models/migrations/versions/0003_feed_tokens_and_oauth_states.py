"""feed tokens (hashed) on hosts; used OAuth connect states

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import models.base

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("feed_token_hash", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_hosts_feed_token_hash"), ["feed_token_hash"]
        )
    op.create_table(
        "oauth_used_states",
        sa.Column("state_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state_id", name=op.f("pk_oauth_used_states")),
    )
    with op.batch_alter_table("oauth_used_states", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_oauth_used_states_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("oauth_used_states", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_oauth_used_states_expires_at"))
    op.drop_table("oauth_used_states")
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_hosts_feed_token_hash"), type_="unique")
        batch_op.drop_column("feed_token_hash")
