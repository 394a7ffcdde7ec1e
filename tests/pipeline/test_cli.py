"""The `calsync` CLI verbs, each a thin caller of the code the worker and API use."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from calsync.cli import cli
from models import BusyBlock, Calendar, Host, ManualBlock
from models.db import session_scope
from models.registry import hash_api_token
from worker import enqueue

from .conftest import Attached


@pytest.fixture
def sent(monkeypatch) -> list[tuple]:
    """Messages the CLI hands to the broker (the broker itself is tested end to end)."""
    messages: list[tuple] = []
    monkeypatch.setattr(enqueue, "send", lambda name, *a, **kw: messages.append((name, a, kw)))
    return messages


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_hosts_add_prints_a_token_that_is_stored_hashed(db, settings) -> None:
    out = json.loads(run("hosts", "add", "Ada", "--time-zone", "Europe/Berlin"))
    with session_scope() as session:
        host = session.get(Host, out["id"])
        assert host.time_zone == "Europe/Berlin"
        assert host.api_token_hash == hash_api_token(out["apiToken"])
        assert out["apiToken"] not in (host.api_token_hash or "")


def test_calendars_add_attaches_and_starts_full_sync_and_watch(
    db, settings, sent, tmp_path
) -> None:
    host_id = json.loads(run("hosts", "add", "Ada"))["id"]
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"client_id": "c", "client_secret": "s", "refresh_token": "r"}))
    out = json.loads(
        run("calendars", "add", str(host_id), "ada@example.com", "--credentials", str(creds))
    )
    with session_scope() as session:
        calendar = session.get(Calendar, out["id"])
        assert calendar.google_calendar_id == "ada@example.com"
    names = [(name, a, kw.get("full")) for name, a, kw in sent]
    assert ("calsync.sync_calendar", (out["id"],), True) in names
    assert ("calsync.start_watch", (out["id"],), None) in names


@pytest.mark.parametrize(
    ("content", "message"),
    [("not json", "not JSON"), ('{"client_id": "c"}', "credentials lack")],
)
def test_calendars_add_rejects_bad_credentials(db, settings, sent, tmp_path, content, message):
    host_id = json.loads(run("hosts", "add", "Ada"))["id"]
    creds = tmp_path / "creds.json"
    creds.write_text(content)
    result = CliRunner().invoke(
        cli, ["calendars", "add", str(host_id), "x@example.com", "--credentials", str(creds)]
    )
    assert result.exit_code != 0 and message in result.output
    assert sent == []
    with session_scope() as session:
        assert session.scalars(select(Calendar)).all() == []


def test_busy_prints_merged_intervals_with_sources(attached: Attached) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    with session_scope() as session:
        session.add(
            BusyBlock(
                calendar_id=attached.calendar_id,
                event_key="e1",
                start=start,
                end=start + timedelta(hours=1),
            )
        )
        session.add(
            ManualBlock(
                host_id=attached.host_id,
                start=start + timedelta(minutes=30),
                end=start + timedelta(hours=2),
                note="gym",
            )
        )
    out = run("busy", str(attached.host_id))
    line = out.strip().splitlines()
    assert len(line) == 1
    assert start.isoformat() in line[0] and (start + timedelta(hours=2)).isoformat() in line[0]
    assert f"calendar:{attached.calendar_id}/e1" in line[0] and "manual:" in line[0]


def test_busy_rejects_an_inverted_window(attached: Attached) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "busy",
            str(attached.host_id),
            "--from",
            "2030-01-02T00:00:00Z",
            "--to",
            "2030-01-01T00:00:00Z",
        ],
    )
    assert result.exit_code != 0 and "--to must be after --from" in result.output


def test_sync_inline_then_status(emulator, attached: Attached) -> None:
    emulator.control.insert_event(
        attached.google_calendar_id,
        {
            "start": {"dateTime": (datetime.now(UTC) + timedelta(hours=2)).isoformat()},
            "end": {"dateTime": (datetime.now(UTC) + timedelta(hours=3)).isoformat()},
        },
    )
    assert json.loads(run("sync", str(attached.calendar_id), "--inline"))["status"] == "done"
    status = json.loads(run("status", str(attached.calendar_id)))
    assert status["state"] == "not_watched"  # synced, but no push channel yet
    assert status["lastSuccessAt"] is not None
    assert status["recentRuns"][0]["kind"] == "full"
    assert status["recentRuns"][0]["eventsSeen"] == 1


def test_status_of_unknown_calendar_fails_clearly(db, settings) -> None:
    result = CliRunner().invoke(cli, ["status", "999"])
    assert result.exit_code != 0 and "no calendar 999" in result.output


def test_db_upgrade_creates_the_schema(tmp_path, settings) -> None:
    import dataclasses

    from sqlalchemy import inspect

    from core.settings import configure
    from models.db import get_engine

    scratch = dataclasses.replace(settings, database_url=f"sqlite:///{tmp_path}/fresh.db")
    configure(scratch)
    try:
        run("db", "upgrade")
        tables = set(inspect(get_engine(scratch.database_url)).get_table_names())
    finally:
        configure(settings)
    assert {"busy_blocks", "calendar_events", "sync_states", "channels"} <= tables


def test_keys_rotate_reencrypts_every_credential_in_batches_and_is_idempotent(
    db, settings, session
) -> None:
    import dataclasses
    import secrets

    from core.settings import configure
    from models import GoogleAccount
    from models.credentials_box import decrypt_credentials, encrypt_credentials
    from tests.factories import make_account, make_host

    old_key, new_key = settings.secret_key, secrets.token_urlsafe(32)
    host = make_host(session)
    accounts = [make_account(session, host) for _ in range(5)]  # under the old key
    session.commit()
    rotated = dataclasses.replace(settings, secret_key=new_key, secret_key_previous=old_key)
    configure(rotated)
    # One already under the new key: counted, left alone.
    with session_scope() as scope:
        scope.get(GoogleAccount, accounts[0].id).credentials_encrypted = encrypt_credentials(
            {"client_id": "c", "client_secret": "s", "refresh_token": "new"}, rotated
        )

    first = json.loads(run("keys", "rotate", "--batch-size", "2"))
    assert first == {"reencrypted": 4, "alreadyCurrent": 1, "undecryptable": 0}
    again = json.loads(run("keys", "rotate"))
    assert again == {"reencrypted": 0, "alreadyCurrent": 5, "undecryptable": 0}

    new_only = dataclasses.replace(settings, secret_key=new_key)
    with session_scope() as scope:
        for account in scope.scalars(select(GoogleAccount)):
            assert decrypt_credentials(account.credentials_encrypted, new_only)["client_id"]


def test_keys_rotate_reports_credentials_no_key_opens(db, settings, session) -> None:
    import dataclasses
    import secrets

    from core.settings import configure
    from tests.factories import make_account, make_host

    make_account(session, make_host(session))
    session.commit()
    configure(dataclasses.replace(settings, secret_key=secrets.token_urlsafe(32)))
    result = CliRunner().invoke(cli, ["keys", "rotate"])
    assert result.exit_code == 1
    assert '"undecryptable": 1' in result.output and "CALSYNC_SECRET_KEY_PREVIOUS" in result.output


def test_hosts_rotate_token_stops_the_old_token(db, settings) -> None:
    created = json.loads(run("hosts", "add", "Ada"))
    rotated = json.loads(run("hosts", "rotate-token", str(created["id"])))
    assert rotated["id"] == created["id"] and rotated["apiToken"] != created["apiToken"]
    with session_scope() as session:
        host = session.get(Host, created["id"])
        assert host.api_token_hash == hash_api_token(rotated["apiToken"])
    result = CliRunner().invoke(cli, ["hosts", "rotate-token", "999999"])
    assert result.exit_code != 0 and "no host 999999" in result.output


@pytest.mark.parametrize("command", ["feeds", "feed-token"])
def test_hosts_feeds_prints_the_connect_values(db, settings, command) -> None:
    host_id = json.loads(run("hosts", "add", "Ada"))["id"]
    out = json.loads(run("hosts", command, str(host_id)))
    token = out["feedToken"]
    assert token.startswith("csf_")
    assert out["statusPageUrl"].endswith(f"/status/{host_id}?token={token}")
    assert out["caldavUrl"].endswith("/dav/") and out["username"] == str(host_id)
    assert out["password"] == token
    assert out["icsUrl"].endswith(f"/feeds/{host_id}/{token}.ics")
    with session_scope() as session:
        assert session.get(Host, host_id).feed_token_hash == hash_api_token(out["feedToken"])


def test_hosts_delete_removes_everything_and_stops_channels(attached: Attached, sent) -> None:
    from tests.factories import make_channel

    with session_scope() as session:
        calendar = session.get(Calendar, attached.calendar_id)
        host_id, account_id = calendar.host_id, calendar.account_id
        channel = make_channel(session, calendar, resource_id="res-9")
        channel_id = channel.id
        session.add(
            ManualBlock(
                host_id=host_id,
                start=datetime.now(UTC),
                end=datetime.now(UTC) + timedelta(hours=1),
                note="",
            )
        )
    assert json.loads(run("hosts", "delete", str(host_id), "--yes")) == {"deleted": host_id}
    with session_scope() as session:
        assert session.get(Host, host_id) is None
        assert session.scalars(select(Calendar)).all() == []
        assert session.scalars(select(ManualBlock)).all() == []
        assert session.scalars(select(BusyBlock)).all() == []
    (stop,) = [(a, kw) for name, a, kw in sent if name == "calsync.stop_channels"]
    assert stop[0] == (account_id, [[channel_id, "res-9"]])
    # The account row is gone when the stop runs: the task carries its credentials, sealed
    # as they were stored, so the channels can still be stopped at Google.
    from models.credentials_box import decrypt_credentials

    assert decrypt_credentials(stop[1]["sealed_credentials"].encode())["refresh_token"]
    result = CliRunner().invoke(cli, ["hosts", "delete", str(host_id), "--yes"])
    assert result.exit_code != 0 and f"no host {host_id}" in result.output


def test_audit_runs_now_and_prints_the_differences(emulator, attached: Attached) -> None:
    assert json.loads(run("sync", str(attached.calendar_id), "--inline"))["status"] == "done"
    start = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    emulator.control.insert_event(
        attached.google_calendar_id,
        {
            "start": {"dateTime": start.isoformat()},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat()},
        },
        silent=True,
    )
    report = json.loads(run("audit", str(attached.calendar_id)))
    assert report["outcome"] == "matched" and report["healedByFullResync"] is True
    assert report["differencesBeforeResync"] == [
        {
            "start": start.isoformat().replace("+00:00", "Z"),
            "end": (start + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
        }
    ]
    status = json.loads(run("status", str(attached.calendar_id)))
    assert status["lastAudit"]["matched"] is True
    result = CliRunner().invoke(cli, ["audit", "999"])
    assert result.exit_code == 1 and '"skipped"' in result.output
