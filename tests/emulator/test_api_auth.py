"""OAuth against the emulator: refresh, missing/expired tokens, revocation, consent flow."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httplib2
import pytest
import requests
from google.auth.exceptions import RefreshError
from google.oauth2.credentials import Credentials
from google_auth_oauthlib.flow import Flow
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from emulator import EmulatorServer
from tests.emulator.conftest import ACCOUNT_EMAIL, make_service

SCOPE = "https://www.googleapis.com/auth/calendar"


def _token_calls(emulator: EmulatorServer) -> list[int]:
    return [r["status"] for r in emulator.control.requests() if r["methodId"] == "oauth2.token"]


def _assert_auth_error(error: HttpError) -> None:
    assert error.status_code == 401
    item = json.loads(error.content)["error"]["errors"][0]
    assert item["reason"] == "authError"
    assert item["domain"] == "global"
    assert item.get("location") == "Authorization"


def test_refresh_token_gives_working_access(emulator: EmulatorServer, service: Any) -> None:
    assert service.calendars().get(calendarId="primary").execute()["id"] == ACCOUNT_EMAIL
    service.calendars().get(calendarId="primary").execute()
    assert _token_calls(emulator) == [200]  # one refresh, token reused
    entries = [r for r in emulator.control.requests() if r["methodId"].startswith("calendar.")]
    assert {r["account"] for r in entries} == {ACCOUNT_EMAIL}


def test_token_endpoint_answer(emulator: EmulatorServer, account: dict[str, Any]) -> None:
    answer = requests.post(
        emulator.token_uri,
        data={
            "grant_type": "refresh_token",
            "refresh_token": account["refresh_token"],
            "client_id": account["client_id"],
            "client_secret": account["client_secret"],
        },
        timeout=5,
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"]
    unknown = requests.post(
        emulator.token_uri,
        data={
            "grant_type": "refresh_token",
            "refresh_token": "1//not-issued",
            "client_id": account["client_id"],
            "client_secret": account["client_secret"],
        },
        timeout=5,
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"] == "invalid_grant"


def test_missing_token_is_401_auth_error(emulator: EmulatorServer, account: dict[str, Any]) -> None:
    anonymous = build(
        "calendar",
        "v3",
        http=httplib2.Http(),
        static_discovery=True,
        client_options={"api_endpoint": emulator.api_endpoint},
        cache_discovery=False,
    )
    with pytest.raises(HttpError) as refused:
        anonymous.events().list(calendarId="primary").execute()
    _assert_auth_error(refused.value)


def test_unknown_access_token_is_401(emulator: EmulatorServer, account: dict[str, Any]) -> None:
    bogus = Credentials(
        token="ya29.bogus", expiry=(datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None)
    )
    client = build(
        "calendar",
        "v3",
        credentials=bogus,
        static_discovery=True,
        client_options={"api_endpoint": emulator.api_endpoint},
        cache_discovery=False,
    )
    # No refresh token: google-auth cannot refresh after the 401 and says so.
    with pytest.raises((HttpError, RefreshError)):
        client.events().list(calendarId="primary").execute()
    assert emulator.control.requests()[-1]["status"] == 401


def test_server_side_expiry_refreshes_transparently(emulator: EmulatorServer, service: Any) -> None:
    service.calendars().get(calendarId="primary").execute()
    emulator.control.advance_clock(3601)  # the client still believes its token is valid
    service.calendars().get(calendarId="primary").execute()
    gets = [
        r["status"]
        for r in emulator.control.requests()
        if r["methodId"] == "calendar.calendars.get"
    ]
    assert gets == [200, 401, 200]
    assert _token_calls(emulator) == [200, 200]


def test_tiny_access_token_ttl_is_refreshed_by_the_client(
    emulator: EmulatorServer, service: Any
) -> None:
    emulator.control.set_faults(access_token_ttl_seconds=1)
    for _ in range(3):
        service.calendars().get(calendarId="primary").execute()
    gets = [
        r["status"]
        for r in emulator.control.requests()
        if r["methodId"] == "calendar.calendars.get"
    ]
    assert gets.count(200) == 3
    assert len(_token_calls(emulator)) >= 3


def test_expired_access_token_is_rejected(
    emulator: EmulatorServer, account: dict[str, Any]
) -> None:
    emulator.control.set_faults(access_token_ttl_seconds=60)
    token = requests.post(
        emulator.token_uri,
        data={
            "grant_type": "refresh_token",
            "refresh_token": account["refresh_token"],
            "client_id": account["client_id"],
            "client_secret": account["client_secret"],
        },
        timeout=5,
    ).json()["access_token"]
    url = f"{emulator.api_endpoint}calendars/primary"
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(url, headers=headers, timeout=5).status_code == 200
    emulator.control.advance_clock(61)
    expired = requests.get(url, headers=headers, timeout=5)
    assert expired.status_code == 401
    assert expired.json()["error"]["errors"][0]["reason"] == "authError"


def test_revoked_account_raises_refresh_error_invalid_grant(
    emulator: EmulatorServer, account: dict[str, Any], service: Any
) -> None:
    service.calendars().get(calendarId="primary").execute()
    emulator.control.revoke_account(ACCOUNT_EMAIL)
    with pytest.raises(RefreshError) as fresh_client:
        make_service(emulator, account).calendars().get(calendarId="primary").execute()
    assert "invalid_grant" in str(fresh_client.value)
    with pytest.raises(RefreshError) as old_client:  # its access token died with the grant
        service.calendars().get(calendarId="primary").execute()
    assert "invalid_grant" in str(old_client.value)


def test_a_new_grant_after_revocation_works(
    emulator: EmulatorServer, account: dict[str, Any]
) -> None:
    emulator.control.revoke_account(ACCOUNT_EMAIL)
    again = emulator.control.create_account(ACCOUNT_EMAIL)
    assert again["refresh_token"] != account["refresh_token"]
    client = make_service(emulator, again)
    assert client.calendars().get(calendarId="primary").execute()["id"] == ACCOUNT_EMAIL


def test_consent_flow_with_google_auth_oauthlib(
    emulator: EmulatorServer, account: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the emulator speaks plain HTTP
    flow = Flow.from_client_config(
        {
            "web": {
                "client_id": account["client_id"],
                "client_secret": account["client_secret"],
                "auth_uri": f"{emulator.url}/o/oauth2/auth",
                "token_uri": emulator.token_uri,
                "redirect_uris": ["http://localhost/oauth/callback"],
            }
        },
        scopes=[SCOPE],
        redirect_uri="http://localhost/oauth/callback",
    )
    url, state = flow.authorization_url(access_type="offline", login_hint=ACCOUNT_EMAIL)
    consent = requests.get(url, allow_redirects=False, timeout=5)
    assert consent.status_code == 302
    location = consent.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert location.startswith("http://localhost/oauth/callback?")
    assert query["state"] == [state] and query["code"]
    flow.fetch_token(authorization_response=location)
    assert flow.credentials.refresh_token
    client = build(
        "calendar",
        "v3",
        credentials=flow.credentials,
        static_discovery=True,
        client_options={"api_endpoint": emulator.api_endpoint},
        cache_discovery=False,
    )
    assert client.calendars().get(calendarId="primary").execute()["id"] == ACCOUNT_EMAIL
    with pytest.raises(Exception, match="invalid_grant"):  # a code is single-use
        flow.fetch_token(code=query["code"][0])


def test_other_account_sees_only_its_own_calendars(emulator: EmulatorServer, service: Any) -> None:
    bob = emulator.control.create_account("bob@example.com")
    emulator.control.create_calendar("bob@example.com", "UTC", "bob@example.com")
    bob_client = make_service(emulator, bob)
    assert bob_client.calendars().get(calendarId="primary").execute()["id"] == "bob@example.com"
    with pytest.raises(HttpError) as hidden:
        bob_client.events().list(calendarId=ACCOUNT_EMAIL).execute()
    assert hidden.value.status_code == 404
    ids = {e["id"] for e in bob_client.calendarList().list().execute()["items"]}
    assert ids == {"bob@example.com"}
