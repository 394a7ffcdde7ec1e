"""The shipped alert rules load in Prometheus and behave as their unit tests say.

Needs `promtool` (Debian package `prometheus`): skipped outside CI when missing, a failure in
CI (CI=true)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not found: install the Debian package `prometheus`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120
    )


def test_promtool_check_rules() -> None:
    result = _run("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules() -> None:
    result = _run("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    rules = yaml.safe_load((RULES_DIR / "alerts.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    required = {
        "CalsyncSyncLagHigh",
        "CalsyncCalendarFailing",
        "CalsyncNeedsReauth",
        "CalsyncChannelsExpiringUnrenewed",
        "CalsyncWebhookRejectionsSpiking",
        "CalsyncNoNotifications",
        "CalsyncQueueBackingUp",
        "CalsyncGoogleDailyBudgetLow",
        "CalsyncWebhookEndpointFailing",
        "CalsyncOutboxGrowing",
    }
    assert required <= alerts
    tests = yaml.safe_load((RULES_DIR / "alerts_test.yml").read_text())["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    assert firing == alerts
    assert silent == alerts
    for rule in (r for g in rules["groups"] for r in g["rules"]):
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_grafana_dashboard_queries_only_exported_metrics() -> None:
    import json
    import re

    dashboard = json.loads((RULES_DIR.parent / "grafana" / "calsync.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("latency", "lag", "staleness", "errors", "sync runs", "webhook", "queue"):
        assert topic in titles
    names = {m for e in exprs for m in re.findall(r"calsync_[a-z0-9_]+", e)}
    exported = {
        "calsync_notification_to_applied_seconds_bucket",
        "calsync_propagation_lag_seconds_bucket",
        "calsync_calendar_staleness_seconds",
        "calsync_calendar_pending_lag_seconds",
        "calsync_calendars",
        "calsync_sync_runs_total",
        "calsync_google_requests_total",
        "calsync_google_retries_total",
        "calsync_resyncs_410_total",
        "calsync_webhook_notifications_total",
        "calsync_queue_depth",
        "calsync_channels_live",
        "calsync_channels_expiring",
        "calsync_notification_silence_seconds",
    }
    assert names <= exported, names - exported
