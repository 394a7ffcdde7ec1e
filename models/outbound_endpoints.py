"""Outbound webhook endpoints: registering, secrets (encrypted at rest, rotated with a
24-hour overlap), and which endpoints receive a host's events."""

from __future__ import annotations

import base64
import functools
import secrets
import socket
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import delete
from sqlalchemy.orm import Session

from models.credentials_box import decrypt_credentials, encrypt_credentials
from models.outbound import EndpointState, WebhookDelivery, WebhookEndpoint
from rules.outbound_address import AddressRefused, check_addresses, check_url_form

ENDPOINT_ID_PREFIX = "we_"
SECRET_PREFIX = "whsec_"  # Standard Webhooks' secret format: whsec_ + base64 of the key
ROTATION_OVERLAP = timedelta(hours=24)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _seal(secret: str) -> bytes:
    return encrypt_credentials({"webhookSecret": secret})


@functools.lru_cache(maxsize=1024)
def _unseal(sealed: bytes) -> str:
    # Cached: a sender signs every batch with its endpoint's secrets, and decrypting them
    # each time was a tenth of its claim's CPU. A rotated secret is new ciphertext.
    return str(decrypt_credentials(sealed)["webhookSecret"])


def create_endpoint(
    session: Session,
    *,
    url: str,
    host_ids: list[int] | None,
    description: str,
    created_by_host: int | None,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (returned once, stored encrypted)."""
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=ENDPOINT_ID_PREFIX + secrets.token_urlsafe(16),
        url=url,
        host_ids=host_ids,
        description=description,
        created_by_host=created_by_host,
        secret_encrypted=_seal(secret),
        state=str(EndpointState.ACTIVE),
    )
    session.add(endpoint)
    session.flush()
    return endpoint, secret


def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """The endpoint and its deliveries."""
    # Deliveries first: the result must not depend on ON DELETE CASCADE (SQLite pragma).
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    session.delete(endpoint)


def rotate_secret(session: Session, endpoint: WebhookEndpoint, now: datetime) -> str:
    """A new secret; the current one keeps signing beside it for 24 hours."""
    secret = new_secret()
    endpoint.previous_secret_encrypted = endpoint.secret_encrypted
    endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
    endpoint.secret_encrypted = _seal(secret)
    session.flush()
    return secret


class SigningKeys(Protocol):
    """An endpoint's secrets as stored (a WebhookEndpoint, or a row of those columns)."""

    secret_encrypted: bytes
    previous_secret_encrypted: bytes | None
    previous_secret_expires_at: datetime | None


def signing_secrets(endpoint: SigningKeys, now: datetime) -> list[str]:
    """The secrets that sign a message now: the current one, and the previous one during
    its overlap."""
    found = [_unseal(endpoint.secret_encrypted)]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_encrypted is not None and expires is not None and expires > now:
        found.append(_unseal(endpoint.previous_secret_encrypted))
    return found


def resolve(host: str, port: int) -> list[str]:
    """Every address the name resolves to (an IP literal resolves to itself)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_destination(url: str) -> None:
    """AddressRefused if the URL may not receive webhooks now: its form, and every address
    its host resolves to (checked at registration and again before each send, since a name
    can point elsewhere later)."""
    host, port = check_url_form(url)
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise AddressRefused(f"the URL's host {host!r} does not resolve ({exc})") from None
    check_addresses(url, addresses)
