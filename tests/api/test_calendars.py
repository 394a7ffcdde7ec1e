"""Attach, list and detach calendars; sync status with the last error in plain words."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from models import AccountState, BusyBlock, Calendar, CalendarEvent, GoogleAccount, SyncState
from worker import enqueue as task_queue

from .conftest import ADMIN

CREDENTIALS = {
    "type": "authorized_user",
    "client_id": "client.apps.googleusercontent.com",
    "client_secret": "secret",
    "refresh_token": "refresh-1",
}


def test_attach_enqueues_full_sync_and_watch_after_commit(client, hosts, tasks, session) -> None:
    answer = client.post(
        f"/v1/hosts/{hosts.a.id}/calendars",
        json={"googleCalendarId": "work@example.com", "credentials": CREDENTIALS},
        headers=hosts.a.headers,
    )
    assert answer.status_code == 201
    body = answer.get_json()
    assert body["googleCalendarId"] == "work@example.com" and body["hostId"] == hosts.a.id
    assert body["created"] is True and body["backgroundQueued"] is True
    assert body["state"] == "syncing" and body["stale"] is True and body["syncedAt"] is None
    assert tasks.calls == [("sync", body["id"], True), ("watch", body["id"])]
    assert session.get(Calendar, body["id"]).host_id == hosts.a.id

    listed = client.get(f"/v1/hosts/{hosts.a.id}/calendars", headers=hosts.a.headers).get_json()
    assert [c["id"] for c in listed["calendars"]] == [hosts.a.calendar_id, body["id"]]

    again = client.post(
        f"/v1/hosts/{hosts.a.id}/calendars",
        json={"googleCalendarId": "work@example.com", "credentials": CREDENTIALS},
        headers=hosts.a.headers,
    ).get_json()
    assert again["id"] == body["id"] and again["created"] is False


def test_attach_with_broker_down_still_attaches(client, hosts, tasks) -> None:
    tasks.fail = True
    answer = client.post(
        f"/v1/hosts/{hosts.a.id}/calendars",
        json={"googleCalendarId": "work@example.com", "credentials": CREDENTIALS},
        headers=ADMIN,
    )
    assert answer.status_code == 201 and answer.get_json()["backgroundQueued"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"credentials": CREDENTIALS}, "googleCalendarId"),
        ({"googleCalendarId": "", "credentials": CREDENTIALS}, "googleCalendarId"),
        ({"googleCalendarId": "x" * 1025, "credentials": CREDENTIALS}, "googleCalendarId"),
        ({"googleCalendarId": "w@example.com"}, "credentials"),
        ({"googleCalendarId": "w@example.com", "credentials": "token"}, "credentials"),
        ({"googleCalendarId": "w@example.com", "credentials": {"client_id": "x"}}, "credentials"),
        ({"googleCalendarId": "w@example.com", "credentials": CREDENTIALS, "x": 1}, "x"),
        (
            {
                "googleCalendarId": "w@example.com",
                "credentials": {**CREDENTIALS, "account": "a" * 321},
            },
            "account",
        ),
        (
            {
                "googleCalendarId": "w@example.com",
                "credentials": {**CREDENTIALS, "client_id": "a\x00"},
            },
            "client_id",
        ),
        (
            {"googleCalendarId": "w\ud800@example.com", "credentials": CREDENTIALS},
            "googleCalendarId",
        ),
    ],
)
def test_attach_validation_changes_nothing(client, hosts, tasks, snapshot, body, field) -> None:
    before = snapshot()
    answer = client.post(f"/v1/hosts/{hosts.a.id}/calendars", json=body, headers=ADMIN)
    assert answer.status_code == 400
    assert answer.get_json()["field"] == field
    assert snapshot() == before and tasks.calls == []


def test_detach_drops_blocks_and_stops_channels(client, hosts, tasks, session) -> None:
    cal = hosts.a.calendar_id
    answer = client.delete(f"/v1/hosts/{hosts.a.id}/calendars/{cal}", headers=hosts.a.headers)
    assert answer.status_code == 204
    assert session.get(Calendar, cal) is None
    for model in (BusyBlock, CalendarEvent):
        assert session.scalar(select(func.count()).where(model.calendar_id == cal)) == 0
    [(kind, _account, channels)] = tasks.calls
    assert kind == "stop" and len(channels) == 1
    # Host B's calendar is untouched.
    assert session.get(Calendar, hosts.b.calendar_id) is not None
    gone = client.delete(f"/v1/hosts/{hosts.a.id}/calendars/{cal}", headers=hosts.a.headers)
    assert gone.status_code == 404


def test_detach_through_the_wrong_host_path_is_404(client, hosts, tasks, snapshot) -> None:
    before = snapshot()
    answer = client.delete(f"/v1/hosts/{hosts.a.id}/calendars/{hosts.b.calendar_id}", headers=ADMIN)
    assert answer.status_code == 404
    assert snapshot() == before and tasks.calls == []


def test_sync_status_of_a_healthy_calendar(client, hosts) -> None:
    answer = client.get(f"/v1/calendars/{hosts.a.calendar_id}/sync-status", headers=hosts.a.headers)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["state"] == "ok" and body["lastError"] is None and body["hostId"] == hosts.a.id
    assert body["channelExpiresAt"] is not None and body["recentRuns"] == []


def test_sync_status_says_how_to_reconnect(client, hosts, session, settings) -> None:
    state = session.get(SyncState, hosts.a.calendar_id)
    state.last_error_code = "auth_revoked"
    state.last_error_message = "Google access was revoked or expired."
    account = session.get(GoogleAccount, session.get(Calendar, hosts.a.calendar_id).account_id)
    account.state = AccountState.NEEDS_REAUTH
    session.commit()
    body = client.get(
        f"/v1/calendars/{hosts.a.calendar_id}/sync-status", headers=hosts.a.headers
    ).get_json()
    assert body["state"] == "needs_reauth"
    assert body["lastError"]["code"] == "auth_revoked"
    assert body["lastError"]["message"] == (
        "Google access was revoked — reconnect at "
        f"{settings.public_url}/connect/google?host={hosts.a.id}"
    )
    assert body["lastError"]["detail"] == "Google access was revoked or expired."


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("calendar_not_found", "attach it again"),
        ("rate_limited", "retries by itself"),
        ("something_new", "tell the operator"),
    ],
)
def test_sync_status_error_sentences(client, hosts, session, code, words) -> None:
    state = session.get(SyncState, hosts.a.calendar_id)
    state.last_error_code = code
    state.last_error_message = "Stored words."
    state.consecutive_failures = 1
    state.last_attempt_at = datetime.now(UTC)
    session.commit()
    body = client.get(f"/v1/calendars/{hosts.a.calendar_id}/sync-status", headers=ADMIN).get_json()
    assert body["lastError"]["code"] == code and words in body["lastError"]["message"]


def test_attach_sends_its_tasks_only_once_the_calendar_is_committed(
    client, hosts, tasks, settings, monkeypatch
) -> None:
    from models.db import session_factory

    visible: list[int] = []
    record = tasks._record

    def record_what_a_worker_would_see(*call: object) -> None:
        with session_factory(settings.database_url)() as other:
            visible.append(other.scalar(select(func.count()).select_from(Calendar)))
        record(*call)

    monkeypatch.setattr(tasks, "_record", record_what_a_worker_would_see)
    answer = client.post(
        f"/v1/hosts/{hosts.a.id}/calendars",
        json={"googleCalendarId": "work@example.com", "credentials": CREDENTIALS},
        headers=ADMIN,
    )
    assert answer.status_code == 201
    assert [kind for kind, *_ in tasks.calls] == ["sync", "watch"]
    assert visible == [3, 3]  # two seeded calendars and the new one, for both sends


def test_attach_whose_commit_fails_sends_nothing(client, hosts, tasks, snapshot) -> None:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    def refuse(_session: Session) -> None:
        raise RuntimeError("the database refused the commit")

    before = snapshot()
    event.listen(Session, "before_commit", refuse)
    try:
        answer = client.post(
            f"/v1/hosts/{hosts.a.id}/calendars",
            json={"googleCalendarId": "work@example.com", "credentials": CREDENTIALS},
            headers=ADMIN,
        )
    finally:
        event.remove(Session, "before_commit", refuse)
    assert answer.status_code == 500
    assert tasks.calls == []
    assert snapshot() == before


def test_detach_with_broker_down_still_detaches(client, hosts, tasks, session) -> None:
    tasks.fail = True
    cal = hosts.a.calendar_id
    answer = client.delete(f"/v1/hosts/{hosts.a.id}/calendars/{cal}", headers=hosts.a.headers)
    assert answer.status_code == 204
    assert session.get(Calendar, cal) is None and tasks.calls == []


def test_audit_is_queued_for_the_worker_and_answers_202(
    client, hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[tuple[list[int], str]] = []
    monkeypatch.setattr(
        task_queue, "enqueue_audit", lambda ids, *, reason: queued.append((ids, reason))
    )
    cal = hosts.a.calendar_id
    answer = client.post(f"/v1/calendars/{cal}/audit", headers=hosts.a.headers)
    assert answer.status_code == 202
    assert answer.get_json() == {
        "calendarId": cal,
        "queued": True,
        "syncStatusUrl": f"/v1/calendars/{cal}/sync-status",
    }
    assert queued == [([cal], "api")]
    # Another host's calendar is 404, and nothing is queued.
    other = client.post(f"/v1/calendars/{hosts.b.calendar_id}/audit", headers=hosts.a.headers)
    assert other.status_code == 404 and len(queued) == 1
    status = client.get(f"/v1/calendars/{cal}/sync-status", headers=hosts.a.headers).get_json()
    assert status["lastAudit"] is None and status["differsFromGoogle"] is False
