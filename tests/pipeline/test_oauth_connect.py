"""The browser OAuth connect flow end to end against the emulator's consent and token
endpoints, with google-auth-oauthlib doing the exchange."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import select

from core.settings import Settings, configure
from emulator import EmulatorServer
from emulator.oauth import CLIENT_ID, CLIENT_SECRET
from models import AccountState, Calendar, GoogleAccount, SyncState
from models.db import session_scope
from models.registry import create_host
from webhook import create_app
from worker import enqueue, sync_engine

from .test_sync_engine import assert_converged, timed


@dataclass
class Sent:
    syncs: list[tuple[int, str, bool]] = field(default_factory=list)
    watches: list[int] = field(default_factory=list)


@pytest.fixture
def oauth_settings(google_settings: Settings, emulator: EmulatorServer) -> Iterator[Settings]:
    configured = dataclasses.replace(
        google_settings,
        public_url="http://localhost",
        google_client_id=CLIENT_ID,
        google_client_secret=CLIENT_SECRET,
        google_auth_uri=emulator.url + "/o/oauth2/auth",
    )
    configure(configured)
    yield configured
    configure(google_settings)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    record = Sent()
    monkeypatch.setattr(
        enqueue,
        "enqueue_sync",
        lambda cal, *, reason, full=False, force=False: record.syncs.append((cal, reason, full)),
    )
    monkeypatch.setattr(enqueue, "enqueue_watch", record.watches.append)
    return record


@pytest.fixture
def client(oauth_settings: Settings) -> FlaskClient:
    return create_app(oauth_settings).test_client()


def new_host() -> tuple[int, str]:
    with session_scope() as session:
        host, token = create_host(session, "oauth host", "Europe/Berlin")
        return host.id, token


def consent(client: FlaskClient, query: str) -> str:
    """Open the connect link, let the emulator consent; returns the callback path + query."""
    started = client.get("/connect/google?" + query)
    assert started.status_code == 302, started.get_json()
    google = urlsplit(started.headers["Location"])
    params = parse_qs(google.query)
    assert params["access_type"] == ["offline"] and params["prompt"] == ["consent"]
    assert params["scope"] == ["https://www.googleapis.com/auth/calendar.readonly"]
    assert params["redirect_uri"] == ["http://localhost/connect/google/callback"]
    answer = requests.get(started.headers["Location"], allow_redirects=False, timeout=10)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["Location"])
    assert back.path == "/connect/google/callback"
    return f"{back.path}?{back.query}"


def test_connect_flow_stores_encrypted_token_and_starts_sync_and_watch(
    client: FlaskClient, emulator: EmulatorServer, sent: Sent
) -> None:
    control = emulator.control
    control.create_account("owner@example.com")
    control.create_calendar(
        "owner@example.com", time_zone="Europe/Berlin", owner="owner@example.com"
    )
    control.insert_event("owner@example.com", timed(1, 9, 10))
    host_id, token = new_host()

    done = client.get(consent(client, f"host={host_id}&token={token}"))
    assert done.status_code == 200, done.get_json()
    assert "connected" in done.get_data(as_text=True)

    with session_scope() as session:
        calendar = session.scalars(select(Calendar).where(Calendar.host_id == host_id)).one()
        account = session.get(GoogleAccount, calendar.account_id)
        assert calendar.google_calendar_id == "primary"
        assert account.state == AccountState.OK
        assert b"1//emu-" not in account.credentials_encrypted  # stored encrypted
        calendar_id = calendar.id
    assert sent.syncs == [(calendar_id, "attach", True)]
    assert sent.watches == [calendar_id]
    # The stored refresh token works: the (here inline) sync fetches the calendar.
    assert sync_engine.sync_calendar(calendar_id, full=True).status == "done"

    @dataclass
    class Cal:
        calendar_id: int
        google_calendar_id: str

    assert_converged(emulator, Cal(calendar_id, "owner@example.com"))
    # The one-time code and state cannot be replayed.
    assert client.get(consent_replay := done.request.full_path).status_code == 400, consent_replay


def test_reconnect_replaces_revoked_credentials_and_resumes(
    client: FlaskClient, emulator: EmulatorServer, sent: Sent
) -> None:
    control = emulator.control
    control.create_account("again@example.com")
    control.create_calendar("again@example.com", time_zone="UTC", owner="again@example.com")
    host_id, token = new_host()
    assert client.get(consent(client, f"host={host_id}&token={token}")).status_code == 200
    with session_scope() as session:
        calendar = session.scalars(select(Calendar)).one()
        calendar_id, account_id = calendar.id, calendar.account_id
    assert sync_engine.sync_calendar(calendar_id, full=True).status == "done"
    control.revoke_account("again@example.com")
    assert sync_engine.sync_calendar(calendar_id, force=True).status == "needs_reauth"

    sent.syncs.clear()
    query = f"host={host_id}&account={account_id}&token={token}"
    assert client.get(consent(client, query)).status_code == 200
    with session_scope() as session:
        assert session.get(GoogleAccount, account_id).state == AccountState.OK
        assert session.get(SyncState, calendar_id).dirty_since is not None
        assert session.scalar(select(Calendar.id).where(Calendar.account_id != account_id)) is None
    assert sent.syncs == [(calendar_id, "reconnect", False)]
    result = sync_engine.sync_calendar(calendar_id, force=True)
    assert result.status == "done" and result.runs[0].kind == "incremental"


def test_connect_refuses_bad_requests(
    client: FlaskClient, emulator: EmulatorServer, sent: Sent, oauth_settings: Settings
) -> None:
    host_id, token = new_host()
    _other_id, other_token = new_host()
    assert client.get(f"/connect/google?host={host_id}").status_code == 401
    assert client.get(f"/connect/google?host={host_id}&token={other_token}").status_code == 404
    assert client.get(f"/connect/google?token={token}").status_code == 400
    assert client.get(f"/connect/google?host=x&token={token}").status_code == 400
    control = emulator.control
    control.create_account("csrf@example.com")
    callback = consent(client, f"host={host_id}&token={token}")
    # Another browser (no cookie) cannot complete it; a forged state is refused.
    assert create_app(oauth_settings).test_client().get(callback).status_code == 400
    forged = callback.replace("state=", "state=x")
    assert client.get(forged).status_code == 400
    assert client.get("/connect/google/callback?error=access_denied").status_code == 400
    with session_scope() as session:
        assert session.scalars(select(Calendar)).all() == []
    assert sent.syncs == []
    unconfigured = create_app(dataclasses.replace(oauth_settings, google_client_id=None))
    answer = unconfigured.test_client().get(f"/connect/google?host={host_id}&token={token}")
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "oauth_not_configured"
