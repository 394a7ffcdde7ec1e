"""Test data written straight to the database: hosts, accounts, calendars (with their
SyncState row, as `models.registry.attach_calendar` creates it) and watch channels.

Each factory adds and flushes; the caller commits when another connection (the web app, a
worker) must see the rows.
"""

from __future__ import annotations

import itertools
import secrets
from datetime import datetime

from sqlalchemy.orm import Session

from models import Calendar, Channel, GoogleAccount, Host, SyncState
from models.accounts import AccountState
from models.calendars import channel_token_hash
from models.credentials_box import encrypt_credentials

_numbers = itertools.count(1)


def make_host(session: Session, *, name: str | None = None, time_zone: str = "UTC") -> Host:
    host = Host(name=name or f"host {next(_numbers)}", time_zone=time_zone, busy_policy={})
    session.add(host)
    session.flush()
    return host


def make_account(
    session: Session,
    host: Host,
    *,
    email: str | None = None,
    state: str = AccountState.OK,
    credentials: dict | None = None,
) -> GoogleAccount:
    n = next(_numbers)
    info = credentials or {
        "type": "authorized_user",
        "client_id": "test-client.apps.googleusercontent.com",
        "client_secret": "test-client-secret",
        "refresh_token": f"test-refresh-token-{n}",
    }
    account = GoogleAccount(
        host_id=host.id,
        email=email or f"account{n}@example.com",
        credentials_encrypted=encrypt_credentials(info),
        state=state,
    )
    session.add(account)
    session.flush()
    return account


def make_calendar(
    session: Session,
    host: Host,
    account: GoogleAccount,
    *,
    google_calendar_id: str | None = None,
    time_zone: str | None = "UTC",
    dirty_since: datetime | None = None,
    sync_token: str | None = None,
) -> Calendar:
    calendar = Calendar(
        host_id=host.id,
        account_id=account.id,
        google_calendar_id=google_calendar_id or f"calendar{next(_numbers)}@example.com",
        time_zone=time_zone,
    )
    session.add(calendar)
    session.flush()
    session.add(
        SyncState(
            calendar_id=calendar.id,
            consecutive_failures=0,
            dirty_since=dirty_since,
            sync_token=sync_token,
        )
    )
    session.flush()
    return calendar


def make_channel(
    session: Session,
    calendar: Calendar,
    *,
    channel_id: str | None = None,
    token: str | None = None,
    resource_id: str | None = "resource-1",
    expiration: datetime | None = None,
    stopped_at: datetime | None = None,
) -> Channel:
    token = token if token is not None else secrets.token_urlsafe(48)
    channel = Channel(
        id=channel_id or secrets.token_hex(16),
        calendar_id=calendar.id,
        token_hash=channel_token_hash(token),
        resource_id=resource_id,
        expiration=expiration,
        stopped_at=stopped_at,
    )
    session.add(channel)
    session.flush()
    # Not stored (only its hash is): kept on the object for the test to send, as Google would.
    channel.plain_token = token  # type: ignore[attr-defined]
    return channel


def insert_one_calendar_hosts(session: Session, count: int) -> range:
    """Hosts 1..count, each with one Google account and one calendar of the same id, by bulk
    insert (no SyncState rows): a fleet for query-plan tests. Returns the ids."""
    ids = range(1, count + 1)
    session.execute(
        Host.__table__.insert(), [{"id": n, "name": f"h{n}", "time_zone": "UTC"} for n in ids]
    )
    session.execute(
        GoogleAccount.__table__.insert(),
        [{"id": n, "host_id": n, "credentials_encrypted": b"x", "state": "ok"} for n in ids],
    )
    session.execute(
        Calendar.__table__.insert(),
        [{"id": n, "host_id": n, "account_id": n, "google_calendar_id": f"c{n}"} for n in ids],
    )
    return ids
