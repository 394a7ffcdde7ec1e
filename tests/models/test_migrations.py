"""The Alembic history has one head and produces exactly the schema the models declare."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

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
