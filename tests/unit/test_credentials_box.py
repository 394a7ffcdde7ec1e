"""Encryption keys: weak keys refused naming the variable, the key file made atomically and
privately, previous keys still decrypt, and a missing key stops a process at start."""

from __future__ import annotations

import os
import secrets
import stat
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from core.settings import Settings, SettingsError, key_entropy_bits
from models import credentials_box
from models.credentials_box import (
    CredentialsError,
    check_keys,
    decrypt_credentials,
    encrypt_credentials,
)
from models.startup import prepare_process

CREDENTIALS = {"client_id": "c", "client_secret": "s", "refresh_token": "r"}
POSTGRES = "postgresql+psycopg://calsync@db.invalid/calsync"


def strong_key() -> str:
    return secrets.token_urlsafe(32)


@pytest.mark.parametrize(
    "weak",
    ["x", "", "   ", "test-secret-key-not-for-production", "ab" * 64, secrets.token_hex(31)],
)
def test_weak_keys_are_refused_naming_the_variable(weak: str) -> None:
    for name in ("CALSYNC_SECRET_KEY", "CALSYNC_SECRET_KEY_PREVIOUS"):
        if not weak.strip():
            continue  # an empty value means "unset" in the environment
        with pytest.raises(SettingsError, match=name) as excinfo:
            Settings.from_env({name: weak})
        assert weak not in str(excinfo.value) or len(weak) < 3  # the secret is not echoed
    with pytest.raises(SettingsError, match="CALSYNC_SECRET_KEY"):
        Settings(secret_key=weak)


@pytest.mark.parametrize(
    "make",
    [
        lambda: secrets.token_urlsafe(32),
        lambda: secrets.token_hex(32),
        lambda: Fernet.generate_key().decode(),
        lambda: " ".join(secrets.token_hex(4) + "!" for _ in range(12)),
    ],
)
def test_keys_of_32_random_bytes_are_accepted(make) -> None:
    for _ in range(200):
        key = make()
        assert key_entropy_bits(key) >= 256
        assert Settings.from_env({"CALSYNC_SECRET_KEY": key}).secret_key == key


def test_previous_keys_are_a_comma_separated_list() -> None:
    a, b = strong_key(), strong_key()
    settings = Settings.from_env({"CALSYNC_SECRET_KEY_PREVIOUS": f"{a}, {b}"})
    assert settings.previous_secret_keys == (a, b)
    with pytest.raises(SettingsError, match="CALSYNC_SECRET_KEY_PREVIOUS"):
        Settings.from_env({"CALSYNC_SECRET_KEY_PREVIOUS": f"{a},short"})


def test_new_key_encrypts_and_previous_keys_still_decrypt(tmp_path: Path) -> None:
    old, new = strong_key(), strong_key()
    before = Settings(data_dir=tmp_path, secret_key=old)
    blob = encrypt_credentials(CREDENTIALS, before)
    after = Settings(data_dir=tmp_path, secret_key=new, secret_key_previous=old)
    assert decrypt_credentials(blob, after) == CREDENTIALS
    fresh = encrypt_credentials(CREDENTIALS, after)
    assert decrypt_credentials(fresh, Settings(data_dir=tmp_path, secret_key=new)) == CREDENTIALS
    with pytest.raises(CredentialsError):
        decrypt_credentials(fresh, before)
    with pytest.raises(CredentialsError, match="CALSYNC_SECRET_KEY_PREVIOUS"):
        decrypt_credentials(blob, Settings(data_dir=tmp_path, secret_key=new))


def test_key_file_is_private_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = Settings(data_dir=data_dir)
    blob = encrypt_credentials(CREDENTIALS, settings)
    key_file = data_dir / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert key_entropy_bits(key_file.read_text()) >= 256
    assert [p.name for p in data_dir.iterdir()] == ["secret.key"]  # no temporary file left
    credentials_box._key_files.clear()
    assert decrypt_credentials(blob, settings) == CREDENTIALS


@pytest.mark.parametrize("content", ["", "\n", "short", "x" * 80])
def test_a_weak_key_file_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "secret.key").write_text(content)
    with pytest.raises(SettingsError, match="CALSYNC_SECRET_KEY") as excinfo:
        check_keys(Settings(data_dir=tmp_path))
    assert "secret.key" in str(excinfo.value)


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    """Every racer ends with the key in the file (the loser reads the winner's), never a key
    of its own that another racer then overwrites."""
    key_file = tmp_path / "secret.key"
    start = threading.Barrier(8)
    seen: list[str] = []

    def racer() -> None:
        start.wait()
        seen.append(credentials_box._create_key_file(key_file))

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(seen) == {key_file.read_text()}
    assert os.listdir(tmp_path) == ["secret.key"]


def test_a_missing_key_with_postgresql_stops_the_process_at_start(tmp_path: Path) -> None:
    from webhook import create_app

    settings = Settings(data_dir=tmp_path, database_url=POSTGRES)
    with pytest.raises(SettingsError, match="CALSYNC_SECRET_KEY must be set"):
        prepare_process(settings)
    with pytest.raises(SettingsError, match="CALSYNC_SECRET_KEY must be set"):
        create_app(settings)


def test_worker_and_beat_stop_at_start_on_a_missing_key(monkeypatch, tmp_path: Path) -> None:
    from worker import observability

    settings = Settings(data_dir=tmp_path, database_url=POSTGRES)
    monkeypatch.setattr(observability, "get_settings", lambda: settings)
    with pytest.raises(SystemExit, match="CALSYNC_SECRET_KEY"):
        observability._check_configuration()
    receivers = {
        signal: [ref() for _key, ref in signal.receivers]
        for signal in (observability.worker_init, observability.beat_init)
    }
    for signal, connected in receivers.items():
        assert any(
            getattr(r, "__wrapped__", r) is observability._check_configuration
            or r is observability._check_configuration
            for r in connected
        ), signal


def test_embedded_files_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    prepare_process(Settings(data_dir=data_dir))
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for name in ("calsync.db", "broker.db", "secret.key"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name


def test_an_existing_open_data_dir_is_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    (data_dir / "calsync.db").touch(mode=0o644)
    data_dir.chmod(0o755)
    (data_dir / "calsync.db").chmod(0o644)
    prepare_process(Settings(data_dir=data_dir))
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "calsync.db").stat().st_mode) == 0o600
