"""The built-in notifier's conditions, as a table of snapshots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.ops_snapshot import CalendarHealthRow, OpsSnapshot
from rules.health import CalendarState
from worker.alert_rules import AlertThresholds, evaluate_alerts

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LIMITS = AlertThresholds()


def row(calendar_id=1, state=CalendarState.OK, lag=0.0, stale=60.0, account_id=1, error=None):
    return CalendarHealthRow(calendar_id, account_id, 7, state, lag, stale, error)


def snap(*rows, **kw) -> OpsSnapshot:
    return OpsSnapshot(taken_at=NOW, calendars=list(rows), **kw)


CASES = [
    ("all healthy", snap(row(), channels_live=1, last_notification_at=NOW), None, set()),
    (
        "failing",
        snap(row(3, CalendarState.FAILING, error="forbidden")),
        None,
        {"calsync/calendar-failing/3"},
    ),
    (
        "two failing calendars are two incidents",
        snap(row(3, CalendarState.FAILING), row(4, CalendarState.FAILING)),
        None,
        {"calsync/calendar-failing/3", "calsync/calendar-failing/4"},
    ),
    (
        "needs reauth: one incident per account",
        snap(
            row(1, CalendarState.NEEDS_REAUTH, account_id=9, stale=99999),
            row(2, CalendarState.NEEDS_REAUTH, account_id=9),
        ),
        None,
        {"calsync/needs-reauth/9"},
    ),
    ("lag just under", snap(row(lag=300)), None, set()),
    ("lag over", snap(row(lag=301)), None, {"calsync/sync-lag-high"}),
    ("stale", snap(row(stale=5401)), None, {"calsync/calendars-stale"}),
    (
        "channel close to expiry",
        snap(row(), soonest_channel_expiry=NOW + timedelta(hours=2)),
        None,
        {"calsync/channels-expiring"},
    ),
    (
        "channel far from expiry",
        snap(row(), soonest_channel_expiry=NOW + timedelta(days=3)),
        None,
        set(),
    ),
    (
        "silent with live channels",
        snap(row(), channels_live=2, last_notification_at=NOW - timedelta(hours=13)),
        None,
        {"calsync/no-notifications"},
    ),
    (
        "never heard, channels old",
        snap(row(), channels_live=2, oldest_live_channel_at=NOW - timedelta(hours=13)),
        None,
        {"calsync/no-notifications"},
    ),
    (
        "silent but nothing watched",
        snap(row(), channels_live=0, last_notification_at=NOW - timedelta(days=3)),
        None,
        set(),
    ),
    ("queue over", snap(row()), 101, {"calsync/queue-backing-up"}),
    ("queue fine", snap(row()), 100, set()),
]


@pytest.mark.parametrize(
    ("snapshot", "depth", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_alert_conditions(snapshot: OpsSnapshot, depth: int | None, expected: set[str]) -> None:
    assert {alert.key for alert in evaluate_alerts(snapshot, depth, LIMITS)} == expected


def test_messages_hold_ids_and_codes_only() -> None:
    (alert,) = evaluate_alerts(snap(row(3, CalendarState.FAILING, error="forbidden")), None, LIMITS)
    assert alert.summary == (
        "calsync: calendar 3 of host 7 is failing to sync (last error: forbidden)"
    )
    assert alert.severity == "error"


def test_differs_from_google_names_each_calendar_and_its_ranges_briefly() -> None:
    from models.ops_snapshot import DifferingCalendar

    ranges = [
        {"start": f"2025-03-0{day}T09:00:00Z", "end": f"2025-03-0{day}T10:00:00Z"}
        for day in range(2, 9)
    ]
    differing = [
        DifferingCalendar(5, 7, NOW, ranges[:1], 3600.0),
        DifferingCalendar(6, 8, NOW, ranges, 7 * 3600.0),
    ]
    alerts = evaluate_alerts(snap(row(), differing_from_google=differing), None, LIMITS)
    by_key = {alert.key: alert for alert in alerts}
    one = by_key["calsync/differs-from-google/5"]
    assert one.rule == "differs_from_google" and one.severity == "error"
    assert one.summary == (
        "calsync: calendar 5 of host 7 differs from Google's freeBusy after a full resync "
        "(3600 s): 2025-03-02T09:00:00Z..2025-03-02T10:00:00Z"
    )
    many = by_key["calsync/differs-from-google/6"].summary
    assert many.endswith("2025-03-06T09:00:00Z..2025-03-06T10:00:00Z and 2 more")
    assert len(many) < 1024
