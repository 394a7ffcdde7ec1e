"""When a calendar is due for a sync nobody asked for. Pure: no I/O, so every case is testable.

- Safety net: push is not 100% reliable, so every calendar syncs at least every
  SAFETY_NET_SECONDS, and every POLL_SECONDS while push does not work for it (no channel,
  expired, refused by Google, or silent for CHANNEL_SILENT_SECONDS).
- Periodic full resync every FULL_RESYNC_SECONDS refills the far horizon of recurring series.
- Debounce: a notified calendar waits for its burst of notifications to end before fetching.
- Daily budget: while less than a fifth of CALSYNC_PROJECT_REQUESTS_PER_DAY is left, these
  scheduled syncs yield (push-driven syncs and channel renewals keep the permits).

Each interval is stretched or shrunk by a stable per-calendar factor in [0.75, 1.25], so
calendars attached together do not all sync in the same minute.
"""

from __future__ import annotations

import enum
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.settings import Settings

JITTER = 0.25


class Due(enum.StrEnum):
    FULL = "full_resync"
    SAFETY_NET = "safety_net"
    POLL = "poll"


@dataclass(frozen=True)
class CalendarTiming:
    calendar_id: int
    last_success_at: datetime | None
    full_sync_at: datetime | None
    channel_expiration: datetime | None  # newest live channel; None = no channel
    channel_last_heard: datetime | None  # latest notification, else the channel's creation
    watch_refused: bool


def jitter_factor(calendar_id: int, purpose: str = "") -> float:
    """A stable factor in [1 - JITTER, 1 + JITTER] per calendar (and purpose)."""
    spread = zlib.crc32(f"{purpose}:{calendar_id}".encode()) % 10001 / 10000
    return 1 - JITTER + 2 * JITTER * spread


def push_works(t: CalendarTiming, now: datetime, settings: Settings) -> bool:
    if t.watch_refused or t.channel_expiration is None or t.channel_expiration <= now:
        return False
    heard = t.channel_last_heard
    return heard is not None and now - heard < timedelta(seconds=settings.channel_silent_seconds)


def sync_interval_seconds(t: CalendarTiming, now: datetime, settings: Settings) -> float:
    base = settings.safety_net_seconds if push_works(t, now, settings) else settings.poll_seconds
    base = min(base, settings.safety_net_seconds)
    return base * jitter_factor(t.calendar_id, "sync")


def due(t: CalendarTiming, now: datetime, settings: Settings) -> Due | None:
    """What sync (if any) the calendar needs now."""
    if t.last_success_at is None:
        return Due.SAFETY_NET  # never synced: the first sync is a full one anyway
    full_every = settings.full_resync_seconds * jitter_factor(t.calendar_id, "full")
    if t.full_sync_at is None or (now - t.full_sync_at).total_seconds() >= full_every:
        return Due.FULL
    if (now - t.last_success_at).total_seconds() >= sync_interval_seconds(t, now, settings):
        return Due.SAFETY_NET if push_works(t, now, settings) else Due.POLL
    return None


def _after(moment: datetime, seconds: float) -> datetime:
    return moment + timedelta(microseconds=math.ceil(seconds * 1_000_000))


MICROSECOND = timedelta(microseconds=1)


def settle(moment: datetime, is_due: Callable[[datetime], bool]) -> datetime:
    """The computed moment moved by a microsecond or two where float rounding put it beside
    the rule's own comparison: the first microsecond at which the rule says "due"."""
    for _ in range(4):
        if is_due(moment):
            break
        moment += MICROSECOND
    for _ in range(4):
        if not is_due(moment - MICROSECOND):
            break
        moment -= MICROSECOND
    return moment


def next_due_at(t: CalendarTiming, settings: Settings) -> datetime | None:
    """The first moment from which `due` says a sync is needed, while these inputs hold
    (None = already due: never synced or never fully synced). The schedule is stored as
    this moment so the database finds the calendars due by index; `due` stays the judge."""
    if t.last_success_at is None or t.full_sync_at is None:
        return None
    full_at = _after(
        t.full_sync_at, settings.full_resync_seconds * jitter_factor(t.calendar_id, "full")
    )
    factor = jitter_factor(t.calendar_id, "sync")
    pushed = _after(t.last_success_at, settings.safety_net_seconds * factor)
    polled = _after(
        t.last_success_at, min(settings.poll_seconds, settings.safety_net_seconds) * factor
    )
    # Push works until the channel expires or has been silent for CHANNEL_SILENT_SECONDS;
    # from then on the shorter poll interval applies.
    if t.watch_refused or t.channel_expiration is None or t.channel_last_heard is None:
        sync_at = polled
    else:
        push_ends = min(
            t.channel_expiration,
            t.channel_last_heard + timedelta(seconds=settings.channel_silent_seconds),
        )
        sync_at = min(pushed, max(polled, push_ends))
    return settle(min(full_at, sync_at), lambda at: due(t, at, settings) is not None)


# With this share of the daily budget used (less than a fifth left), scheduled syncs wait
# until the budget recovers. The same 80% is where the alert warns.
BUDGET_LOW_USED_RATIO = 0.8


def yields_to_budget(t: CalendarTiming, budget_used: float | None) -> bool:
    """Whether a calendar's scheduled sync (safety net, poll, periodic full resync) waits
    because the daily budget runs low (`budget_used`: share of the day's budget used in the
    last 24 hours; None = no daily budget). A calendar never synced still gets its first
    sync: that is not upkeep, it has no busy time at all yet."""
    if budget_used is None or budget_used < BUDGET_LOW_USED_RATIO:
        return False
    return t.last_success_at is not None


def renew_check_seconds(settings: Settings) -> float:
    """How often beat looks for channels to renew: at most a quarter of the renew-ahead, so a
    channel is renewed with at least three quarters of RENEW_BEFORE left even if a check is
    late or Google is slow; never more often than every second, never less than every
    5 minutes (or POLL_SECONDS), which also bounds how late a missing channel is reopened."""
    return max(1.0, min(300.0, settings.poll_seconds, settings.renew_before_seconds / 4))


def safety_net_check_seconds(settings: Settings) -> float:
    """How often beat looks for calendars due a scheduled sync: often enough that the ±25%
    spread of short poll intervals is honoured; never more often than every second, never
    less than every 30 s."""
    return max(1.0, min(30.0, settings.poll_seconds / 8, settings.safety_net_seconds / 8))


# The syncs one safety-net round finds due start over this share of the time until the
# next round, not all at once: at 100,000 calendars a round finds ~140, and started
# together they held every pool process for seconds while pushed changes waited.
SPREAD_SHARE = 0.8
# A delayed message waits in a worker's memory (Celery holds ETA tasks), a plain one in the
# broker: a round with more than this many due (a backlog, after downtime) sends them
# without delay, in order, as before.
SPREAD_AT_MOST = 2000


# Beat's rounds that queue syncs again (the safety net: calendars still due; the sweeper:
# calendars still dirty, counting only the messages of its own priority, which go ahead of
# scheduled ones) hold off while the `calsync` queue holds this many messages: the
# calendars they would queue are then most likely among them, sent by an earlier round the
# workers have not reached. Without it, after downtime every round sent the whole backlog
# again (100,000 calendars due: 100,000 more messages each ≤ 30 s round, a queue growing
# faster than any worker pool drains it). Nothing waits on a lost message: the dirty marks
# and due moments stay in the database, and the first round after the queue drained below
# this finds whatever is still owed.
BACKLOG_MESSAGES = 2000


def holds_for_backlog(queue_depth: int | None) -> bool:
    """Whether a round that queues syncs again sends nothing now (`queue_depth`: messages
    waiting in the queue; None when the broker could not say, then the round sends)."""
    return queue_depth is not None and queue_depth >= BACKLOG_MESSAGES


def spread_countdowns(count: int, settings: Settings) -> list[float]:
    """Seconds from now at which each of `count` scheduled syncs starts: evenly over
    SPREAD_SHARE of a round (the first at once), or all at once for a backlog."""
    if count > SPREAD_AT_MOST:
        return [0.0] * count
    over = safety_net_check_seconds(settings) * SPREAD_SHARE
    return [over * n / count for n in range(count)]


def sweep_check_seconds(settings: Settings) -> float:
    """How often the sweeper looks for forgotten work: half of SWEEP_AFTER, and at least
    three times per lease, so a killed worker's calendar is picked up within moments of its
    lease running out; never more often than every second."""
    return max(1.0, min(settings.sweep_after_seconds / 2, settings.lease_seconds / 3))


REFUSED_WATCH_FIRST_RETRY_SECONDS = 3600
REFUSED_WATCH_MAX_RETRY_SECONDS = 86400


def refused_watch_retry_seconds(refusals: int, calendar_id: int) -> float:
    """How long after its `refusals`-th refusal a watch Google refused is tried again:
    1 h, 2 h, 4 h ... capped at a day, each ±25% per calendar and attempt (so calendars
    refused together do not all retry in the same minute). The calendar polls meanwhile."""
    base = REFUSED_WATCH_FIRST_RETRY_SECONDS * 2 ** min(max(refusals, 1) - 1, 10)
    spread = base * jitter_factor(calendar_id, f"watch-refused:{refusals}")
    return min(float(REFUSED_WATCH_MAX_RETRY_SECONDS), spread)


def debounce_seconds(
    now: datetime,
    dirty_since: datetime | None,
    last_notification_at: datetime | None,
    settings: Settings,
    notice_delay_ms: float = 0,
) -> float:
    """How long a notified calendar should still wait before its first fetch: until no
    notification has come for DEBOUNCE_MS (the burst is over), but no later than
    DEBOUNCE_MAX_MS after the first one (a steady stream must not starve the sync).
    `notice_delay_ms`: how long after its receive time a notification may still be on its
    way to the database (the push intake's batching); the quiet window is counted from
    what can be seen, so it is that much longer. Zero when there is nothing to wait for."""
    if dirty_since is None or last_notification_at is None or settings.debounce_ms <= 0:
        return 0.0
    quiet_ms = settings.debounce_ms + notice_delay_ms
    quiet_at = max(last_notification_at, dirty_since) + timedelta(milliseconds=quiet_ms)
    latest = dirty_since + timedelta(milliseconds=settings.debounce_max_ms)
    return max(0.0, (min(quiet_at, latest) - now).total_seconds())
