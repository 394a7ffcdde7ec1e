"""Encryption at rest for stored Google credentials (Fernet: AES-128-CBC + HMAC).

The current key (CALSYNC_SECRET_KEY, else a key file in the data dir with SQLite) encrypts;
it and the previous keys (CALSYNC_SECRET_KEY_PREVIOUS) decrypt, so a key can be rotated
without downtime: `calsync keys rotate` then re-encrypts what the old keys wrote.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.private_files import private_directory
from core.settings import (
    MIN_KEY_ENTROPY_BITS,
    Settings,
    SettingsError,
    get_settings,
    key_entropy_bits,
)
from models.accounts import GoogleAccount
from models.outbound import WebhookEndpoint

REQUIRED_FIELDS = ("client_id", "client_secret", "refresh_token")
KEY_FILE_NAME = "secret.key"

# Key file contents by path: read once per process (the file never changes under us).
_key_files: dict[Path, str] = {}


class CredentialsError(ValueError):
    """Credentials JSON is not a usable authorized-user document."""


def _create_key_file(key_file: Path) -> str:
    """Write a new random key to `key_file` unless another process got there first; returns
    the key the file holds. The file appears whole or not at all: written and synced under a
    temporary name, then linked into place. Unlike rename, link never replaces a file, so of
    two processes starting together the loser reads the winner's key instead of overwriting
    it after the winner may already have encrypted with it."""
    private_directory(key_file.parent)
    material = base64.urlsafe_b64encode(os.urandom(32)).decode()
    fd, temp_name = tempfile.mkstemp(dir=key_file.parent, prefix=f".{KEY_FILE_NAME}.")  # 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(material)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(temp_name, key_file)
        except FileExistsError:
            return key_file.read_text().strip()
    finally:
        os.unlink(temp_name)
    directory = os.open(key_file.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the new name survives a crash too
    finally:
        os.close(directory)
    return material


def _key_file_material(settings: Settings) -> str:
    key_file = settings.data_dir / KEY_FILE_NAME
    material = _key_files.get(key_file)
    if material is not None:
        return material
    try:
        material = key_file.read_text().strip()
    except FileNotFoundError:
        material = _create_key_file(key_file)
    if key_entropy_bits(material) < MIN_KEY_ENTROPY_BITS:
        raise SettingsError(
            f"the key file {key_file} holds no usable key (empty, or under 32 bytes of "
            "entropy): set CALSYNC_SECRET_KEY, or remove the file to have a new key made "
            "(credentials stored under the old one must then be attached again)"
        )
    _key_files[key_file] = material
    return material


def _key_material(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    if not settings.database_url.startswith("sqlite"):
        raise SettingsError("CALSYNC_SECRET_KEY must be set when the database is not SQLite")
    # Embedded default: a random key kept next to the database, readable by the owner only.
    return _key_file_material(settings)


def _fernet_of(material: str) -> Fernet:
    # Key material of any form (a passphrase, base64, hex) becomes a Fernet key by SHA-256.
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest()))


def _fernets(settings: Settings) -> MultiFernet:
    current = _key_material(settings)
    return MultiFernet([_fernet_of(current), *map(_fernet_of, settings.previous_secret_keys)])


def check_keys(settings: Settings | None = None) -> None:
    """Raise SettingsError now, at process start, if the keys are missing or unusable, rather
    than on the first request that touches credentials."""
    _fernets(settings or get_settings())


def validate_authorized_user(info: object) -> dict:
    """Check an authorized-user JSON object; returns a clean copy or raises CredentialsError."""
    if not isinstance(info, dict):
        raise CredentialsError("credentials must be a JSON object (Google authorized-user format)")
    missing = [name for name in REQUIRED_FIELDS if not isinstance(info.get(name), str)]
    if missing:
        raise CredentialsError("credentials lack " + ", ".join(missing))
    clean = {k: v for k, v in info.items() if isinstance(v, str | list)}
    clean.setdefault("type", "authorized_user")
    return clean


def encrypt_credentials(info: dict, settings: Settings | None = None) -> bytes:
    return _fernets(settings or get_settings()).encrypt(json.dumps(info, sort_keys=True).encode())


def decrypt_credentials(blob: bytes, settings: Settings | None = None) -> dict:
    try:
        return json.loads(_fernets(settings or get_settings()).decrypt(blob))
    except InvalidToken:
        raise CredentialsError(
            "stored credentials cannot be decrypted with CALSYNC_SECRET_KEY or "
            "CALSYNC_SECRET_KEY_PREVIOUS"
        ) from None


def signing_key(purpose: str, settings: Settings | None = None) -> bytes:
    """A key for signing short-lived values (e.g. OAuth state), derived from SECRET_KEY so one
    secret serves both, yet separate from the encryption key."""
    material = _key_material(settings or get_settings())
    return hashlib.sha256(f"calsync-sign:{purpose}:{material}".encode()).digest()


@dataclass
class RotationCounts:
    reencrypted: int = 0
    already_current: int = 0
    undecryptable: int = 0  # under none of the keys: left as they are

    def as_dict(self) -> dict[str, int]:
        return {
            "reencrypted": self.reencrypted,
            "alreadyCurrent": self.already_current,
            "undecryptable": self.undecryptable,
        }


def rotate_credentials(
    sessions: sessionmaker[Session], settings: Settings | None = None, batch_size: int = 100
) -> RotationCounts:
    """Re-encrypt every stored credential under the current key, `batch_size` accounts per
    transaction. Idempotent: what the current key already decrypts is left alone. A row
    changed meanwhile (a reconnect writes under the current key) is not overwritten."""
    settings = settings or get_settings()
    current = _fernet_of(_key_material(settings))
    every_key = _fernets(settings)
    counts = RotationCounts()
    after_id = 0
    while True:
        with sessions() as session, session.begin():
            batch = session.execute(
                select(GoogleAccount.id, GoogleAccount.credentials_encrypted)
                .where(GoogleAccount.id > after_id)
                .order_by(GoogleAccount.id)
                .limit(batch_size)
            ).all()
            for account_id, blob in batch:
                if _sealed_with(current, blob):
                    counts.already_current += 1
                    continue
                try:
                    rotated = every_key.rotate(blob)
                except InvalidToken:
                    counts.undecryptable += 1
                    continue
                changed = session.execute(
                    update(GoogleAccount)
                    .where(
                        GoogleAccount.id == account_id,
                        GoogleAccount.credentials_encrypted == blob,
                    )
                    .values(credentials_encrypted=rotated)
                    .execution_options(synchronize_session=False)
                )
                if changed.rowcount:  # type: ignore[attr-defined]
                    counts.reencrypted += 1
                else:
                    counts.already_current += 1
        if len(batch) < batch_size:
            _rotate_webhook_secrets(sessions, current, every_key, counts)
            return counts
        after_id = batch[-1][0]


def _sealed_with(key: Fernet, blob: bytes) -> bool:
    try:
        key.decrypt(blob)
    except InvalidToken:
        return False
    return True


def _rotate_webhook_secrets(
    sessions: sessionmaker[Session], current: Fernet, every_key: MultiFernet, counts: RotationCounts
) -> None:
    """Outbound webhook secrets are sealed with the same key: re-encrypted alike (few rows,
    one transaction)."""
    with sessions() as session, session.begin():
        for endpoint in session.scalars(select(WebhookEndpoint).with_for_update()):
            for column in ("secret_encrypted", "previous_secret_encrypted"):
                blob = getattr(endpoint, column)
                if blob is None:
                    continue
                if _sealed_with(current, blob):
                    counts.already_current += 1
                    continue
                try:
                    setattr(endpoint, column, every_key.rotate(blob))
                    counts.reencrypted += 1
                except InvalidToken:
                    counts.undecryptable += 1
