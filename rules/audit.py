"""Audit comparison: calsync's busy table against Google's own freeBusy answer (pure).

Google's freeBusy knows nothing of a host's busy policy, so the comparison is made under
Google's semantics, which are calsync's default `BusyPolicy()`. Busy blocks of events the
host's policy does not touch are compared as stored (the table frontends read); an event the
host's policy decides differently from the default (e.g. tentative as free) is compared by
its stored facts re-decided under the default policy instead, and counted as such.

Where Google documents nothing, the answer is not held against calsync: an unanswered
invitation (the host's own `responseStatus: needsAction`) is busy under the default policy,
as the emulator's freeBusy answers it (emulator/README.md), but Google may answer it either
way. So Google may be busy or free over such an event's time, and only there; everywhere
else (covered by any other busy event, or by none) the two sides must agree exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rules.busy_rules import BusyPolicy, EventFacts, Reason, decide
from rules.intervals import Interval, clip, merge
from rules.sync_schedule import settle

GOOGLE_SEMANTICS = BusyPolicy()
# The host's own answer Google documents no freeBusy treatment for (GOOGLE_NOTES.md).
UNDOCUMENTED_RESPONSE = "needsAction"


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """One `busy_blocks` row: its event key and `[start, end)` in UTC."""

    event_key: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class OurSide:
    """What calsync answers for a calendar under Google's semantics."""

    busy: list[Interval]  # every busy event, unanswered invitations included
    policy_touched: int  # events the host's policy decides otherwise than Google's semantics
    # The same without unanswered invitations: what Google must at least call busy.
    certain: list[Interval] | None = None


@dataclass(frozen=True, slots=True)
class AuditComparison:
    matched: bool
    differences: list[Interval]  # merged, UTC, inside the window; no sources (no titles)
    differing_seconds: float
    ours_only_seconds: float  # busy here, free at Google
    google_only_seconds: float  # busy at Google, free here (the double-booking side)
    # Free at Google over an unanswered invitation only: undocumented, so not a difference.
    tolerated_seconds: float = 0.0


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
    unanswered: set[str] = set()
    for facts in events:
        host_busy = decide(facts, host_policy) is Reason.BUSY
        default_busy = decide(facts, GOOGLE_SEMANTICS) is Reason.BUSY
        if host_busy != default_busy:
            touched[facts.google_event_id] = facts
        if default_busy and facts.response_status == UNDOCUMENTED_RESPONSE:
            unanswered.add(facts.google_event_id)
    busy: list[tuple[str, Interval]] = [
        (block.event_key, Interval(block.start, block.end))
        for block in blocks
        if block.event_key not in touched and block.start < block.end
    ]
    for facts in touched.values():
        if decide(facts, GOOGLE_SEMANTICS) is Reason.BUSY and facts.start and facts.end:
            busy.append((facts.google_event_id, Interval(facts.start, facts.end)))
    return OurSide(
        merge(interval for _key, interval in busy),
        len(touched),
        merge(interval for key, interval in busy if key not in unanswered),
    )


def compare(
    ours: Iterable[Interval],
    google: Iterable[Interval],
    window_start: datetime,
    window_end: datetime,
    certain: Iterable[Interval] | None = None,
) -> AuditComparison:
    """The ranges of `[window_start, window_end)` where exactly one side is busy.

    `certain` (default: `ours`) is the part of `ours` Google must call busy too; between it
    and `ours` (unanswered invitations) Google may answer either way."""
    ours_merged = merge(clip(ours, window_start, window_end))
    google_merged = merge(clip(google, window_start, window_end))
    certain_merged = (
        ours_merged if certain is None else merge(clip(certain, window_start, window_end))
    )
    ours_only = _subtract(certain_merged, google_merged)
    google_only = _subtract(google_merged, ours_merged)
    tolerated = _subtract(_subtract(ours_merged, certain_merged), google_merged)
    differences = [Interval(i.start, i.end) for i in merge([*ours_only, *google_only])]
    return AuditComparison(
        matched=not differences,
        differences=differences,
        differing_seconds=_seconds(differences),
        ours_only_seconds=_seconds(ours_only),
        google_only_seconds=_seconds(google_only),
        tolerated_seconds=_seconds(tolerated),
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


def audit_interval_seconds(spread_key: int, audit_seconds: float) -> float:
    """The fixed interval of a `spread_key` (the Google account: its calendars stay in step,
    so one freeBusy request asks for all of them): `audit_seconds` ±25%, jittered in the
    rate (between 0.83 and 1.25 periods, rate 0.8 to 1.2 per period) so the audits of a
    deployment average exactly one per calendar and period, never more."""
    return audit_seconds / (0.8 + 0.4 * _spread(spread_key))


def audit_due(
    spread_key: int, last_audit_at: datetime | None, now: datetime, audit_seconds: float
) -> bool:
    """Whether a calendar is due for an audit: `audit_interval_seconds` after its last
    attempt; a calendar never audited waits for its account's moment within one period, so
    a new deployment does not ask for all at once."""
    if last_audit_at is None:
        return now.timestamp() % audit_seconds >= _spread(spread_key) * audit_seconds
    interval = audit_interval_seconds(spread_key, audit_seconds)
    return (now - last_audit_at).total_seconds() >= interval


def next_audit_at(
    spread_key: int, last_audit_at: datetime | None, after: datetime, audit_seconds: float
) -> datetime:
    """The first moment at or after `after` when `audit_due` says yes (for a calendar never
    audited: the next time the period reaches its account's phase). Stored per calendar so
    the database finds the due ones by index; `audit_due` stays the judge."""
    if last_audit_at is not None:
        interval = audit_interval_seconds(spread_key, audit_seconds)
        moment = last_audit_at + timedelta(microseconds=math.ceil(interval * 1_000_000))
    elif audit_due(spread_key, None, after, audit_seconds):
        return after
    else:
        phase = after.timestamp() % audit_seconds
        wait = _spread(spread_key) * audit_seconds - phase
        moment = after + timedelta(microseconds=math.ceil(wait * 1_000_000))
    settled = settle(moment, lambda at: audit_due(spread_key, last_audit_at, at, audit_seconds))
    # Already due before `after` (the last audit is older than its interval): due from `after`.
    return max(settled, after)


def due_by_account(
    candidates: Iterable[tuple[int, int, datetime | None]],
    now: datetime,
    audit_seconds: float,
    check_seconds: float,
) -> dict[int, list[int]]:
    """Calendars to audit now, per Google account, from (calendar, account, last attempt).

    An account with a calendar due takes along its calendars due before the next check:
    they share the one freeBusy request instead of asking again half an hour later."""
    by_account: dict[int, list[tuple[int, datetime | None]]] = {}
    for calendar_id, account_id, last_at in candidates:
        by_account.setdefault(account_id, []).append((calendar_id, last_at))
    soon = now + timedelta(seconds=check_seconds)
    due: dict[int, list[int]] = {}
    for account_id, calendars in by_account.items():
        if any(audit_due(account_id, last, now, audit_seconds) for _c, last in calendars):
            due[account_id] = [
                calendar_id
                for calendar_id, last in calendars
                if audit_due(account_id, last, soon, audit_seconds)
            ]
    return due


def audit_check_seconds(audit_seconds: float) -> float:
    """How often beat looks for due audits: fine enough to keep the spread, never busy."""
    return max(1.0, min(3600.0, audit_seconds / 48))


UNDECIDED_RETRIES = 3  # an audit that could not decide is tried again this often, soon
UNDECIDED_FIRST_RETRY_SECONDS = 60.0


def undecided_retry_seconds(attempt: int, audit_seconds: float, spread: float) -> float | None:
    """When to try an undecided audit again (the calendar changed meanwhile, or Google
    failed after the request's own retries): after about 1, 4 and 16 minutes (±25% by
    `spread` in [0, 1)), by then the change's own sync has run; at most a quarter period.
    After that (None) the calendar waits for its next regular audit, so a calendar that
    never stops changing costs a bounded number of requests."""
    if attempt >= UNDECIDED_RETRIES:
        return None
    delay = UNDECIDED_FIRST_RETRY_SECONDS * 4**attempt * (0.75 + 0.5 * spread)
    return min(delay, audit_seconds / 4)
