"""One-time sign-in links for the host pages: stored hashed, good for 15 minutes, used once."""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from models.hosts import Host, SignInLink
from models.registry import hash_api_token

# `csl_` says what the token is when one turns up in a log (core.logs masks tokens).
SIGN_IN_TOKEN_PREFIX = "csl_"
LINK_LIFETIME = timedelta(minutes=15)


class LinkProblem(enum.StrEnum):
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED = "used"


@dataclass(frozen=True)
class LinkCheck:
    host_id: int | None
    problem: LinkProblem | None


def issue_sign_in_link(session: Session, host: Host, now: datetime) -> str:
    """A new one-time token for `host` (returned once, stored hashed)."""
    token = SIGN_IN_TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(
        SignInLink(
            host_id=host.id,
            token_hash=hash_api_token(token),
            created_at=now,
            expires_at=now + LINK_LIFETIME,
        )
    )
    session.flush()
    return token


def check_sign_in_link(session: Session, token: str, now: datetime) -> LinkCheck:
    """Whether `token` would sign in now, without using it."""
    if not token.startswith(SIGN_IN_TOKEN_PREFIX) or len(token) > 200:
        return LinkCheck(None, LinkProblem.UNKNOWN)
    link = session.scalar(select(SignInLink).where(SignInLink.token_hash == hash_api_token(token)))
    if link is None:
        return LinkCheck(None, LinkProblem.UNKNOWN)
    if link.used_at is not None:
        return LinkCheck(link.host_id, LinkProblem.USED)
    if link.expires_at <= now:
        return LinkCheck(link.host_id, LinkProblem.EXPIRED)
    return LinkCheck(link.host_id, None)


def use_sign_in_link(session: Session, token: str, now: datetime) -> LinkCheck:
    """Spend the link: one conditional UPDATE, so two browsers racing get one session."""
    check = check_sign_in_link(session, token, now)
    if check.problem is not None:
        return check
    spent = session.execute(
        update(SignInLink)
        .where(
            SignInLink.token_hash == hash_api_token(token),
            SignInLink.used_at.is_(None),
            SignInLink.expires_at > now,
        )
        .values(used_at=now)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        return LinkCheck(check.host_id, LinkProblem.USED)
    return check


def prune_sign_in_links(session: Session, now: datetime) -> int:
    """Delete links expired a day ago or more (kept a day so a late click says 'expired')."""
    cutoff = now - timedelta(days=1)
    result = session.execute(delete(SignInLink).where(SignInLink.expires_at < cutoff))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def sign_in_url(public_url: str, token: str) -> str:
    return public_url.rstrip("/") + "/sign-in/" + token
