"""Watch channel lifecycle: start a channel, stop channels, renew before expiry, and re-open
channels that are missing or expired.

A channel row is committed before `events.watch` is called, because Google may deliver the
`sync` message before the watch call returns.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime, timedelta

from googleapiclient.errors import HttpError
from sqlalchemy import Select, delete, exists, or_, select, update
from sqlalchemy.orm import Session, aliased

from core.settings import Settings, get_settings
from models import AccountState, Calendar, Channel, GoogleAccount, SyncState, stored_moments
from models.calendars import channel_token_hash
from models.credentials_box import decrypt_credentials
from models.db import session_scope
from models.sync_flags import may_call_google
from rules import sync_schedule
from worker import google_client
from worker.google_errors import ErrorKind, classify

log = logging.getLogger("calsync.channels")

# A channel row without an expiration is a watch call in flight; after this long the process
# that made it is assumed dead and the row no longer counts as a channel.
WATCH_CALL_GRACE = timedelta(minutes=10)
MAX_WATCH_RETRY_SECONDS = 3600


def _credentials_for(calendar_id: int) -> tuple[str, dict, str | None] | None:
    """The calendar's Google id, its account's credentials and the account's email (which
    names the Google user the rate limiter counts)."""
    with session_scope() as session:
        row = session.execute(
            select(
                Calendar.google_calendar_id,
                GoogleAccount.credentials_encrypted,
                GoogleAccount.email,
            )
            .join(GoogleAccount, GoogleAccount.id == Calendar.account_id)
            .join(SyncState, SyncState.calendar_id == Calendar.id)
            .where(
                Calendar.id == calendar_id,
                *may_call_google(),
            )
        ).one_or_none()
    if row is None:
        return None
    return row[0], decrypt_credentials(row[1]), row[2]


def start_watch(calendar_id: int, settings: Settings | None = None) -> str | None:
    """Open a new channel for the calendar. Returns its id, or None when Google refuses
    (the calendar then stays on polling, and its status says why) or the calendar cannot
    be called now (revoked access, calendar gone)."""
    settings = settings or get_settings()
    found = _credentials_for(calendar_id)
    if found is None:
        return None
    google_calendar_id, credentials, email = found
    channel_id = secrets.token_hex(16)
    token = secrets.token_urlsafe(48)
    with session_scope() as session:
        session.add(
            Channel(id=channel_id, calendar_id=calendar_id, token_hash=channel_token_hash(token))
        )
    body = {
        "id": channel_id,
        "type": "web_hook",
        "address": settings.webhook_address,
        "token": token,
        "params": {"ttl": str(settings.channel_ttl_seconds)},
    }
    service = google_client.build_service(credentials, settings, email)
    try:
        response = google_client.execute_with_retry(
            service.events().watch(calendarId=google_calendar_id, body=body), "events.watch"
        )
    except HttpError as exc:
        with session_scope() as session:
            session.execute(delete(Channel).where(Channel.id == channel_id))
            _recheck(session, calendar_id)
        problem = classify(exc)
        if problem.kind is ErrorKind.TRANSIENT:
            raise
        # Refusals can be temporary (a calendar type, a domain policy): try again after
        # 1 h, 2 h, 4 h ... a day; the calendar is polled meanwhile.
        with session_scope() as session:
            calendar = session.get(Calendar, calendar_id)
            if calendar is not None:
                refusals = (calendar.watch_failures or 0) + 1
                calendar.watch_failures = refusals
                calendar.watch_problem = f"Google refused push notifications: {problem.message}"
                calendar.watch_retry_at = datetime.now(UTC) + timedelta(
                    seconds=sync_schedule.refused_watch_retry_seconds(refusals, calendar_id)
                )
            _recheck(session, calendar_id)
        log.warning("watch_refused calendar_id=%s code=%s", calendar_id, problem.code)
        return None
    except Exception:
        with session_scope() as session:
            session.execute(delete(Channel).where(Channel.id == channel_id))
            _recheck(session, calendar_id)
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
            update(Calendar)
            .where(Calendar.id == calendar_id)
            .values(watch_problem=None, watch_failures=0, watch_retry_at=None)
        )
        now = datetime.now(UTC)
        _recheck(session, calendar_id, now)
        # The watch moment judged now, not at the next renewal round (up to 5 minutes):
        # until then every health snapshot (alert round, metrics, outbound states) counts
        # the calendar among those needing attention and reads it in full, which after a
        # fleet is attached or rewatched is every calendar.
        _judge_watches(session, [(calendar_id, now - stored_moments.RECHECK_MARGIN)], now)
    log.info("watch_started calendar_id=%s", calendar_id)
    return channel_id


def stop_channel(
    credentials: dict,
    channel_id: str,
    resource_id: str | None,
    settings: Settings | None = None,
    email: str | None = None,
) -> None:
    """Ask Google to stop a channel; one Google no longer knows is already stopped."""
    if resource_id is None:
        return
    settings = settings or get_settings()
    service = google_client.build_service(credentials, settings, email)
    try:
        google_client.execute_with_retry(
            service.channels().stop(body={"id": channel_id, "resourceId": resource_id}),
            "channels.stop",
        )
    except HttpError as exc:
        if int(exc.resp.status) != 404:
            raise


def stop_channels_of_account(
    account_id: int,
    channels: list[tuple[str, str | None]],
    settings: Settings | None = None,
    *,
    sealed_credentials: bytes | None = None,
) -> None:
    """Stop the channels at Google with the account's credentials; a deleted account's come
    with the task (`sealed_credentials`, encrypted as they were stored)."""
    with session_scope() as session:
        row = session.execute(
            select(GoogleAccount.credentials_encrypted, GoogleAccount.email).where(
                GoogleAccount.id == account_id, GoogleAccount.state == AccountState.OK
            )
        ).one_or_none()
    blob, email = (row[0], row[1]) if row is not None else (None, None)
    if blob is None:
        blob = sealed_credentials
    if blob is None:  # revoked (or deleted without usable credentials): the channels expire
        return
    credentials = decrypt_credentials(blob)
    for channel_id, resource_id in channels:
        stop_channel(credentials, channel_id, resource_id, settings, email)


def retire_channels(
    session: Session, calendar_id: int, at: datetime
) -> list[tuple[str, str | None]]:
    """Mark the calendar's live channels stopped (the webhook then refuses them). Returns
    them, for stopping at Google too."""
    live = session.execute(
        select(Channel.id, Channel.resource_id).where(
            Channel.calendar_id == calendar_id, Channel.stopped_at.is_(None)
        )
    ).all()
    if live:
        session.execute(
            update(Channel)
            .where(Channel.id.in_([channel_id for channel_id, _ in live]))
            .values(stopped_at=at)
        )
        _recheck(session, calendar_id, at)
    return [(channel_id, resource_id) for channel_id, resource_id in live]


def renew_expiring(settings: Settings | None = None, now: datetime | None = None) -> list[int]:
    """Replace channels that expire within RENEW_BEFORE: new channel first, then stop the
    old one, so there is no moment without a channel. Returns the calendars renewed; the
    caller runs a catch-up sync for each once the old channels are stopped."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    horizon = now + timedelta(seconds=settings.renew_before_seconds)
    with session_scope() as session:
        live = session.execute(
            select(Channel.calendar_id, Channel.id, Channel.resource_id, Channel.expiration)
            .where(
                Channel.stopped_at.is_(None),
                Channel.expiration.is_not(None),
                Channel.calendar_id.in_(_expiring_calendars(horizon)),
            )
            .order_by(Channel.calendar_id, Channel.expiration)
        ).all()
    newest: dict[int, datetime] = {}
    old: dict[int, list[tuple[str, str | None]]] = {}
    for calendar_id, channel_id, resource_id, expiration in live:
        old.setdefault(calendar_id, []).append((channel_id, resource_id))
        if expiration is not None:  # always, by the query; the column is nullable
            newest[calendar_id] = expiration
    renewed = []
    for calendar_id, expiration in newest.items():
        if expiration > horizon:
            continue
        if _open_or_back_off(calendar_id, settings, now) is None:
            continue
        _stop_old(calendar_id, old[calendar_id], settings, now)
        renewed.append(calendar_id)
    return renewed


def _expiring_calendars(horizon: datetime) -> Select[int]:
    """Calendars whose newest live channel expires by `horizon`: one live channel does and
    none expires later. Read through the live-expiration index, so a renewal check costs
    what is due, not the whole fleet."""
    later = aliased(Channel)
    return select(Channel.calendar_id).where(
        Channel.stopped_at.is_(None),
        Channel.expiration <= horizon,
        ~exists().where(
            later.calendar_id == Channel.calendar_id,
            later.stopped_at.is_(None),
            later.expiration > horizon,
        ),
    )


def _stop_old(
    calendar_id: int, channels: list[tuple[str, str | None]], settings: Settings, now: datetime
) -> None:
    found = _credentials_for(calendar_id)
    for channel_id, resource_id in channels:
        if found is not None:
            try:
                stop_channel(found[1], channel_id, resource_id, settings, found[2])
            except Exception:  # the old channel expires on its own anyway
                log.warning("channel_stop_failed calendar_id=%s", calendar_id)
        with session_scope() as session:
            session.execute(update(Channel).where(Channel.id == channel_id).values(stopped_at=now))
            _recheck(session, calendar_id, now)


def _recheck(session: Session, calendar_id: int, at: datetime | None = None) -> None:
    """A channel of the calendar changed: its safety-net and watch moments are judged again
    at the next round (a channel gone or refused can make them earlier)."""
    stored_moments.recheck(
        session,
        [calendar_id],
        at or datetime.now(UTC),
        (SyncState.next_check_at, SyncState.watch_check_at),
    )


def unwatched_calendars(session: Session, now: datetime) -> list[int]:
    """Calendars that should have a channel and have none that works: never watched, all
    expired, or a watch call that never finished. Excludes ones that may not be called
    (revoked access, calendar gone) and ones backing off (refused by Google: they poll until
    their next try). Reads only calendars whose stored `watch_check_at` is unknown or came
    (by index); of those still watched it stores when their channels stop working."""
    found = session.execute(
        select(Calendar.id, SyncState.watch_check_at)
        .join(GoogleAccount, GoogleAccount.id == Calendar.account_id)
        .join(SyncState, SyncState.calendar_id == Calendar.id)
        .where(
            or_(SyncState.watch_check_at.is_(None), SyncState.watch_check_at <= now),
            *may_call_google(),
            # Backing off: Google unreachable, or it refused the watch (retried hourly
            # and then less often, up to daily).
            or_(Calendar.watch_retry_at.is_(None), Calendar.watch_retry_at <= now),
        )
    ).all()
    # Sorted here: an ORDER BY would make SQLite walk the key instead of the moment's index.
    rows = sorted(found, key=lambda row: row.id)
    return _judge_watches(session, [(row.id, row.watch_check_at) for row in rows], now)


def _judge_watches(
    session: Session, rows: list[tuple[int, datetime | None]], now: datetime
) -> list[int]:
    """Of the calendars (with their `watch_check_at` as read), the ones without a working
    channel; for the others, stores when their channels stop working (unless the moment was
    reset since it was read)."""
    works_until, newest_expiry = _channels_work_until(session, [row[0] for row in rows])
    unwatched, later = [], []
    for calendar_id, seen in rows:
        until = works_until.get(calendar_id)
        if until is None or until <= now:
            unwatched.append(calendar_id)
            continue
        # The health rule (models/ops_snapshot.py) reads the same moment and counts a
        # calendar whose only channel is a watch call in flight as not watched: the stored
        # moment is the earlier of the two ends, and none while that call is in flight.
        expiry = newest_expiry.get(calendar_id)
        if expiry is not None:
            later.append((calendar_id, seen, min(until, expiry)))
    stored_moments.store(session, SyncState.watch_check_at, later)
    return unwatched


def _channels_work_until(
    session: Session, calendar_ids: list[int]
) -> tuple[dict[int, datetime], dict[int, datetime]]:
    """Per calendar: until when its live channels work (the latest expiration; a watch call
    in flight counts for WATCH_CALL_GRACE from its start), and its newest live channel's
    expiration (calendars with one)."""
    until: dict[int, datetime] = {}
    expiry: dict[int, datetime] = {}
    for start in range(0, len(calendar_ids), 500):
        rows = session.execute(
            select(Channel.calendar_id, Channel.expiration, Channel.created_at).where(
                Channel.calendar_id.in_(calendar_ids[start : start + 500]),
                Channel.stopped_at.is_(None),
            )
        ).all()
        for calendar_id, expiration, created_at in rows:
            end = expiration if expiration is not None else created_at + WATCH_CALL_GRACE
            if calendar_id not in until or end > until[calendar_id]:
                until[calendar_id] = end
            if expiration is not None and (
                calendar_id not in expiry or expiration > expiry[calendar_id]
            ):
                expiry[calendar_id] = expiration
    return until, expiry


def _open_or_back_off(calendar_id: int, settings: Settings, now: datetime) -> str | None:
    """start_watch; a failure (Google unreachable) schedules the next attempt with
    exponential backoff and returns None."""
    try:
        return start_watch(calendar_id, settings)
    except Exception as exc:
        with session_scope() as session:
            calendar = session.get(Calendar, calendar_id)
            if calendar is not None:
                calendar.watch_failures = (calendar.watch_failures or 0) + 1
                delay = min(MAX_WATCH_RETRY_SECONDS, 30 * 2 ** min(calendar.watch_failures, 10))
                calendar.watch_retry_at = now + timedelta(seconds=delay)
        log.warning("watch_failed calendar_id=%s error=%s", calendar_id, type(exc).__name__)
        return None


def ensure_watched(settings: Settings | None = None, now: datetime | None = None) -> list[int]:
    """Open a channel for every calendar that lacks a working one. Returns those opened;
    the caller runs a catch-up sync for each (changes while unwatched were not pushed)."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    with session_scope() as session:
        candidates = unwatched_calendars(session, now)
    opened = []
    for calendar_id in candidates:
        if _open_or_back_off(calendar_id, settings, now) is not None:
            opened.append(calendar_id)
    return opened
