"""Creating and removing hosts and calendars (database side only; callers enqueue work)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from models.accounts import AccountState, GoogleAccount
from models.alerts import AlertDelivery, AlertIncident
from models.audits import Audit
from models.base import utcnow
from models.calendars import Calendar, Channel, SyncState
from models.credentials_box import (
    decrypt_credentials,
    encrypt_credentials,
    validate_authorized_user,
)
from models.events import BusyBlock, CalendarEvent
from models.hosts import Host, ManualBlock, SignInLink
from models.outbound import (
    AnnouncedCalendarState,
    OutboxEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from models.outbox_writer import record_busy_change
from models.sync_runs import SyncRun

# Token prefixes say what a token is when one turns up somewhere (and let core.logs mask
# them): `cs_` a host's API token, `csf_` a host's feed token.
API_TOKEN_PREFIX = "cs_"
FEED_TOKEN_PREFIX = "csf_"


def hash_api_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_feed_token() -> str:
    return FEED_TOKEN_PREFIX + secrets.token_urlsafe(32)


def create_host(session: Session, name: str, time_zone: str = "UTC") -> tuple[Host, str]:
    """A new host and its API token (returned once, stored hashed)."""
    token = new_api_token()
    host = Host(
        name=name, time_zone=time_zone, busy_policy={}, api_token_hash=hash_api_token(token)
    )
    session.add(host)
    session.flush()
    return host, token


def rotate_api_token(session: Session, host: Host) -> str:
    """A new API token for the host; the old one stops working with this commit."""
    token = new_api_token()
    host.api_token_hash = hash_api_token(token)
    # Signs the host out of its pages everywhere too: a leaked token is rotated, and so
    # is anything a holder of it may have opened.
    host.session_epoch = (host.session_epoch or 0) + 1
    session.flush()
    return token


def rotate_feed_token(session: Session, host: Host) -> str:
    """A new feed token for the host (the first, or one replacing the old)."""
    token = new_feed_token()
    host.feed_token_hash = hash_api_token(token)
    session.flush()
    return token


def delete_host(session: Session, host_id: int) -> dict[int, AccountStops] | None:
    """Delete the host and everything of it: accounts with their credentials, calendars,
    events, busy blocks, sync states and runs, channels, manual blocks, its alert records.
    Returns the live channels per account that the caller must stop at Google once this
    commits, each with the account's credentials as stored (encrypted: the row is gone by
    the time the stop runs), or None if there was no such host."""
    host = session.get(Host, host_id)
    if host is None:
        return None
    calendar_ids = list(session.scalars(select(Calendar.id).where(Calendar.host_id == host_id)))
    account_ids = list(
        session.scalars(select(GoogleAccount.id).where(GoogleAccount.host_id == host_id))
    )
    to_stop: dict[int, AccountStops] = {}
    live = session.execute(
        select(
            Calendar.account_id,
            GoogleAccount.credentials_encrypted,
            GoogleAccount.state,
            Channel.id,
            Channel.resource_id,
        )
        .join(Channel, Channel.calendar_id == Calendar.id)
        .join(GoogleAccount, GoogleAccount.id == Calendar.account_id)
        .where(Calendar.host_id == host_id, Channel.stopped_at.is_(None))
    )
    for account_id, sealed, state, channel_id, resource_id in live:
        # Revoked credentials may call nothing: those channels just lapse at Google.
        usable = sealed if state == AccountState.OK else None
        stops = to_stop.setdefault(account_id, AccountStops(usable, []))
        stops.channels.append(ChannelToStop(channel_id, resource_id))
    # Explicit deletes, children first: the result must not depend on the database
    # honouring ON DELETE CASCADE (SQLite only does with its foreign_keys pragma).
    in_calendars = calendar_ids or [-1]
    for table in (BusyBlock, CalendarEvent, SyncRun, Audit, SyncState, Channel):
        session.execute(delete(table).where(table.calendar_id.in_(in_calendars)))
    session.execute(delete(Calendar).where(Calendar.host_id == host_id))
    session.execute(delete(GoogleAccount).where(GoogleAccount.host_id == host_id))
    session.execute(delete(ManualBlock).where(ManualBlock.host_id == host_id))
    session.execute(delete(SignInLink).where(SignInLink.host_id == host_id))
    alert_keys = [f"calsync/calendar-failing/{c}" for c in calendar_ids] + [
        f"calsync/needs-reauth/{a}" for a in account_ids
    ]
    if alert_keys:
        session.execute(delete(AlertIncident).where(AlertIncident.key.in_(alert_keys)))
        session.execute(delete(AlertDelivery).where(AlertDelivery.key.in_(alert_keys)))
    # Its outbound events and the endpoints it registered go too (no event announces the
    # deletion: nothing of the host is kept); its /busy answers 404 from now on.
    own_endpoints = select(WebhookEndpoint.id).where(WebhookEndpoint.created_by_host == host_id)
    own_events = select(OutboxEvent.id).where(OutboxEvent.host_id == host_id)
    session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.endpoint_id.in_(own_endpoints)
            | WebhookDelivery.event_id.in_(own_events)
        )
    )
    session.execute(delete(OutboxEvent).where(OutboxEvent.host_id == host_id))
    session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.created_by_host == host_id))
    session.execute(
        delete(AnnouncedCalendarState).where(AnnouncedCalendarState.calendar_id.in_(in_calendars))
    )
    session.execute(delete(Host).where(Host.id == host_id))
    session.expunge_all()  # rows deleted behind the identity map's back
    return to_stop


def _spans(session: Session, query: Any) -> list[tuple[datetime, datetime]]:
    return [(start, end) for start, end in session.execute(query)]


def _same_grant(a: dict, b: dict) -> bool:
    return (a.get("client_id"), a.get("refresh_token")) == (
        b.get("client_id"),
        b.get("refresh_token"),
    )


def find_or_add_account(
    session: Session, host_id: int, credentials: dict, email: str | None = None
) -> GoogleAccount:
    """The host's account for this OAuth grant; new credentials for the same client replace
    old ones and clear a `needs_reauth` state."""
    info = validate_authorized_user(credentials)
    accounts = list(session.scalars(select(GoogleAccount).where(GoogleAccount.host_id == host_id)))
    stored = {a.id: decrypt_credentials(a.credentials_encrypted) for a in accounts}
    for account in accounts:
        if _same_grant(stored[account.id], info):
            if account.state != AccountState.OK:
                account.state, account.state_reason = AccountState.OK, None
                _resume_calendars(session, account.id)
            return account
    email = email or info.get("account")
    for account in accounts:
        same_client = stored[account.id].get("client_id") == info.get("client_id")
        if email and account.email == email and same_client:
            # The same Google user reconnected (a new refresh token): replace the old grant.
            account.credentials_encrypted = encrypt_credentials(info)
            if account.state != AccountState.OK:
                account.state, account.state_reason = AccountState.OK, None
                _resume_calendars(session, account.id)
            return account
    account = GoogleAccount(
        host_id=host_id,
        email=email,
        credentials_encrypted=encrypt_credentials(info),
        state=AccountState.OK,
    )
    session.add(account)
    session.flush()
    return account


def replace_credentials(session: Session, account: GoogleAccount, credentials: dict) -> None:
    """New credentials for an existing account (a reconnect): calls resume for every one of
    its calendars."""
    info = validate_authorized_user(credentials)
    account.credentials_encrypted = encrypt_credentials(info)
    account.state, account.state_reason = AccountState.OK, None
    _resume_calendars(session, account.id)


def _resume_calendars(session: Session, account_id: int) -> None:
    """After new credentials: mark every calendar of the account dirty, so the sweeper syncs
    each (incrementally, or fully where the token is gone) even if no caller enqueues it, and
    let the channel check open new channels at once."""
    calendar_ids = select(Calendar.id).where(Calendar.account_id == account_id)
    session.execute(
        update(SyncState)
        .where(SyncState.calendar_id.in_(calendar_ids), SyncState.dirty_since.is_(None))
        .values(dirty_since=utcnow())
    )
    session.execute(
        update(Calendar)
        .where(Calendar.account_id == account_id)
        .values(watch_failures=0, watch_retry_at=None)
    )


def attach_calendar(
    session: Session, host_id: int, google_calendar_id: str, credentials: dict
) -> tuple[Calendar, bool]:
    """Attach (or re-attach with new credentials) a Google calendar. Returns (calendar, created)."""
    account = find_or_add_account(session, host_id, credentials)
    calendar = session.scalar(
        select(Calendar).where(
            Calendar.host_id == host_id, Calendar.google_calendar_id == google_calendar_id
        )
    )
    if calendar is not None:
        calendar.account_id = account.id
        # Attaching again is the way to retry after "calendar gone" or a refused watch.
        calendar.watch_problem, calendar.watch_failures, calendar.watch_retry_at = None, 0, None
        state = session.get(SyncState, calendar.id)
        if state is not None:
            state.blocked_reason = None
        return calendar, False
    calendar = Calendar(
        host_id=host_id, account_id=account.id, google_calendar_id=google_calendar_id
    )
    session.add(calendar)
    session.flush()
    session.add(SyncState(calendar_id=calendar.id, consecutive_failures=0))
    session.flush()
    return calendar, True


@dataclass(frozen=True)
class ChannelToStop:
    channel_id: str
    resource_id: str | None


@dataclass
class AccountStops:
    """A deleted account's live channels and its credentials as stored (encrypted)."""

    sealed_credentials: bytes | None
    channels: list[ChannelToStop]

    def channel_pairs(self) -> list[tuple[str, str | None]]:
        return [(c.channel_id, c.resource_id) for c in self.channels]

    def sealed_text(self) -> str | None:
        return self.sealed_credentials.decode("ascii") if self.sealed_credentials else None


def detach_calendar(session: Session, calendar_id: int) -> tuple[int, list[ChannelToStop]] | None:
    """Delete the calendar with its events, blocks and state. Returns the account id and the
    live channels the caller must stop at Google, or None if there was no such calendar."""
    calendar = session.get(Calendar, calendar_id)
    if calendar is None:
        return None
    channels = [
        ChannelToStop(c.id, c.resource_id)
        for c in session.scalars(
            select(Channel).where(Channel.calendar_id == calendar_id, Channel.stopped_at.is_(None))
        )
    ]
    account_id = calendar.account_id
    host_id = calendar.host_id
    busy_spans = _spans(
        session, select(BusyBlock.start, BusyBlock.end).where(BusyBlock.calendar_id == calendar_id)
    )
    session.execute(delete(Audit).where(Audit.calendar_id == calendar_id))
    session.delete(calendar)
    session.flush()
    record_busy_change(
        session,
        host_id=host_id,
        calendar_id=calendar_id,
        cause="calendar_detached",
        removed=busy_spans,
        added=[],
        now=utcnow(),
    )
    return account_id, channels
