"""Checks every process (web, worker, beat, CLI) runs before it serves anything, so a bad
deploy stops at start with a message naming what to fix instead of failing on first use."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from core.private_files import private_directory, private_file
from core.settings import Settings, get_settings
from models.credentials_box import check_keys


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url.removeprefix("sqla+"))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def prepare_process(settings: Settings | None = None) -> None:
    """Raises SettingsError when the encryption keys are missing or weak; makes the embedded
    defaults' data dir (0700) and SQLite files (0600) private."""
    settings = settings or get_settings()
    embedded = [
        path
        for url in (settings.database_url, settings.broker_url)
        if (path := _sqlite_path(url)) is not None
    ]
    if embedded:
        private_directory(settings.data_dir)
    for path in embedded:
        private_file(path)
    check_keys(settings)
