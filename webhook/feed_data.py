"""What the ICS feed and the CalDAV calendar show: a host's busy sources over the feed
window, and which of its calendars are stale. Read from the same tables as `/v1/.../busy`,
so a change reaches the feeds at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from models.busy_queries import host_busy_sources
from rules.busy_feed import BusySource, StaleCalendar
from webhook.api_freshness import host_freshness

# The feed window starts a day back, as the synced horizon does.
FEED_PAST = timedelta(days=1)


@dataclass(frozen=True)
class FeedWindow:
    start: datetime
    end: datetime


def feed_window(now: datetime, feed_days: int) -> FeedWindow:
    return FeedWindow(now - FEED_PAST, now + timedelta(days=feed_days))


@dataclass(frozen=True)
class Freshness:
    stale: list[StaleCalendar]
    stale_ids: frozenset[int]


def host_staleness(session: Session, host_id: int, now: datetime) -> Freshness:
    calendars = host_freshness(session, host_id, now)
    stale = [c for c in calendars if c["stale"]]
    return Freshness(
        [StaleCalendar(c["googleCalendarId"], c["state"]) for c in stale],
        frozenset(c["id"] for c in stale),
    )


def window_sources(
    session: Session, host_id: int, start: datetime, end: datetime, freshness: Freshness
) -> list[BusySource]:
    # Freshness is read before the blocks (as /busy does), so the blocks are never older
    # than the freshness claimed beside them.
    return host_busy_sources(session, host_id, start, end, stale_calendars=freshness.stale_ids)
