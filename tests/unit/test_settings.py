"""Settings come from CALSYNC_* variables; a wrong value names the variable."""

from __future__ import annotations

import pytest

from calsync.settings import Settings, SettingsError


def test_embedded_defaults_need_no_services(tmp_path) -> None:
    settings = Settings.from_env({"CALSYNC_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path}/calsync.db"
    assert settings.broker_url.startswith("sqla+sqlite:///")
    assert settings.is_embedded_broker


def test_platform_names_are_accepted_and_normalized() -> None:
    settings = Settings.from_env(
        {"DATABASE_URL": "postgres://u@db:5432/app", "REDIS_URL": "redis://cache:6379/0"}
    )
    assert settings.database_url == "postgresql+psycopg://u@db:5432/app"
    assert settings.broker_url == "redis://cache:6379/0"


def test_project_names_win_over_platform_names() -> None:
    settings = Settings.from_env(
        {"DATABASE_URL": "postgres://u@a/x", "CALSYNC_DATABASE_URL": "postgresql://u@b/y"}
    )
    assert settings.database_url == "postgresql+psycopg://u@b/y"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("CALSYNC_STALE_AFTER_SECONDS", "soon", "whole number"),
        ("CALSYNC_SYNC_HORIZON_DAYS", "0", "greater than zero"),
        ("CALSYNC_CHANNEL_TTL_SECONDS", "-5", "greater than zero"),
        ("CALSYNC_PUBLIC_URL", "ftp://example.com", "scheme"),
        ("CALSYNC_DATABASE_URL", "mysql://x", "scheme"),
        ("CALSYNC_BROKER_URL", "kafka://x", "scheme"),
        ("CALSYNC_ADMIN_TOKEN", "   ", "must not be empty"),
        ("REDIS_URL", "http://x", "scheme"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as excinfo:
        Settings.from_env({name: value})
    assert name in str(excinfo.value)
    assert fragment in str(excinfo.value)


def test_webhook_address_is_public_url_plus_path() -> None:
    settings = Settings.from_env({"CALSYNC_PUBLIC_URL": "https://calsync.example.com/"})
    assert settings.webhook_address == "https://calsync.example.com/webhooks/google"
