"""The browser OAuth connect flow end to end against the emulator's consent and token
endpoints, with google-auth-oauthlib doing the exchange."""

from __future__ import annotations

import dataclasses
import re
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
from models.registry import create_host, rotate_feed_token
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


def new_host(name: str = "oauth host") -> tuple[int, str]:
    """A host and its feed token (what a connect link carries)."""
    with session_scope() as session:
        host, _api_token = create_host(session, name, "Europe/Berlin")
        return host.id, rotate_feed_token(session, host)


def confirm_page(client: FlaskClient, callback: str) -> tuple[str, str]:
    """Follow Google's redirect back; returns the confirmation question and the form value."""
    page = client.get(callback)
    assert page.status_code == 200, page.get_json()
    html = page.get_data(as_text=True)
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    question = re.search(r"<p id='question'>(.*?)</p>", html).group(1)
    csrf = re.search(r"name='csrf' value='([^']+)'", html).group(1)
    return question, csrf


def connect(client: FlaskClient, query: str):
    """The whole flow as a browser does it: link, consent, confirmation page, confirm."""
    _question, csrf = confirm_page(client, consent(client, query))
    return client.post("/connect/google/callback", data={"csrf": csrf})


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

    callback = consent(client, f"host={host_id}&token={token}")
    question, csrf = confirm_page(client, callback)
    # Nothing is attached before the person confirms which host the calendar joins.
    assert question == "Attach the Google calendar \u201cprimary\u201d to host oauth host?"
    with session_scope() as session:
        assert session.scalars(select(Calendar)).all() == []
    assert sent.syncs == []
    done = client.post("/connect/google/callback", data={"csrf": csrf})
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
    # The one-time state and the confirmation cannot be replayed.
    assert client.get(callback).status_code == 400
    assert client.post("/connect/google/callback", data={"csrf": csrf}).status_code == 400


def test_reconnect_replaces_revoked_credentials_and_resumes(
    client: FlaskClient, emulator: EmulatorServer, sent: Sent
) -> None:
    control = emulator.control
    control.create_account("again@example.com")
    control.create_calendar("again@example.com", time_zone="UTC", owner="again@example.com")
    host_id, token = new_host()
    assert connect(client, f"host={host_id}&token={token}").status_code == 200
    with session_scope() as session:
        calendar = session.scalars(select(Calendar)).one()
        calendar_id, account_id = calendar.id, calendar.account_id
    assert sync_engine.sync_calendar(calendar_id, full=True).status == "done"
    control.revoke_account("again@example.com")
    assert sync_engine.sync_calendar(calendar_id, force=True).status == "needs_reauth"

    sent.syncs.clear()
    query = f"host={host_id}&account={account_id}&token={token}"
    question, csrf = confirm_page(client, consent(client, query))
    assert question == "Reconnect this Google account to host oauth host?"
    assert client.post("/connect/google/callback", data={"csrf": csrf}).status_code == 200
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


def test_admin_and_api_tokens_are_refused_in_the_connect_link(
    client: FlaskClient, oauth_settings: Settings
) -> None:
    """Issue 14 item 1: a URL carries only a feed token; the header still works."""
    with session_scope() as session:
        host, api_token = create_host(session, "header host")
        host_id = host.id
    for token in (api_token, oauth_settings.admin_token):
        answer = client.get(f"/connect/google?host={host_id}&token={token}")
        assert answer.status_code == 401, token
    for token in (api_token, oauth_settings.admin_token):
        answer = client.get(
            f"/connect/google?host={host_id}", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 302


def test_state_cookie_is_no_state_and_a_state_is_used_once_across_processes(
    client: FlaskClient, emulator: EmulatorServer, sent: Sent, oauth_settings: Settings
) -> None:
    """Issue 14 item 5: separate salts (the cookie's value is refused as `state`) and one
    use per state, also when the replay reaches another web process."""
    emulator.control.create_account("once@example.com")
    host_id, token = new_host()
    callback = consent(client, f"host={host_id}&token={token}")
    cookie = client.get_cookie("calsync_oauth", path="/connect/google/callback")
    assert cookie is not None
    as_state = re.sub(r"state=[^&]+", "state=" + cookie.value, callback)
    refused = client.get(as_state)
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "invalid_state"

    other_process = create_app(oauth_settings).test_client()
    other_process.set_cookie("calsync_oauth", cookie.value, path="/connect/google/callback")
    assert client.get(callback).status_code == 200  # first use: the confirmation page
    replay = other_process.get(callback)
    assert replay.status_code == 400
    assert replay.get_json()["error"]["code"] == "state_used"


def test_confirmation_needs_the_form_value_and_the_browser_cookie(
    client: FlaskClient, emulator: EmulatorServer, sent: Sent, oauth_settings: Settings
) -> None:
    """A link forwarded to a stranger: nothing is attached without the confirmation POST,
    and that POST needs this browser's cookie and this page's anti-forgery value."""
    emulator.control.create_account("stranger@example.com")
    host_id, token = new_host("Ann Example")
    question, csrf = confirm_page(client, consent(client, f"host={host_id}&token={token}"))
    assert "to host Ann Example?" in question
    # Another browser (no pending cookie), a forged value, a GET instead of the form.
    stranger = create_app(oauth_settings).test_client()
    assert stranger.post("/connect/google/callback", data={"csrf": csrf}).status_code == 400
    assert client.post("/connect/google/callback", data={"csrf": csrf + "x"}).status_code == 400
    assert client.post("/connect/google/callback", data={}).status_code == 400
    with session_scope() as session:
        assert session.scalars(select(Calendar)).all() == []
    assert sent.syncs == []
    assert client.post("/connect/google/callback", data={"csrf": csrf}).status_code == 200
    with session_scope() as session:
        assert len(session.scalars(select(Calendar)).all()) == 1


def test_confirmation_names_the_google_account_from_the_id_token() -> None:
    import base64
    import json

    from webhook.oauth_connect import _email_from_id_token

    claims = base64.urlsafe_b64encode(json.dumps({"email": "ann@example.com"}).encode())
    token = "h." + claims.decode().rstrip("=") + ".sig"
    assert _email_from_id_token(token) == "ann@example.com"
    assert _email_from_id_token("not-a-jwt") is None
    assert _email_from_id_token("a.!!!.c") is None
    assert _email_from_id_token(None) is None


@pytest.mark.parametrize(
    "query",
    [
        "host=" + "9" * 5000,
        "host=99999999999999999999",
        "host={host}&account=99999999999999999999",
        "host={host}&account=" + "9" * 5000,
        "host={host}&calendar=a%00b",
        "host=-1",
        "host=0",
        "host=%EF%BC%91",  # a full-width digit: isdigit() but not ASCII
    ],
)
def test_connect_refuses_absurd_ids_and_nul_without_a_500(
    client: FlaskClient, oauth_settings: Settings, query: str
) -> None:
    """Issue 14 item 7: 400 JSON in the API's words, not 500."""
    host_id, token = new_host()
    answer = client.get(f"/connect/google?{query.format(host=host_id)}&token={token}")
    assert answer.status_code == 400, answer.get_data(as_text=True)[:200]
    assert answer.get_json()["error"]["code"] == "invalid_parameter"


def test_page_query_strings_never_answer_5xx(client: FlaskClient, oauth_settings: Settings) -> None:
    """Any text in the connect flow's and the status page's query strings (and the status
    page's path) is a 4xx (or the page), never a 5xx."""
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis import strategies as st

    host_id, token = new_host()
    text = st.one_of(
        st.text(max_size=40),
        st.from_regex(r"\A-?[0-9]{1,30}\Z"),
        st.just("9" * 5000),
        st.just(str(host_id)),
    )

    @given(host=text, account=text, calendar=text, use_token=st.booleans())
    @hypothesis_settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def no_server_error(host: str, account: str, calendar: str, use_token: bool) -> None:
        query = {"host": host, "account": account, "calendar": calendar}
        if use_token:
            query["token"] = token
        answer = client.get("/connect/google", query_string=query)
        assert answer.status_code < 500, (query, answer.get_data(as_text=True)[:300])
        page = client.get(f"/status/{host}", query_string={"token": token})
        assert page.status_code < 500, host

    no_server_error()
