"""The Alembic history has one head and produces exactly the schema the models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import PrimaryKeyConstraint, UniqueConstraint

from models import Base
from models.db import get_engine
from models.migrate import alembic_config, downgrade, upgrade


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, heads


def test_models_match_migrated_schema(db, settings) -> None:
    with get_engine(settings.database_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_downgrade_upgrade_on_a_scratch_sqlite(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/scratch.db"
    upgrade(url)
    downgrade(url, "base")
    upgrade(url)
    with get_engine(url).connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_channel_tokens_are_converted_to_their_hashes(tmp_path) -> None:
    import hashlib

    from sqlalchemy import text

    url = f"sqlite:///{tmp_path}/tokens.db"
    upgrade(url, "0001")
    with get_engine(url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO hosts (id, name, time_zone, busy_policy, created_at) "
                "VALUES (1, 'h', 'UTC', '{}', '2026-01-01 00:00:00.000000')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO google_accounts (id, host_id, credentials_encrypted, "
                "state, created_at, updated_at) VALUES (1, 1, x'00', 'ok', "
                "'2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO calendars (id, host_id, account_id, google_calendar_id, "
                "watch_failures, created_at) VALUES (1, 1, 1, 'c', 0, "
                "'2026-01-01 00:00:00.000000')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO channels (id, calendar_id, token, created_at) VALUES "
                "('ch-1', 1, 'the-token', '2026-01-01 00:00:00.000000')"
            )
        )
    upgrade(url)
    with get_engine(url).connect() as conn:
        rows = conn.execute(text("SELECT * FROM channels")).mappings().all()
    assert [row["token_hash"] for row in rows] == [hashlib.sha256(b"the-token").hexdigest()]
    assert "token" not in rows[0]


def test_every_foreign_key_can_be_followed_by_an_index() -> None:
    """A row deleted on the referenced side makes the database find its referencing rows
    (ON DELETE CASCADE, or the check that none remain): without an index leading with the
    foreign key's column that is a scan of the whole referencing table per deleted row —
    the week-old outbox events pruned every 10 s against every delivery kept for a week.
    (The schema at head equals the models': test_models_match_migrated_schema.)"""
    unindexed = []
    for table in Base.metadata.sorted_tables:
        leading = {index.columns[0].name for index in table.indexes}
        leading |= {
            next(iter(constraint.columns)).name
            for constraint in table.constraints
            if isinstance(constraint, PrimaryKeyConstraint | UniqueConstraint)
            and constraint.columns
        }
        unindexed += [
            f"{table.name}.{key.parent.name}"
            for key in table.foreign_keys
            if key.parent.name not in leading
        ]
    assert unindexed == []
