"""Structured logs: context bound per task, and no token or secret in any line, captured
over syncs with token refreshes, a revoked grant and webhook requests."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from core import logs
from core.settings import Settings
from emulator import EmulatorServer
from models import Calendar, GoogleAccount
from models.credentials_box import decrypt_credentials
from models.db import session_scope
from tests.factories import make_channel
from tests.pipeline.conftest import attach, emulator, emulator_server, google_settings
from webhook import create_app
from worker import google_client, observability, sync_engine, tasks

__all__ = ["emulator", "emulator_server", "google_settings"]  # fixtures used below


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    handler = logs.configure_logging("test", stream=stream, level=logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(saved[0])


def _access_tokens() -> set[str]:
    found = set()
    for service in google_client._services.values():
        token = getattr(service._http.credentials, "token", None)
        if token:
            found.add(token)
    return found


def _timed(day: int) -> dict:
    start = datetime.now(UTC).replace(microsecond=0, second=0, minute=0) + timedelta(days=day)
    return {
        "summary": "meeting",
        "start": {"dateTime": start.isoformat()},
        "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
    }


def test_no_secret_in_logs_of_syncs_refreshes_and_webhooks(
    google_settings: Settings, emulator: EmulatorServer, captured: io.StringIO
) -> None:
    cal = attach(emulator, "logs@example.com")
    control = emulator.control
    control.insert_event(cal.google_calendar_id, _timed(1))
    access_tokens: set[str] = set()

    observability._bind_task(task_id="task-1", task=tasks.sync_calendar, args=[cal.calendar_id])
    try:
        assert sync_engine.sync_calendar(cal.calendar_id, full=True).status == "done"
    finally:
        observability._unbind_task(task_id="task-1")
    access_tokens |= _access_tokens()
    # The emulator's clock passes the token's lifetime: the next call gets 401 and refreshes.
    control.advance_clock(2 * 3600)
    control.insert_event(cal.google_calendar_id, _timed(2))
    assert sync_engine.sync_calendar(cal.calendar_id, force=True).status == "done"
    access_tokens |= _access_tokens()
    assert len(access_tokens) >= 2, "expected at least two token refreshes"

    # A webhook request, accepted and refused, with the channel token in its headers.
    with session_scope() as session:
        calendar = session.get(Calendar, cal.calendar_id)
        channel = make_channel(session, calendar, resource_id="res-1")
        channel_token = channel.plain_token
        channel_id = channel.id
    client = create_app(google_settings).test_client()
    headers = {
        "X-Goog-Channel-ID": channel_id,
        "X-Goog-Channel-Token": channel_token,
        "X-Goog-Resource-ID": "res-1",
        "X-Goog-Resource-State": "sync",
        "X-Goog-Message-Number": "1",
    }
    assert client.post("/webhooks/google", headers=headers).status_code == 204
    wrong = dict(headers, **{"X-Goog-Channel-Token": channel_token + "x"})
    assert client.post("/webhooks/google", headers=wrong).status_code == 403
    admin = {"Authorization": f"Bearer {google_settings.admin_token}"}
    client.get(f"/v1/calendars/{cal.calendar_id}/sync-status", headers=admin)
    client.get("/v1/calendars/999999/sync-status", headers={"Authorization": "Bearer wrong-x"})

    # Access revoked: invalid_grant is logged, the credentials are not.
    control.revoke_account("logs@example.com")
    google_client.forget_services()
    control.advance_clock(2 * 3600)
    sync_engine.sync_calendar(cal.calendar_id, force=True)

    with session_scope() as session:
        account = session.get(GoogleAccount, cal_account_id(session, cal.calendar_id))
        credentials = decrypt_credentials(account.credentials_encrypted)
        channel_tokens = {c["token"] for c in control.channels()} | {channel_token}
    text = captured.getvalue()
    assert "sync_applied" in text and "push_rejected" in text  # the capture saw the work
    assert "task_id=task-1" in text and f"calendar_id={cal.calendar_id}" in text
    assert "run_id=" in text
    secrets = {
        "refresh token": credentials["refresh_token"],
        "client secret": credentials["client_secret"],
        "admin token": google_settings.admin_token,
        "secret key": google_settings.secret_key,
        **{f"access token {i}": t for i, t in enumerate(access_tokens)},
        **{f"channel token {i}": t for i, t in enumerate(channel_tokens)},
    }
    for name, value in secrets.items():
        assert value and value not in text, f"{name} appears in the logs"


def cal_account_id(session, calendar_id: int) -> int:
    return session.get(Calendar, calendar_id).account_id


@pytest.mark.parametrize(
    "line",
    [
        "Authorization: Bearer ya29.a0AfH6SMBx-secret",
        'body={"refresh_token": "1//0gAbCdEfGhIjKlMnOp", "client_secret": "GOCSPX-abc"}',
        "access_token=ya29.zzz&expires_in=3599",
        "X-Goog-Channel-Token: chan-secret-123",
    ],
)
def test_redaction_masks_credentials_a_library_might_log(line: str) -> None:
    out = logs.redact(line)
    for secret in ("ya29.", "1//0g", "GOCSPX-abc", "chan-secret-123"):
        assert secret not in out
    assert logs.REDACTED in out


def test_json_format_carries_the_bound_context() -> None:
    import json

    stream = io.StringIO()
    handler = logs.configure_logging("worker", fmt="json", stream=stream)
    try:
        with logs.bound(calendar_id=5, task_id="t-9", run_id="r-1"):
            logging.getLogger("calsync.test").info("hello %s", "there")
    finally:
        logging.getLogger().removeHandler(handler)
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert entry["msg"] == "hello there"
    assert (entry["calendar_id"], entry["task_id"], entry["run_id"]) == ("5", "t-9", "r-1")
    assert entry["process"] == "worker"


def test_redaction_masks_url_tokens_and_calsync_tokens_also_inside_quoted_json() -> None:
    """Issue 14 item 1: access logs and proxies must not keep `token=` values or calsync's
    own tokens (made by models.registry), in key=value and in JSON lines alike."""
    import json

    from models.registry import new_api_token, new_feed_token

    api, feed = new_api_token(), new_feed_token()
    lines = [
        f'127.0.0.1 - - "GET /status/3?token={feed} HTTP/1.1" 200 -',
        "GET /connect/google?host=3&token=plain-secret&calendar=x",
        f"created host apiToken={api}",
        f"stray value {api} in a sentence, and ({feed})",
        json.dumps({"body": json.dumps({"apiToken": api, "token": "plain-secret"})}),
        json.dumps({"msg": f"GET /status/3?token={feed}"}),
    ]
    for line in lines:
        for out in (logs.redact(line), logs.redact(json.dumps({"msg": line}))):
            for secret in (api, feed, "plain-secret"):
                assert secret not in out, (line, out)
            assert logs.REDACTED in out
    # Not secrets: Google's sync and page tokens keep their values for debugging.
    kept = "sync_token=abc nextSyncToken=def pageToken=ghi"
    assert logs.redact(kept) == kept


def test_a_url_token_in_a_formatted_json_line_is_masked() -> None:
    stream = io.StringIO()
    handler = logs.configure_logging("web", fmt="json", stream=stream)
    try:
        logging.getLogger("gunicorn.access").info('"GET /status/1?token=csf_%s HTTP/1.1"', "x" * 43)
    finally:
        logging.getLogger().removeHandler(handler)
    line = stream.getvalue()
    assert "x" * 43 not in line and "token=[redacted]" in line
