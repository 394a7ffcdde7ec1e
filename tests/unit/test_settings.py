"""Settings come from CALSYNC_* variables; a wrong value names the variable."""

from __future__ import annotations

import pytest

from core.settings import Settings, SettingsError


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
        ("CALSYNC_PROJECT_REQUESTS_PER_DAY", "a million", "whole number"),
        ("CALSYNC_PROJECT_REQUESTS_PER_DAY", "0", "greater than zero"),
        ("CALSYNC_RATE_WINDOW_SECONDS", "0", "greater than zero"),
        ("CALSYNC_OUTBOUND_FIRST_RETRY_SECONDS", "1", "between 2 and 3600"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as excinfo:
        Settings.from_env({name: value})
    assert name in str(excinfo.value)
    assert fragment in str(excinfo.value)


def test_daily_budget_is_optional() -> None:
    assert Settings.from_env({}).project_requests_per_day is None
    settings = Settings.from_env({"CALSYNC_PROJECT_REQUESTS_PER_DAY": "1000000"})
    assert settings.project_requests_per_day == 1_000_000


def test_webhook_address_is_public_url_plus_path() -> None:
    settings = Settings.from_env({"CALSYNC_PUBLIC_URL": "https://calsync.example.com/"})
    assert settings.webhook_address == "https://calsync.example.com/webhooks/google"


def test_push_intake_auto_picks_redis_only_for_postgresql_with_a_redis_broker(tmp_path) -> None:
    services = {
        "CALSYNC_DATA_DIR": str(tmp_path),
        "CALSYNC_DATABASE_URL": "postgresql://u@db/app",
        "CALSYNC_BROKER_URL": "redis://cache:6379/0",
    }
    assert Settings.from_env(services).uses_redis_intake
    assert not Settings.from_env(services | {"CALSYNC_PUSH_INTAKE": "direct"}).uses_redis_intake
    embedded = Settings.from_env({"CALSYNC_DATA_DIR": str(tmp_path)})
    assert not embedded.uses_redis_intake
    sqlite_on_redis = services | {"CALSYNC_DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}
    assert not Settings.from_env(sqlite_on_redis).uses_redis_intake


def test_push_intake_refuses_unknown_values_and_redis_without_its_services(tmp_path) -> None:
    with pytest.raises(SettingsError, match="CALSYNC_PUSH_INTAKE"):
        Settings.from_env({"CALSYNC_PUSH_INTAKE": "kafka"})
    with pytest.raises(SettingsError, match="CALSYNC_PUSH_INTAKE=redis needs PostgreSQL"):
        Settings.from_env({"CALSYNC_DATA_DIR": str(tmp_path), "CALSYNC_PUSH_INTAKE": "redis"})
