"""The built-in notifier against a local HTTP receiver: once per incident, resolve on
recovery, cap per window, retried delivery, PagerDuty Events v2 field rules, no secrets."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.settings import Settings
from models import SyncState
from models.db import session_scope
from tests.conftest import TEST_ADMIN_TOKEN, TEST_SECRET_KEY
from tests.factories import make_account, make_calendar, make_host
from worker.alert_notifier import HELD_BACK_KEY, run_cycle

ROUTING_KEY = "R0UT1NGKEY0123456789abcdef012345"
HOOK_SECRET_PATH = "/services/T000/B000/hook-path-secret-XYZ"


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.raw: list[str] = []
        self.fail_next = 0  # answer 500 to this many requests
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"])).decode()
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.raw.append(raw)
                receiver.bodies.append(json.loads(raw))
                self.send_response(202)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}{HOOK_SECRET_PATH}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> list[dict]:
        bodies, self.bodies = self.bodies, []
        return bodies


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


NOW = datetime.now(UTC).replace(microsecond=0)


def _calendar(failures: int = 0) -> int:
    with session_scope() as session:
        host = make_host(session)
        account = make_account(session, host)
        calendar = make_calendar(session, host, account)
        state = session.get(SyncState, calendar.id)
        state.last_success_at = NOW - timedelta(minutes=1)
        state.consecutive_failures = failures
        state.last_error_code = "backend_error" if failures else None
        return calendar.id


def _set_failures(calendar_id: int, failures: int) -> None:
    with session_scope() as session:
        session.get(SyncState, calendar_id).consecutive_failures = failures


@pytest.fixture
def slack(settings: Settings, db: None, receiver: Receiver) -> Settings:
    return dataclasses.replace(settings, alert_webhook_url=receiver.url)


@pytest.fixture
def pagerduty(settings: Settings, db: None, receiver: Receiver) -> Settings:
    return dataclasses.replace(
        settings,
        alert_webhook_url=receiver.url,
        alert_format="pagerduty",
        pagerduty_routing_key=ROUTING_KEY,
    )


def test_failing_calendar_alerts_once_and_resolves(slack: Settings, receiver: Receiver) -> None:
    calendar_id = _calendar(failures=3)
    _calendar(failures=0)  # a healthy neighbour says nothing
    run_cycle(slack, NOW)
    (trigger,) = receiver.take()
    assert set(trigger) == {"text"}
    assert f"calendar {calendar_id} " in trigger["text"]
    assert "backend_error" in trigger["text"]

    for minute in range(1, 4):  # still failing: no repeat
        run_cycle(slack, NOW + timedelta(minutes=minute))
    assert receiver.take() == []

    _set_failures(calendar_id, 0)
    run_cycle(slack, NOW + timedelta(minutes=5))
    (resolve,) = receiver.take()
    assert resolve["text"].startswith(":white_check_mark: RESOLVED")
    assert f"calendar {calendar_id} " in resolve["text"]
    run_cycle(slack, NOW + timedelta(minutes=6))
    assert receiver.take() == []

    _set_failures(calendar_id, 4)  # fails again later: a new incident, a new alert
    run_cycle(slack, NOW + timedelta(minutes=7))
    assert len(receiver.take()) == 1


def _valid_pagerduty_event(event: dict) -> None:
    assert re.fullmatch(r"[0-9A-Za-z]{32}", event["routing_key"])
    assert event["event_action"] in ("trigger", "resolve", "acknowledge")
    assert 0 < len(event["dedup_key"]) <= 255
    if event["event_action"] == "trigger":
        payload = event["payload"]
        assert 0 < len(payload["summary"]) <= 1024
        assert payload["source"]
        assert payload["severity"] in ("critical", "error", "warning", "info")
        stamp = datetime.fromisoformat(payload["timestamp"])  # ISO 8601
        assert stamp.tzinfo is not None
    else:
        assert "payload" not in event


def test_pagerduty_trigger_and_resolve_share_a_dedup_key(
    pagerduty: Settings, receiver: Receiver
) -> None:
    calendar_id = _calendar(failures=3)
    run_cycle(pagerduty, NOW)
    run_cycle(pagerduty, NOW + timedelta(minutes=1))
    (trigger,) = receiver.take()
    _valid_pagerduty_event(trigger)
    assert trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == f"calsync/calendar-failing/{calendar_id}"
    assert trigger["payload"]["severity"] == "error"
    _set_failures(calendar_id, 0)
    run_cycle(pagerduty, NOW + timedelta(minutes=2))
    (resolve,) = receiver.take()
    _valid_pagerduty_event(resolve)
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == trigger["dedup_key"]


def test_pagerduty_is_chosen_by_its_events_url(settings: Settings) -> None:
    from worker.alert_delivery import uses_pagerduty

    pd = dataclasses.replace(settings, alert_webhook_url="https://events.pagerduty.com/v2/enqueue")
    assert uses_pagerduty(pd)
    assert not uses_pagerduty(
        dataclasses.replace(settings, alert_webhook_url="https://hooks.slack.com/x")
    )


def test_cap_per_hour_holds_back_the_rest_with_one_notice(
    slack: Settings, receiver: Receiver
) -> None:
    capped = dataclasses.replace(slack, alert_cap_per_hour=3)
    ids = [_calendar(failures=3) for _ in range(5)]
    run_cycle(capped, NOW)
    texts = [b["text"] for b in receiver.take()]
    assert len(texts) == 4
    assert sum("held back" in t for t in texts) == 1
    assert "2 more alert(s) held back by the cap of 3 per hour" in "".join(texts)
    run_cycle(capped, NOW + timedelta(minutes=10))
    assert receiver.take() == []  # window still full; the notice is not repeated
    run_cycle(capped, NOW + timedelta(minutes=61))
    texts = [b["text"] for b in receiver.take()]
    # The two waiting alerts go out, and the notice resolves.
    assert sum(f"calendar {ids[3]} " in t or f"calendar {ids[4]} " in t for t in texts) == 2
    assert any(t.startswith(":white_check_mark: RESOLVED") and "held back" in t for t in texts)
    with session_scope() as session:
        from models import AlertIncident

        assert session.get(AlertIncident, HELD_BACK_KEY).resolved_at is not None


def test_delivery_is_retried_and_a_lost_one_is_sent_next_cycle(
    slack: Settings, receiver: Receiver
) -> None:
    _calendar(failures=3)
    receiver.fail_next = 1  # one 500: tenacity retries within the cycle
    report = run_cycle(slack, NOW)
    assert len(receiver.take()) == 1 and report.failed == []
    other = _calendar(failures=3)
    receiver.fail_next = 100  # down for the whole cycle
    report = run_cycle(slack, NOW + timedelta(minutes=1))
    assert report.failed == [("trigger", f"calsync/calendar-failing/{other}")]
    receiver.fail_next = 0
    run_cycle(slack, NOW + timedelta(minutes=2))
    (late,) = receiver.take()
    assert f"calendar {other} " in late["text"]


def test_no_secret_in_any_message(pagerduty: Settings, receiver: Receiver) -> None:
    secrets = dataclasses.replace(pagerduty, admin_token=TEST_ADMIN_TOKEN)
    calendar_id = _calendar(failures=3)
    with session_scope() as session:
        from models import GoogleAccount

        account = session.get(GoogleAccount, make_calendar_account(session, calendar_id))
        account.state = "needs_reauth"
    run_cycle(secrets, NOW)
    raw = "\n".join(receiver.raw)
    assert receiver.raw
    for secret in (
        TEST_ADMIN_TOKEN,
        TEST_SECRET_KEY,
        "test-client-secret",
        "test-refresh-token",
        "hook-path-secret",
        str(secrets.alert_webhook_url),
    ):
        assert secret not in raw


def make_calendar_account(session, calendar_id: int) -> int:
    from models import Calendar

    return session.get(Calendar, calendar_id).account_id


def test_without_a_webhook_url_nothing_happens(settings: Settings, db: None) -> None:
    _calendar(failures=3)
    assert run_cycle(settings, NOW).firing == []


def test_alert_settings_are_validated_without_echoing_secrets() -> None:
    from core.settings import SettingsError

    parsed = Settings.from_env(
        {"CALSYNC_ALERT_FORMAT": "pagerduty", "CALSYNC_PAGERDUTY_ROUTING_KEY": ROUTING_KEY}
    )
    assert (parsed.alert_format, parsed.pagerduty_routing_key) == ("pagerduty", ROUTING_KEY)
    with pytest.raises(SettingsError, match="CALSYNC_PAGERDUTY_ROUTING_KEY") as bad:
        Settings.from_env({"CALSYNC_PAGERDUTY_ROUTING_KEY": "short-secret-value"})
    assert "short-secret-value" not in str(bad.value)
    with pytest.raises(SettingsError, match="CALSYNC_ALERT_FORMAT"):
        Settings.from_env({"CALSYNC_ALERT_FORMAT": "email"})
