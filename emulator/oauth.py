"""Accounts and OAuth: refresh tokens, short-lived access tokens, the consent redirect."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from emulator.clock import Clock

CLIENT_ID = "emulator-client.apps.googleusercontent.com"
CLIENT_SECRET = "emulator-client-secret"
SCOPE = "https://www.googleapis.com/auth/calendar"
INVALID_GRANT = {
    "error": "invalid_grant",
    "error_description": "Token has been expired or revoked.",
}


class OAuthError(Exception):
    """A token-endpoint failure: HTTP status and the OAuth JSON body."""

    def __init__(self, status: int, body: dict[str, str]) -> None:
        super().__init__(body.get("error", "oauth error"))
        self.status = status
        self.body = body


@dataclass(slots=True)
class Account:
    email: str
    # A list: almost every account has one token (an empty set alone is 216 bytes).
    refresh_tokens: list[str] = field(default_factory=list)

    def add_refresh_token(self, token: str) -> None:
        if token not in self.refresh_tokens:
            self.refresh_tokens.append(token)


@dataclass(slots=True)
class AccessToken:
    account: str
    expires_at: datetime


class AuthRegistry:
    """Who may call the API: accounts, their refresh tokens and issued access tokens."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.accounts: dict[str, Account] = {}
        self._refresh_tokens: dict[str, str] = {}  # refresh token -> account email
        self._access_tokens: dict[str, AccessToken] = {}
        self._auth_codes: dict[str, str] = {}  # code -> account email

    def reset(self) -> None:
        with self._lock:
            self.accounts.clear()
            self._refresh_tokens.clear()
            self._access_tokens.clear()
            self._auth_codes.clear()

    def ensure_account(self, email: str) -> Account:
        with self._lock:
            return self._ensure(email)

    def _ensure(self, email: str) -> Account:
        account = self.accounts.get(email)
        if account is None:
            account = self.accounts[email] = Account(email)
        return account

    def create_account(
        self, email: str, token_uri: str, refresh_token: str | None = None
    ) -> dict[str, Any]:
        """Create (or reuse) an account and issue a new refresh token for it."""
        if not email or "@" not in email:
            raise ValueError("email must look like an email address")
        with self._lock:
            account = self._ensure(email)
            token = refresh_token or f"1//emu-{secrets.token_urlsafe(24)}"
            account.add_refresh_token(token)
            self._refresh_tokens[token] = email
        return authorized_user_info(email, token, token_uri)

    def revoke_account(self, email: str) -> None:
        """Revoke every refresh token of the account and the access tokens they issued."""
        with self._lock:
            account = self.accounts.get(email)
            if account is None:
                raise KeyError(email)
            for token in account.refresh_tokens:
                self._refresh_tokens.pop(token, None)
            account.refresh_tokens.clear()
            for key in [k for k, v in self._access_tokens.items() if v.account == email]:
                del self._access_tokens[key]

    def issue_code(self, email: str) -> str:
        with self._lock:
            self._ensure(email)
            code = f"4/emu-{secrets.token_urlsafe(16)}"
            self._auth_codes[code] = email
            return code

    def token_grant(self, form: dict[str, str], ttl_seconds: float) -> dict[str, Any]:
        """Answer POST /token for the refresh_token and authorization_code grants."""
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            raise OAuthError(
                401,
                {"error": "invalid_client", "error_description": "The OAuth client was not found."},
            )
        grant = form.get("grant_type")
        with self._lock:
            if grant == "refresh_token":
                email = self._refresh_tokens.get(form.get("refresh_token", ""))
                if email is None:
                    raise OAuthError(400, dict(INVALID_GRANT))
                body: dict[str, Any] = {}
            elif grant == "authorization_code":
                email = self._auth_codes.pop(form.get("code", ""), None)
                if email is None:
                    raise OAuthError(
                        400, {"error": "invalid_grant", "error_description": "Malformed auth code."}
                    )
                refresh = f"1//emu-{secrets.token_urlsafe(24)}"
                self._ensure(email).add_refresh_token(refresh)
                self._refresh_tokens[refresh] = email
                body = {"refresh_token": refresh}
            else:
                raise OAuthError(
                    400,
                    {
                        "error": "unsupported_grant_type",
                        "error_description": f"Invalid grant_type: {grant}",
                    },
                )
            access = f"ya29.emu-{secrets.token_urlsafe(32)}"
            self._access_tokens[access] = AccessToken(
                email, self._clock.now() + timedelta(seconds=ttl_seconds)
            )
        body.update(
            {
                "access_token": access,
                "expires_in": int(ttl_seconds),
                "token_type": "Bearer",
                "scope": SCOPE,
            }
        )
        return body

    def account_for(self, authorization: str | None) -> str | None:
        """The account behind an ``Authorization: Bearer`` header, or None when not valid now."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        with self._lock:
            token = self._access_tokens.get(authorization[len("Bearer ") :].strip())
            if token is None:
                return None
            if token.expires_at <= self._clock.now():
                return None
            return token.account


def authorized_user_info(email: str, refresh_token: str, token_uri: str) -> dict[str, Any]:
    """google-auth's authorized-user JSON (Credentials.from_authorized_user_info accepts it)."""
    return {
        "type": "authorized_user",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": refresh_token,
        "token_uri": token_uri,
        "account": email,
    }
