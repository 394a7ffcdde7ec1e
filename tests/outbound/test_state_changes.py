"""calendar.state_changed: a calendar whose state changes (ok -> needs_reauth, failing, ...)
is announced once per change, with the status page's words for the error and the fix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from models import AccountState, GoogleAccount, OutboxEvent, SyncState
from models.db import session_scope
from models.outbound_states import announce_state_changes
from tests.factories import make_account, make_calendar, make_channel, make_host
from worker import outbound_tasks

from .conftest import Driver, Receiver
from .test_delivery import register


def healthy_calendar(now: datetime) -> tuple[int, int, int]:
    """A watched calendar that synced just now: (host id, calendar id, account id)."""
    with session_scope() as session:
        host = make_host(session)
        account = make_account(session, host)
        calendar = make_calendar(session, host, account)
        make_channel(session, calendar, expiration=now + timedelta(days=5))
        session.execute(
            update(SyncState)
            .where(SyncState.calendar_id == calendar.id)
            .values(last_success_at=now, sync_token="t")
        )
        return host.id, calendar.id, account.id


def test_state_changes_are_announced_once_each_in_words(
    client, receiver: Receiver, driver: Driver
) -> None:
    now = datetime.now(UTC)
    host_id, calendar_id, account_id = healthy_calendar(now)
    register(client, receiver)
    with session_scope() as session:
        assert announce_state_changes(session, now) == 0  # first seen ok: nothing to say
    with session_scope() as session:
        session.execute(
            update(GoogleAccount)
            .where(GoogleAccount.id == account_id)
            .values(state=AccountState.NEEDS_REAUTH)
        )
    assert outbound_tasks.outbound_states() == 1
    assert outbound_tasks.outbound_states() == 0  # unchanged: announced once
    with session_scope() as session:
        session.execute(update(GoogleAccount).values(state=AccountState.OK))
        session.execute(
            update(SyncState).values(
                consecutive_failures=3,
                last_error_code="forbidden",
                last_error_message="403 forbidden",
            )
        )
    assert outbound_tasks.outbound_states() == 1
    driver.run()
    reauth, failing = receiver.events()
    assert (reauth["type"], reauth["hostId"], reauth["calendarId"]) == (
        "calendar.state_changed",
        host_id,
        calendar_id,
    )
    assert (reauth["previousState"], reauth["state"]) == ("ok", "needs_reauth")
    assert "revoked" in reauth["error"]["message"] and "Reconnect" in reauth["error"]["fix"]
    assert (failing["previousState"], failing["state"]) == ("needs_reauth", "failing")
    assert failing["error"]["code"] == "forbidden"
    assert "Share the calendar" in failing["error"]["fix"]
    with session_scope() as session:
        assert len(list(session.scalars(select(OutboxEvent)))) == 2
    # Healthy again: announced as ok, once (it left the calendars needing attention).
    with session_scope() as session:
        session.execute(
            update(SyncState).values(
                consecutive_failures=0, last_error_code=None, last_success_at=datetime.now(UTC)
            )
        )
    assert outbound_tasks.outbound_states() == 1
    assert outbound_tasks.outbound_states() == 0
    driver.run()
    recovered = receiver.events()[-1]
    assert (recovered["previousState"], recovered["state"]) == ("failing", "ok")


def test_nothing_is_computed_without_endpoints_and_an_ok_calendar_was_ok_before(
    client, receiver: Receiver, driver: Driver
) -> None:
    now = datetime.now(UTC)
    _host_id, _calendar_id, account_id = healthy_calendar(now)
    with session_scope() as session:
        session.execute(update(GoogleAccount).values(state=AccountState.NEEDS_REAUTH))
    assert outbound_tasks.outbound_states() == 0  # no endpoint: nobody to tell
    register(client, receiver)
    assert outbound_tasks.outbound_states() == 1  # it synced before: it was ok
    with session_scope() as session:
        session.execute(
            update(GoogleAccount).where(GoogleAccount.id == account_id).values(state="ok")
        )
    assert outbound_tasks.outbound_states() == 1
    driver.run()
    states = [(e["previousState"], e["state"]) for e in receiver.events()]
    assert states == [("ok", "needs_reauth"), ("needs_reauth", "ok")]
