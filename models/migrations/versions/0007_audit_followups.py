"""audits: undecided attempts are rows too (matched null, a detail in words)

Revision ID: 0007_audit_followups
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_audit_followups"
down_revision = "0006_host_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.alter_column("matched", existing_type=sa.Boolean(), nullable=True)
        batch_op.add_column(sa.Column("detail", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM audits WHERE matched IS NULL")
    with op.batch_alter_table("audits", schema=None) as batch_op:
        batch_op.drop_column("detail")
        batch_op.alter_column("matched", existing_type=sa.Boolean(), nullable=False)
