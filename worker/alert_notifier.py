"""The built-in notifier: one evaluation cycle (run by beat every 30 s).

Once per incident: an incident opens when its rule starts firing, its trigger is sent once,
nothing more while it stays open, and a resolve is sent when it clears (only if its trigger
was sent). At most `alert_cap_per_hour` triggers per rolling hour; the rest wait, and one
"alerts held back" incident (exempt from the cap) tells on-call that more are waiting.

Messages are claimed in the database before they are sent (a conditional UPDATE), so two
overlapping cycles never send the same message; a failed delivery is unclaimed and retried
on the next cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from core.settings import Settings, get_settings
from models.alerts import AlertDelivery, AlertIncident
from models.db import session_scope
from models.ops_snapshot import take_snapshot
from models.outbound_health import outbound_health
from worker.alert_delivery import AlertMessage, DeliveryError, payload_for, post_alert
from worker.alert_rules import (
    Alert,
    AlertThresholds,
    Severity,
    evaluate_alerts,
    evaluate_outbound_alerts,
)
from worker.queue_depth import queue_depth

log = logging.getLogger("calsync.alerts")

CAP_WINDOW = timedelta(hours=1)
HELD_BACK_KEY = "calsync/alerts-held-back"

Sender = Callable[[str, dict[str, Any]], None]


@dataclass
class CycleReport:
    firing: list[str] = field(default_factory=list)
    sent: list[tuple[str, str]] = field(default_factory=list)  # (action, key)
    failed: list[tuple[str, str]] = field(default_factory=list)
    held_back: int = 0


def _open_or_refresh(session: Session, alert: Alert, now: datetime) -> None:
    incident = session.get(AlertIncident, alert.key)
    if incident is None:
        session.add(
            AlertIncident(
                key=alert.key,
                rule=alert.rule,
                severity=str(alert.severity),
                summary=alert.summary,
                opened_at=now,
                last_seen_at=now,
            )
        )
    elif incident.resolved_at is not None:
        # Fired again after it cleared: a new incident under the same stable key.
        incident.opened_at = incident.last_seen_at = now
        incident.summary, incident.severity = alert.summary, str(alert.severity)
        incident.resolved_at = incident.trigger_sent_at = incident.resolve_sent_at = None
    else:
        incident.last_seen_at = now
        if incident.trigger_sent_at is None:
            incident.summary = alert.summary  # not told yet: tell the latest numbers


def _sync_incidents(session: Session, firing: dict[str, Alert], now: datetime) -> None:
    for alert in firing.values():
        _open_or_refresh(session, alert, now)
    for incident in session.scalars(
        select(AlertIncident).where(AlertIncident.resolved_at.is_(None))
    ):
        if incident.key not in firing and incident.key != HELD_BACK_KEY:
            incident.resolved_at = now


def _claim(session: Session, key: str, column: Any, now: datetime, *conditions: Any) -> bool:
    claimed = session.execute(
        update(AlertIncident)
        .where(AlertIncident.key == key, column.is_(None), *conditions)
        .values({column.key: now})
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], claimed).rowcount == 1


def _held_back_alert(count: int, cap: int) -> Alert:
    return Alert(
        key=HELD_BACK_KEY,
        rule="alerts_held_back",
        severity=Severity.WARNING,
        summary=f"calsync: {count} more alert(s) held back by the cap of {cap} per hour; "
        "they are sent as the window allows (see the status page)",
        details={"held_back": count},
    )


def _message(incident: AlertIncident, action: str, now: datetime) -> AlertMessage:
    return AlertMessage(
        key=incident.key,
        action=action,
        rule=incident.rule,
        severity=incident.severity,
        summary=incident.summary,
        at=incident.opened_at if action == "trigger" else now,
    )


def _plan(session: Session, firing: dict[str, Alert], settings: Settings, now: datetime) -> Any:
    """Update incidents and claim the messages to send now."""
    _sync_incidents(session, firing, now)
    session.flush()
    to_send: list[AlertMessage] = []
    for incident in session.scalars(
        select(AlertIncident).where(
            AlertIncident.resolved_at.is_not(None),
            AlertIncident.trigger_sent_at.is_not(None),
            AlertIncident.resolve_sent_at.is_(None),
        )
    ):
        if _claim(
            session,
            incident.key,
            AlertIncident.resolve_sent_at,
            now,
            AlertIncident.resolved_at.is_not(None),
        ):
            to_send.append(_message(incident, "resolve", now))
    cap = settings.alert_cap_per_hour
    used = session.scalar(
        select(func.count())
        .select_from(AlertDelivery)
        .where(
            AlertDelivery.action == "trigger",
            AlertDelivery.key != HELD_BACK_KEY,
            AlertDelivery.sent_at > now - CAP_WINDOW,
        )
    )
    room = max(0, cap - (used or 0))
    waiting = list(
        session.scalars(
            select(AlertIncident)
            .where(
                AlertIncident.resolved_at.is_(None),
                AlertIncident.trigger_sent_at.is_(None),
                AlertIncident.key != HELD_BACK_KEY,
            )
            .order_by(AlertIncident.opened_at, AlertIncident.key)
        )
    )
    for incident in waiting[:room]:
        if _claim(session, incident.key, AlertIncident.trigger_sent_at, now):
            to_send.append(_message(incident, "trigger", now))
    held_back = len(waiting[room:])
    return to_send, held_back


def run_cycle(
    settings: Settings | None = None,
    now: datetime | None = None,
    sender: Sender = post_alert,
) -> CycleReport:
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    report = CycleReport()
    url = settings.alert_webhook_url
    if not url:
        return report
    with session_scope(settings.database_url) as session:
        snapshot = take_snapshot(
            session,
            now,
            stale_after_seconds=settings.stale_after_seconds,
            safety_net_seconds=settings.safety_net_seconds,
        )
        outbound = outbound_health(session, now)
    alerts = evaluate_alerts(
        snapshot, queue_depth(settings), AlertThresholds.from_settings(settings)
    )
    alerts += evaluate_outbound_alerts(outbound)
    firing = {alert.key: alert for alert in alerts}
    report.firing = sorted(firing)
    with session_scope(settings.database_url) as session:
        to_send, held_back = _plan(session, firing, settings, now)
    report.held_back = held_back
    if held_back:
        firing[HELD_BACK_KEY] = _held_back_alert(held_back, settings.alert_cap_per_hour)
    # The held-back incident opens and clears like any other, outside the cap.
    with session_scope(settings.database_url) as session:
        if held_back:
            _open_or_refresh(session, firing[HELD_BACK_KEY], now)
            session.flush()
            incident = session.get(AlertIncident, HELD_BACK_KEY)
            if incident is not None and _claim(
                session, HELD_BACK_KEY, AlertIncident.trigger_sent_at, now
            ):
                to_send.append(_message(incident, "trigger", now))
        else:
            held = session.get(AlertIncident, HELD_BACK_KEY)
            if held is not None and held.resolved_at is None:
                held.resolved_at = now
                if held.trigger_sent_at is not None and _claim(
                    session, HELD_BACK_KEY, AlertIncident.resolve_sent_at, now
                ):
                    to_send.append(_message(held, "resolve", now))
    for message in to_send:
        _deliver(message, settings, sender, report, now)
    return report


def _deliver(
    message: AlertMessage, settings: Settings, sender: Sender, report: CycleReport, now: datetime
) -> None:
    assert settings.alert_webhook_url
    try:
        sender(settings.alert_webhook_url, payload_for(message, settings))
    except DeliveryError:
        column = (
            AlertIncident.trigger_sent_at
            if message.action == "trigger"
            else AlertIncident.resolve_sent_at
        )
        with session_scope(settings.database_url) as session:
            session.execute(
                update(AlertIncident)
                .where(AlertIncident.key == message.key)
                .values({column.key: None})
            )
        report.failed.append((message.action, message.key))
        return
    with session_scope(settings.database_url) as session:
        session.add(AlertDelivery(key=message.key, action=message.action, sent_at=now))
    report.sent.append((message.action, message.key))
    log.info("alert_sent action=%s key=%s rule=%s", message.action, message.key, message.rule)
