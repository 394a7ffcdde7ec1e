"""Which alerts fire, from a database snapshot. Pure: no I/O, so every case is testable.

The same conditions as deploy/prometheus/alerts.yml, for teams without Prometheus. Keys are
stable (an incident's identity and the PagerDuty dedup_key) and messages hold ids and
machine codes only: never a token, a credential or a URL.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from dataclasses import dataclass, field

from core.settings import Settings
from models.ops_snapshot import DifferingCalendar, OpsSnapshot
from models.outbound_health import OutboundHealth
from rules.health import CalendarState


class Severity(enum.StrEnum):
    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Alert:
    key: str
    rule: str
    severity: Severity
    summary: str
    details: dict[str, str | int | float] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertThresholds:
    sync_lag_seconds: float = 300  # a recorded change not applied after this long
    stale_seconds: float = 5400  # no successful sync for this long
    silence_seconds: float = 12 * 3600  # no notification at all while channels are live
    queue_depth: int = 100
    # Renewal replaces a channel once it is within RENEW_BEFORE of expiry; still this close
    # to expiry means renewal is not happening.
    channel_expiry_seconds: float = 12 * 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertThresholds:
        return cls(
            sync_lag_seconds=settings.stale_after_seconds,
            stale_seconds=settings.safety_net_seconds * 1.5,
            channel_expiry_seconds=settings.renew_before_seconds / 2,
        )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


RANGES_IN_SUMMARY = 5  # a summary stays short (PagerDuty keeps 1,024 characters)


def _differs_from_google(row: DifferingCalendar) -> Alert:
    """One incident per calendar, open until an audit of it matches; the differing UTC
    ranges are named (never an event's title: the audit stores none)."""
    ranges = [f"{r['start']}..{r['end']}" for r in row.differences]
    shown = ", ".join(ranges[:RANGES_IN_SUMMARY])
    if len(ranges) > RANGES_IN_SUMMARY:
        shown += f" and {len(ranges) - RANGES_IN_SUMMARY} more"
    return Alert(
        key=f"calsync/differs-from-google/{row.calendar_id}",
        rule="differs_from_google",
        severity=Severity.ERROR,
        summary=f"calsync: calendar {row.calendar_id} of host {row.host_id} differs from "
        f"Google's freeBusy after a full resync ({row.differing_seconds:.0f} s): {shown}",
        details={
            "calendar_id": row.calendar_id,
            "host_id": row.host_id,
            "differing_seconds": round(row.differing_seconds),
            "ranges": "; ".join(ranges),
        },
    )


def evaluate_alerts(
    snapshot: OpsSnapshot, queue_depth: int | None, thresholds: AlertThresholds
) -> list[Alert]:
    alerts: list[Alert] = []
    reauth: dict[int, list[int]] = defaultdict(list)
    for row in snapshot.calendars:
        if row.state is CalendarState.FAILING:
            code = row.error_code or "unknown"
            alerts.append(
                Alert(
                    key=f"calsync/calendar-failing/{row.calendar_id}",
                    rule="calendar_failing",
                    severity=Severity.ERROR,
                    summary=f"calsync: calendar {row.calendar_id} of host {row.host_id} "
                    f"is failing to sync (last error: {code})",
                    details={"calendar_id": row.calendar_id, "host_id": row.host_id, "error": code},
                )
            )
        elif row.state is CalendarState.NEEDS_REAUTH:
            reauth[row.account_id].append(row.calendar_id)
    for account_id, calendar_ids in sorted(reauth.items()):
        alerts.append(
            Alert(
                key=f"calsync/needs-reauth/{account_id}",
                rule="needs_reauth",
                severity=Severity.ERROR,
                summary=f"calsync: Google account {account_id} needs re-authorization; "
                f"{len(calendar_ids)} calendar(s) not syncing",
                details={"account_id": account_id, "calendars": len(calendar_ids)},
            )
        )
    lag = snapshot.max_pending_lag_seconds
    if lag > thresholds.sync_lag_seconds:
        lagging = sum(
            1 for r in snapshot.calendars if r.pending_lag_seconds > thresholds.sync_lag_seconds
        )
        alerts.append(
            Alert(
                key="calsync/sync-lag-high",
                rule="sync_lag_high",
                severity=Severity.CRITICAL,
                summary=f"calsync: {lagging} calendar(s) have changes waiting longer than "
                f"{_minutes(thresholds.sync_lag_seconds)} (worst {_minutes(lag)})",
                details={"calendars": lagging, "max_lag_seconds": round(lag)},
            )
        )
    # Failing and re-auth calendars have their own alerts; staleness covers silent ones.
    stale = [
        r
        for r in snapshot.calendars
        if r.staleness_seconds > thresholds.stale_seconds
        and r.state not in (CalendarState.FAILING, CalendarState.NEEDS_REAUTH)
    ]
    if stale:
        worst = max(r.staleness_seconds for r in stale)
        alerts.append(
            Alert(
                key="calsync/calendars-stale",
                rule="calendars_stale",
                severity=Severity.WARNING,
                summary=f"calsync: {len(stale)} calendar(s) not synced for over "
                f"{_minutes(thresholds.stale_seconds)} (worst {_minutes(worst)})",
                details={"calendars": len(stale), "max_staleness_seconds": round(worst)},
            )
        )
    expiry = snapshot.soonest_channel_expiry_seconds
    if expiry is not None and expiry < thresholds.channel_expiry_seconds:
        alerts.append(
            Alert(
                key="calsync/channels-expiring",
                rule="channels_expiring",
                severity=Severity.WARNING,
                summary=f"calsync: a watch channel expires in {_minutes(expiry)} and was not "
                "renewed; push notifications will stop (is beat running?)",
                details={"expires_in_seconds": round(expiry)},
            )
        )
    silent = snapshot.silent_seconds
    if silent is not None and silent > thresholds.silence_seconds:
        alerts.append(
            Alert(
                key="calsync/no-notifications",
                rule="no_notifications",
                severity=Severity.WARNING,
                summary=f"calsync: no push notification for {_minutes(silent)} while "
                f"{snapshot.channels_live} channel(s) are live; is PUBLIC_URL reachable?",
                details={"silent_seconds": round(silent), "channels": snapshot.channels_live},
            )
        )
    for differing in snapshot.differing_from_google:
        alerts.append(_differs_from_google(differing))
    if queue_depth is not None and queue_depth > thresholds.queue_depth:
        alerts.append(
            Alert(
                key="calsync/queue-backing-up",
                rule="queue_backing_up",
                severity=Severity.WARNING,
                summary=f"calsync: {queue_depth} tasks wait in the queue (workers down or "
                "too few?)",
                details={"queue_depth": queue_depth},
            )
        )
    return alerts


# The outbox grows: events not fanned out for this long (no worker consumes the outbound
# queue, or beat is down), or this many events and deliveries waiting. One dead receiver
# alone is the failing-endpoint alert's business (its deliveries wait up to 24 h).
OUTBOX_UNFANNED_SECONDS = 5 * 60
OUTBOX_BACKLOG_DEPTH = 10_000


def evaluate_outbound_alerts(health: OutboundHealth) -> list[Alert]:
    """Failing webhook endpoints (one alert each) and a growing outbox."""
    alerts = [
        Alert(
            key=f"calsync/webhook-endpoint-failing/{endpoint_id}",
            rule="webhook_endpoint_failing",
            severity=Severity.WARNING,
            summary=f"calsync: webhook endpoint {endpoint_id} has not accepted a delivery for "
            "24 hours; it is disabled after 5 days failing",
            details={"endpoint_id": endpoint_id},
        )
        for endpoint_id, _reason in health.failing
    ]
    if (
        health.oldest_unfanned_seconds > OUTBOX_UNFANNED_SECONDS
        or health.depth > OUTBOX_BACKLOG_DEPTH
    ):
        alerts.append(
            Alert(
                key="calsync/outbox-backlog",
                rule="outbox_backlog",
                severity=Severity.WARNING,
                summary=f"calsync: {health.depth} outbound webhook events/deliveries wait "
                f"(oldest event {_minutes(health.oldest_unfanned_seconds)}); is a worker consuming "
                "the outbound queue?",
                details={"depth": health.depth},
            )
        )
    return alerts
