"""One use per connect-flow state: the ids of used states, kept until they expire anyway."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.hosts import UsedOAuthState


def use_state_once(session: Session, state_id: str, expires_at: datetime, now: datetime) -> bool:
    """Record `state_id` as used (committed at once). False when it was used before, in this
    process or any other: the primary key decides, so two concurrent uses cannot both win."""
    session.execute(delete(UsedOAuthState).where(UsedOAuthState.expires_at < now))
    session.add(UsedOAuthState(state_id=state_id, expires_at=expires_at))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True
