"""When an outbound delivery is tried again, and when calsync gives up. Pure: no I/O.

Backoff doubles from 5 s up to an hour between attempts (±20% jitter, so endpoints that
failed together do not retry together); a delivery not answered with a 2xx within 24 hours
of its event is given up and its endpoint marked failing; an endpoint failing for 5 days is
disabled.
"""

from __future__ import annotations

from datetime import datetime, timedelta

FIRST_DELAY_SECONDS = 5.0
MAX_DELAY_SECONDS = 3600.0
RETRY_FOR = timedelta(hours=24)
DISABLE_AFTER = timedelta(days=5)
JITTER = 0.2


def retry_delay(
    attempts: int, jitter: float = 0.0, first_delay_seconds: float = FIRST_DELAY_SECONDS
) -> float:
    """Seconds before the next try after `attempts` failed ones; `jitter` in [-1, 1].
    `first_delay_seconds` is CALSYNC_OUTBOUND_FIRST_RETRY_SECONDS (tests shorten it)."""
    base = min(MAX_DELAY_SECONDS, first_delay_seconds * 2 ** max(0, attempts - 1))
    return base * (1 + JITTER * max(-1.0, min(1.0, jitter)))


def gives_up(created_at: datetime, now: datetime) -> bool:
    """Whether a delivery still failing now is given up (24 h after its event)."""
    return now - created_at >= RETRY_FOR


def disable_due(failing_since: datetime | None, now: datetime) -> bool:
    return failing_since is not None and now - failing_since >= DISABLE_AFTER
