"""A host with a healthy, a lagging and a needs_reauth calendar, busy blocks and a manual
block, plus a second host; rows committed so the web app (any thread) sees them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import BusyBlock, ManualBlock, SyncState
from models.accounts import AccountState
from models.registry import create_host, rotate_feed_token
from tests.factories import make_account, make_calendar, make_channel

HOST_ZONE = "Europe/Berlin"


@dataclass
class Scene:
    host_id: int
    token: str  # the host's feed token: what a status link carries
    other_host_id: int
    other_token: str  # the other host's feed token
    healthy_id: int
    lagging_id: int
    reauth_id: int
    reauth_account_id: int
    api_token: str  # the host's API token: a bearer header only, never in a URL


def _local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(HOST_ZONE))


def build_scene(session: Session, now: datetime, *, host_name: str = "Dana Example") -> Scene:
    host, api_token = create_host(session, host_name, HOST_ZONE)
    token = rotate_feed_token(session, host)
    account = make_account(session, host)
    revoked = make_account(session, host, state=AccountState.NEEDS_REAUTH)

    healthy = make_calendar(session, host, account, google_calendar_id="dana@example.com")
    lagging = make_calendar(session, host, account, google_calendar_id="side@example.com")
    reauth = make_calendar(session, host, revoked, google_calendar_id="family@example.com")
    healthy.summary, lagging.summary, reauth.summary = "Work", "Side project", "Family"
    for calendar in (healthy, lagging, reauth):
        make_channel(session, calendar, expiration=now + timedelta(days=5))

    states = {s.calendar_id: s for s in session.scalars(select(SyncState))}
    states[healthy.id].last_success_at = now - timedelta(minutes=2)
    states[lagging.id].last_success_at = now - timedelta(minutes=10)
    states[lagging.id].dirty_since = now - timedelta(minutes=4, seconds=5)
    reauth_state = states[reauth.id]
    reauth_state.last_success_at = now - timedelta(hours=3)
    reauth_state.consecutive_failures = 1
    reauth_state.last_error_code = "auth_revoked"
    reauth_state.last_error_message = "Google access was revoked or expired."

    tomorrow = now.astimezone(ZoneInfo(HOST_ZONE)).date() + timedelta(days=1)
    session.add_all(
        [
            BusyBlock(
                calendar_id=healthy.id,
                event_key="standup",
                start=_local(tomorrow, 9),
                end=_local(tomorrow, 10, 30),
            ),
            BusyBlock(
                calendar_id=lagging.id,
                event_key="lunch",
                start=_local(tomorrow, 12),
                end=_local(tomorrow, 13),
            ),
            ManualBlock(
                host_id=host.id,
                start=_local(tomorrow, 15),
                end=_local(tomorrow, 17),
                note="Dentist <b>bring card</b>",
            ),
        ]
    )

    other, _other_api_token = create_host(session, "Other Host", "UTC")
    other_token = rotate_feed_token(session, other)
    other_calendar = make_calendar(
        session, other, make_account(session, other), google_calendar_id="other@example.com"
    )
    states_other = session.get(SyncState, other_calendar.id)
    assert states_other is not None
    states_other.last_success_at = now
    session.commit()
    return Scene(
        host.id,
        token,
        other.id,
        other_token,
        healthy.id,
        lagging.id,
        reauth.id,
        revoked.id,
        api_token,
    )
