"""paged periodic reads and fleet counts kept by triggers

Revision ID: 0010_fleet_counts
Revises: 0009_periodic_indexes

The safety net and the audit round read the sync states whose moment came a page at a
time, ordered by (moment, calendar id) (models/stored_moments.py): an index on both
columns serves each page as one range, however many calendars are due.

The ops snapshot's counts of calendars and live channels come from `fleet_counts`, delta
rows appended by triggers on `calendars` and `channels` (models/fleet_counts.py), started
here from the rows present. The oldest live channel is found by a partial index.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_fleet_counts"
down_revision = "0009_periodic_indexes"
branch_labels = None
depends_on = None

PAGED = ("next_check_at", "next_audit_at")
LIVE = "stopped_at IS NULL"

# PostgreSQL: inserts and deletes counted once per statement (a COPY of 100,000 calendars
# appends one row), from the statement's transition table; `stopped_at` changes per row,
# and only for statements that set it (the push path updates channels all the time).
POSTGRESQL_FUNCTIONS = {
    "fleet_counts_calendars_insert": "SELECT 'calendars', count(*) FROM new_rows",
    "fleet_counts_calendars_delete": "SELECT 'calendars', -count(*) FROM old_rows",
    "fleet_counts_channels_insert": (
        f"SELECT 'live_channels', count(*) FROM new_rows WHERE {LIVE}"
    ),
    "fleet_counts_channels_delete": (
        f"SELECT 'live_channels', -count(*) FROM old_rows WHERE {LIVE}"
    ),
}
POSTGRESQL_TRIGGERS = (
    "CREATE TRIGGER fleet_counts_calendars_insert AFTER INSERT ON calendars"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION fleet_counts_calendars_insert()",
    "CREATE TRIGGER fleet_counts_calendars_delete AFTER DELETE ON calendars"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION fleet_counts_calendars_delete()",
    "CREATE TRIGGER fleet_counts_channels_insert AFTER INSERT ON channels"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION fleet_counts_channels_insert()",
    "CREATE TRIGGER fleet_counts_channels_delete AFTER DELETE ON channels"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION fleet_counts_channels_delete()",
    "CREATE TRIGGER fleet_counts_channels_update AFTER UPDATE OF stopped_at ON channels"
    " FOR EACH ROW WHEN ((OLD.stopped_at IS NULL) <> (NEW.stopped_at IS NULL))"
    " EXECUTE FUNCTION fleet_counts_channels_update()",
)
# TRUNCATE (PostgreSQL only; SQLite has none, and its DELETE fires the row triggers) holds
# the table to itself, so none of its changes are pending elsewhere: the count restarts at 0.
POSTGRESQL_TRUNCATES = {"calendars": "calendars", "channels": "live_channels"}
POSTGRESQL_UPDATE_FUNCTION = """
CREATE FUNCTION fleet_counts_channels_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO fleet_counts (name, delta)
  VALUES ('live_channels', CASE WHEN NEW.stopped_at IS NULL THEN 1 ELSE -1 END);
  RETURN NULL;
END $$
"""

# SQLite: row triggers only.
SQLITE_TRIGGERS = (
    "CREATE TRIGGER fleet_counts_calendars_insert AFTER INSERT ON calendars"
    " BEGIN INSERT INTO fleet_counts (name, delta) VALUES ('calendars', 1); END",
    "CREATE TRIGGER fleet_counts_calendars_delete AFTER DELETE ON calendars"
    " BEGIN INSERT INTO fleet_counts (name, delta) VALUES ('calendars', -1); END",
    "CREATE TRIGGER fleet_counts_channels_insert AFTER INSERT ON channels"
    " WHEN NEW.stopped_at IS NULL"
    " BEGIN INSERT INTO fleet_counts (name, delta) VALUES ('live_channels', 1); END",
    "CREATE TRIGGER fleet_counts_channels_delete AFTER DELETE ON channels"
    " WHEN OLD.stopped_at IS NULL"
    " BEGIN INSERT INTO fleet_counts (name, delta) VALUES ('live_channels', -1); END",
    "CREATE TRIGGER fleet_counts_channels_update AFTER UPDATE OF stopped_at ON channels"
    " WHEN (OLD.stopped_at IS NULL) <> (NEW.stopped_at IS NULL)"
    " BEGIN INSERT INTO fleet_counts (name, delta) VALUES"
    " ('live_channels', CASE WHEN NEW.stopped_at IS NULL THEN 1 ELSE -1 END); END",
)
TRIGGERS = (
    ("calendars", "fleet_counts_calendars_insert"),
    ("calendars", "fleet_counts_calendars_delete"),
    ("channels", "fleet_counts_channels_insert"),
    ("channels", "fleet_counts_channels_delete"),
    ("channels", "fleet_counts_channels_update"),
)


def upgrade() -> None:
    for name in PAGED:
        op.drop_index(f"ix_sync_states_{name}", table_name="sync_states")
        op.create_index(f"ix_sync_states_{name}", "sync_states", [name, "calendar_id"])
    op.create_index(
        "ix_channels_live_created_at",
        "channels",
        ["created_at"],
        postgresql_where=sa.text(LIVE),
        sqlite_where=sa.text(LIVE),
    )
    op.create_table(
        "fleet_counts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fleet_counts"),
    )
    if op.get_bind().dialect.name == "postgresql":
        for function, body in POSTGRESQL_FUNCTIONS.items():
            op.execute(
                f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                f"BEGIN\n  INSERT INTO fleet_counts (name, delta) {body}"
                " HAVING count(*) > 0;\n  RETURN NULL;\nEND $$"
            )
        op.execute(POSTGRESQL_UPDATE_FUNCTION)
        for table, name in POSTGRESQL_TRUNCATES.items():
            op.execute(
                f"CREATE FUNCTION fleet_counts_{table}_truncate() RETURNS trigger"
                " LANGUAGE plpgsql AS $$\n"
                f"BEGIN\n  DELETE FROM fleet_counts WHERE name = '{name}';\n"
                "  RETURN NULL;\nEND $$"
            )
            op.execute(
                f"CREATE TRIGGER fleet_counts_{table}_truncate AFTER TRUNCATE ON {table}"
                f" FOR EACH STATEMENT EXECUTE FUNCTION fleet_counts_{table}_truncate()"
            )
        statements = POSTGRESQL_TRIGGERS
    else:
        statements = SQLITE_TRIGGERS
    for statement in statements:
        op.execute(statement)
    # Started from the rows present: on PostgreSQL, CREATE TRIGGER keeps writers out of
    # both tables until the migration commits, so the triggers count every change after
    # these counts.
    op.execute(
        "INSERT INTO fleet_counts (name, delta) SELECT 'calendars', count(*) FROM calendars"
    )
    op.execute(
        "INSERT INTO fleet_counts (name, delta)"
        f" SELECT 'live_channels', count(*) FROM channels WHERE {LIVE}"
    )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (f" ON {table}" if postgresql else ""))
    if postgresql:
        for table in POSTGRESQL_TRUNCATES:
            op.execute(f"DROP TRIGGER IF EXISTS fleet_counts_{table}_truncate ON {table}")
        truncates = [f"fleet_counts_{table}_truncate" for table in POSTGRESQL_TRUNCATES]
        for function in (*POSTGRESQL_FUNCTIONS, "fleet_counts_channels_update", *truncates):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_table("fleet_counts")
    op.drop_index("ix_channels_live_created_at", table_name="channels")
    for name in PAGED:
        op.drop_index(f"ix_sync_states_{name}", table_name="sync_states")
        op.create_index(f"ix_sync_states_{name}", "sync_states", [name])
