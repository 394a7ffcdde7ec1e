"""channel tokens stored hashed

Revision ID: 0002
Revises: 0001
"""

import hashlib
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import models.base

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

channels = sa.table(
    "channels",
    sa.column("id", sa.String),
    sa.column("token", sa.String),
    sa.column("token_hash", sa.String),
    sa.column("stopped_at", models.base.UTCDateTime()),
)


def upgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_hash", sa.String(length=64), nullable=True))
    connection = op.get_bind()
    # In Python, the same on both databases (SQLite has no SHA-256); channels are few.
    rows = connection.execute(sa.select(channels.c.id, channels.c.token)).all()
    for channel_id, token in rows:
        connection.execute(
            channels.update()
            .where(channels.c.id == channel_id)
            .values(token_hash=hashlib.sha256(token.encode()).hexdigest())
        )
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.alter_column("token_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column("token")


def downgrade() -> None:
    # The tokens cannot be recovered from their hashes: the channels are marked stopped (the
    # older code then refuses their notifications and opens new channels on renewal).
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token", sa.String(length=256), nullable=False, server_default="")
        )
    connection = op.get_bind()
    connection.execute(
        channels.update().where(channels.c.stopped_at.is_(None)).values(stopped_at=datetime.now(UTC))
    )
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("token_hash")
