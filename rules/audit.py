"""Audit comparison: calsync's busy table against Google's own freeBusy answer (pure).

Google's freeBusy knows nothing of a host's busy policy, so the comparison is made under
Google's semantics, which are calsync's default `BusyPolicy()`. Busy blocks of events the
host's policy does not touch are compared as stored (the table frontends read); an event the
host's policy decides differently from the default (e.g. tentative as free) is compared by
its stored facts re-decided under the default policy instead, and counted as such.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rules.busy_rules import BusyPolicy, EventFacts, Reason, decide
from rules.intervals import Interval, clip, merge

GOOGLE_SEMANTICS = BusyPolicy()


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """One `busy_blocks` row: its event key and `[start, end)` in UTC."""

    event_key: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class OurSide:
    """What calsync answers for a calendar under Google's semantics."""

    busy: list[Interval]
    policy_touched: int  # events the host's policy decides otherwise than Google's semantics


@dataclass(frozen=True, slots=True)
class AuditComparison:
    matched: bool
    differences: list[Interval]  # merged, UTC, inside the window; no sources (no titles)
    differing_seconds: float
    ours_only_seconds: float  # busy here, free at Google
    google_only_seconds: float  # busy at Google, free here (the double-booking side)


def our_busy(
    blocks: Iterable[StoredBlock],
    events: Iterable[EventFacts],
    host_policy: BusyPolicy,
) -> OurSide:
    """Our busy intervals under Google's semantics.

    `blocks` are the calendar's stored busy blocks, `events` its stored event facts (busy or
    not). Where the host's policy and Google's semantics agree on an event, its stored block
    (or the absence of one) is what is compared; where they disagree, the block is set aside
    and the event's facts decide under the default policy.
    """
    touched: dict[str, EventFacts] = {}
    for facts in events:
        host_busy = decide(facts, host_policy) is Reason.BUSY
        default_busy = decide(facts, GOOGLE_SEMANTICS) is Reason.BUSY
        if host_busy != default_busy:
            touched[facts.google_event_id] = facts
    busy = [
        Interval(block.start, block.end)
        for block in blocks
        if block.event_key not in touched and block.start < block.end
    ]
    for facts in touched.values():
        if decide(facts, GOOGLE_SEMANTICS) is Reason.BUSY and facts.start and facts.end:
            busy.append(Interval(facts.start, facts.end))
    return OurSide(merge(busy), len(touched))


def compare(
    ours: Iterable[Interval],
    google: Iterable[Interval],
    window_start: datetime,
    window_end: datetime,
) -> AuditComparison:
    """The ranges of `[window_start, window_end)` where exactly one side is busy."""
    ours_merged = merge(clip(ours, window_start, window_end))
    google_merged = merge(clip(google, window_start, window_end))
    ours_only = _subtract(ours_merged, google_merged)
    google_only = _subtract(google_merged, ours_merged)
    differences = [Interval(i.start, i.end) for i in merge([*ours_only, *google_only])]
    return AuditComparison(
        matched=not differences,
        differences=differences,
        differing_seconds=_seconds(differences),
        ours_only_seconds=_seconds(ours_only),
        google_only_seconds=_seconds(google_only),
    )


def google_busy(busy: Sequence[Mapping[str, datetime]]) -> list[Interval]:
    """freeBusy's `busy` list (already parsed to aware datetimes) as intervals."""
    return [Interval(item["start"], item["end"]) for item in busy if item["start"] < item["end"]]


def differences_json(differences: Iterable[Interval]) -> list[dict[str, str]]:
    """Ranges as stored and shown: RFC 3339 UTC strings, nothing else (no titles)."""
    return [{"start": _z(i.start), "end": _z(i.end)} for i in differences]


def _subtract(minuend: list[Interval], subtrahend: list[Interval]) -> list[Interval]:
    """Parts of the sorted, merged `minuend` not covered by the sorted, merged `subtrahend`."""
    result: list[Interval] = []
    index = 0
    for interval in minuend:
        cursor = interval.start
        while index < len(subtrahend) and subtrahend[index].end <= cursor:
            index += 1
        scan = index
        while scan < len(subtrahend) and subtrahend[scan].start < interval.end:
            cut = subtrahend[scan]
            if cut.start > cursor:
                result.append(Interval(cursor, cut.start))
            cursor = max(cursor, cut.end)
            scan += 1
        if cursor < interval.end:
            result.append(Interval(cursor, interval.end))
    return result


def _seconds(intervals: Iterable[Interval]) -> float:
    return sum((i.end - i.start).total_seconds() for i in intervals)


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _spread(calendar_id: int) -> float:
    """A fixed number in [0, 1) per calendar (Knuth's multiplicative hash): its jitter."""
    return ((calendar_id * 2654435761) % 2**32) / 2**32


def audit_due(
    calendar_id: int, last_audit_at: datetime | None, now: datetime, audit_seconds: float
) -> bool:
    """Whether the calendar is due for an audit: every `audit_seconds` ±25% (fixed per
    calendar, so a deployment's audits stay spread); a calendar never audited waits for its
    own moment within one period, so a new deployment does not ask for all at once."""
    spread = _spread(calendar_id)
    if last_audit_at is None:
        return now.timestamp() % audit_seconds >= spread * audit_seconds
    interval = audit_seconds * (0.75 + 0.5 * spread)
    return (now - last_audit_at).total_seconds() >= interval


def audit_check_seconds(audit_seconds: float) -> float:
    """How often beat looks for due audits: fine enough to keep the spread, never busy."""
    return max(1.0, min(3600.0, audit_seconds / 48))
