"""Encryption at rest for stored Google credentials (Fernet: AES-128-CBC + HMAC)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from core.settings import Settings, SettingsError, get_settings

REQUIRED_FIELDS = ("client_id", "client_secret", "refresh_token")


class CredentialsError(ValueError):
    """Credentials JSON is not a usable authorized-user document."""


def _key_material(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    if not settings.database_url.startswith("sqlite"):
        raise SettingsError("CALSYNC_SECRET_KEY must be set when the database is not SQLite")
    # Embedded default: a random key kept next to the database, readable by the owner only.
    key_file = settings.data_dir / "secret.key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.urlsafe_b64encode(os.urandom(32)).decode())
    return Path(key_file).read_text().strip()


def _fernet(settings: Settings | None = None) -> Fernet:
    material = _key_material(settings or get_settings())
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(material.encode()).digest()))


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
    return _fernet(settings).encrypt(json.dumps(info, sort_keys=True).encode())


def decrypt_credentials(blob: bytes, settings: Settings | None = None) -> dict:
    try:
        return json.loads(_fernet(settings).decrypt(blob))
    except InvalidToken:
        raise CredentialsError(
            "stored credentials cannot be decrypted with this SECRET_KEY"
        ) from None


def signing_key(purpose: str, settings: Settings | None = None) -> bytes:
    """A key for signing short-lived values (e.g. OAuth state), derived from SECRET_KEY so one
    secret serves both, yet separate from the encryption key."""
    material = _key_material(settings or get_settings())
    return hashlib.sha256(f"calsync-sign:{purpose}:{material}".encode()).digest()
