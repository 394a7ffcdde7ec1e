"""The host's sync log in words: one line per run, and the week's summary on top.

Pure: the view (webhook/host_pages.py) loads the rows (models/host_log.py) and hands them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from rules.status_presenter import plural

# Outcomes that are not a failure: done, or still running.
GOOD_OUTCOMES = frozenset({"ok", "running"})


@dataclass(frozen=True)
class RunFacts:
    """One sync run as stored (models.sync_runs.SyncRun), with its calendar's name."""

    calendar: str
    started_at: datetime
    kind: str
    trigger: str | None
    events_seen: int
    blocks_added: int
    blocks_removed: int
    duration_ms: int | None
    lag_ms: int | None
    outcome: str
    error: str | None  # already in words


def is_failure(outcome: str) -> bool:
    return outcome not in GOOD_OUTCOMES


def seconds_text(milliseconds: int | None) -> str:
    if milliseconds is None:
        return "—"
    if milliseconds < 1000:
        return f"{milliseconds} ms"
    seconds = milliseconds / 1000
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def week_summary(runs: list[RunFacts], renewals: list[datetime], zone: tzinfo) -> str:
    """'312 syncs, 0 failures, longest lag 1.4 s, channel renewed Tue'."""
    failures = sum(1 for run in runs if is_failure(run.outcome))
    parts = [plural(len(runs), "sync"), plural(failures, "failure")]
    lags = [run.lag_ms for run in runs if run.lag_ms is not None]
    parts.append(f"longest lag {seconds_text(max(lags))}" if lags else "no push-triggered lag")
    if renewals:
        days = sorted({moment.astimezone(zone).date() for moment in renewals})
        parts.append("channel renewed " + ", ".join(day.strftime("%a") for day in days))
    else:
        parts.append("no channel renewal")
    return ", ".join(parts)
