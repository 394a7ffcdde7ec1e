"""Watch channel lifecycle: start a channel, stop channels, renew before expiry.

A channel row is committed before `events.watch` is called, because Google may deliver the
`sync` message before the watch call returns.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta

from googleapiclient.errors import HttpError
from sqlalchemy import delete, select, update

from calsync.settings import Settings, get_settings
from models import AccountState, Calendar, Channel, GoogleAccount, SyncState
from models.credentials_box import decrypt_credentials
from models.db import session_scope
from worker import google_client
from worker.google_errors import ErrorKind, classify

log = logging.getLogger("calsync.channels")


def _credentials_for(calendar_id: int) -> tuple[str, dict] | None:
    with session_scope() as session:
        row = session.execute(
            select(Calendar.google_calendar_id, GoogleAccount.credentials_encrypted)
            .join(GoogleAccount, GoogleAccount.id == Calendar.account_id)
            .join(SyncState, SyncState.calendar_id == Calendar.id)
            .where(
                Calendar.id == calendar_id,
                GoogleAccount.state == AccountState.OK,
                SyncState.blocked_reason.is_(None),
            )
        ).one_or_none()
    if row is None:
        return None
    return row[0], decrypt_credentials(row[1])


def start_watch(calendar_id: int, settings: Settings | None = None) -> str | None:
    """Open a new channel for the calendar. Returns its id, or None when Google refuses
    (the calendar then stays on polling, and its status says why)."""
    settings = settings or get_settings()
    found = _credentials_for(calendar_id)
    if found is None:
        return None
    google_calendar_id, credentials = found
    channel_id = secrets.token_hex(16)
    token = secrets.token_urlsafe(48)
    with session_scope() as session:
        session.add(Channel(id=channel_id, calendar_id=calendar_id, token=token))
    body = {
        "id": channel_id,
        "type": "web_hook",
        "address": settings.webhook_address,
        "token": token,
        "params": {"ttl": str(settings.channel_ttl_seconds)},
    }
    service = google_client.build_service(credentials, settings)
    try:
        response = google_client.execute_with_retry(
            service.events().watch(calendarId=google_calendar_id, body=body), "events.watch"
        )
    except HttpError as exc:
        with session_scope() as session:
            session.execute(delete(Channel).where(Channel.id == channel_id))
        problem = classify(exc)
        if problem.kind is ErrorKind.TRANSIENT:
            raise
        with session_scope() as session:
            session.execute(
                update(Calendar)
                .where(Calendar.id == calendar_id)
                .values(watch_problem=f"Google refused push notifications: {problem.message}")
            )
        log.warning("watch_refused calendar_id=%s code=%s", calendar_id, problem.code)
        return None
    except Exception:
        with session_scope() as session:
            session.execute(delete(Channel).where(Channel.id == channel_id))
        raise
    expiration = response.get("expiration")
    with session_scope() as session:
        session.execute(
            update(Channel)
            .where(Channel.id == channel_id)
            .values(
                resource_id=response.get("resourceId"),
                expiration=(
                    datetime.fromtimestamp(int(expiration) / 1000, UTC) if expiration else None
                ),
            )
        )
        session.execute(
            update(Calendar).where(Calendar.id == calendar_id).values(watch_problem=None)
        )
    log.info("watch_started calendar_id=%s", calendar_id)
    return channel_id


def stop_channel(
    credentials: dict, channel_id: str, resource_id: str | None, settings: Settings | None = None
) -> None:
    """Ask Google to stop a channel; one Google no longer knows is already stopped."""
    if resource_id is None:
        return
    settings = settings or get_settings()
    service = google_client.build_service(credentials, settings)
    try:
        google_client.execute_with_retry(
            service.channels().stop(body={"id": channel_id, "resourceId": resource_id}),
            "channels.stop",
        )
    except HttpError as exc:
        if int(exc.resp.status) != 404:
            raise


def stop_channels_of_account(
    account_id: int, channels: list[tuple[str, str | None]], settings: Settings | None = None
) -> None:
    with session_scope() as session:
        blob = session.scalar(
            select(GoogleAccount.credentials_encrypted).where(GoogleAccount.id == account_id)
        )
    if blob is None:
        return
    credentials = decrypt_credentials(blob)
    for channel_id, resource_id in channels:
        stop_channel(credentials, channel_id, resource_id, settings)


def renew_expiring(settings: Settings | None = None, now: datetime | None = None) -> list[int]:
    """Replace channels that expire within RENEW_BEFORE: new channel first, then stop the
    old one, so there is no moment without a channel. Returns the calendars renewed."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    horizon = now + timedelta(seconds=settings.renew_before_seconds)
    with session_scope() as session:
        live = session.execute(
            select(Channel.calendar_id, Channel.id, Channel.resource_id, Channel.expiration)
            .where(Channel.stopped_at.is_(None))
            .order_by(Channel.calendar_id, Channel.expiration)
        ).all()
    newest: dict[int, datetime | None] = {}
    old: dict[int, list[tuple[str, str | None]]] = {}
    for calendar_id, channel_id, resource_id, expiration in live:
        old.setdefault(calendar_id, []).append((channel_id, resource_id))
        newest[calendar_id] = expiration
    renewed = []
    for calendar_id, expiration in newest.items():
        if expiration is None or expiration > horizon:
            continue
        if start_watch(calendar_id, settings) is None:
            continue
        found = _credentials_for(calendar_id)
        for channel_id, resource_id in old[calendar_id]:
            if found is not None:
                try:
                    stop_channel(found[1], channel_id, resource_id, settings)
                except Exception:  # the old channel expires on its own anyway
                    log.warning("channel_stop_failed calendar_id=%s", calendar_id)
            with session_scope() as session:
                session.execute(
                    update(Channel).where(Channel.id == channel_id).values(stopped_at=now)
                )
        renewed.append(calendar_id)
    return renewed
