"""The fleet counts kept by triggers (models/fleet_counts.py, migration 0010_fleet_counts)
equal counting the rows, whatever writes them: ORM and bulk inserts, deletes by key and by
cascade, channels stopped, restarted and deleted, updates of other columns, and folds in
between (hypothesis over sequences of them, on SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from core.settings import Settings
from models import Calendar, Channel, GoogleAccount, Host, fleet_counts
from models.db import get_engine, session_factory
from models.migrate import upgrade
from tests.backends import use_services
from tests.factories import make_account, make_calendar, make_channel, make_host

NOW = datetime(2031, 5, 1, 12, tzinfo=UTC)
_ids = itertools.count(1)


def actual(session: Session) -> fleet_counts.FleetTotals:
    return fleet_counts.FleetTotals(
        session.scalar(select(func.count()).select_from(Calendar)) or 0,
        session.scalar(select(func.count()).where(Channel.stopped_at.is_(None))) or 0,
    )


def bulk_channels(session: Session, calendar_ids: list[int], stopped: bool) -> None:
    session.execute(
        insert(Channel),
        [
            {
                "id": f"bulk-{next(_ids)}",
                "calendar_id": calendar_id,
                "token_hash": "0" * 64,
                "created_at": NOW,
                "expiration": NOW + timedelta(days=7),
                "stopped_at": NOW if stopped else None,
            }
            for calendar_id in calendar_ids
        ],
    )


def some(session: Session, model: type, n: int) -> list:
    return list(session.scalars(select(model.id).order_by(model.id).limit(n)))


def step(session: Session, kind: str, n: int) -> None:
    """One writer's statement (or a few), as the product or a bulk load makes them."""
    host = session.scalar(select(Host).order_by(Host.id).limit(1))
    assert host is not None
    account = session.scalar(select(GoogleAccount).where(GoogleAccount.host_id == host.id))
    assert account is not None
    if kind == "attach":  # the ORM, one calendar at a time, with a live channel
        for _ in range(n):
            make_channel(session, make_calendar(session, host, account))
    elif kind == "bulk_calendars":  # one multi-row INSERT (a COPY-like load)
        session.execute(
            insert(Calendar),
            [
                {"host_id": host.id, "account_id": account.id, "google_calendar_id": f"b{i}"}
                for i in (next(_ids) for _ in range(n))
            ],
        )
    elif kind in ("bulk_live", "bulk_stopped"):
        bulk_channels(session, some(session, Calendar, n), stopped=kind == "bulk_stopped")
    elif kind == "stop":  # renewals and retirements
        session.execute(
            update(Channel)
            .where(Channel.id.in_(some(session, Channel, n)), Channel.stopped_at.is_(None))
            .values(stopped_at=NOW)
        )
    elif kind == "stop_all_again":  # already stopped ones too: only live ones change
        session.execute(update(Channel).values(stopped_at=NOW + timedelta(seconds=n)))
    elif kind == "restart":
        session.execute(
            update(Channel).where(Channel.id.in_(some(session, Channel, n))).values(stopped_at=None)
        )
    elif kind == "heard":  # the push path: other columns only
        session.execute(update(Channel).values(last_notification_at=NOW))
    elif kind == "delete_channels":
        session.execute(delete(Channel).where(Channel.id.in_(some(session, Channel, n))))
    elif kind == "delete_calendars":  # by cascade to their channels and sync states
        session.execute(delete(Calendar).where(Calendar.id.in_(some(session, Calendar, n))))
    elif kind == "fold":
        fleet_counts.fold(session)


STEPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "attach",
                "bulk_calendars",
                "bulk_live",
                "bulk_stopped",
                "stop",
                "stop_all_again",
                "restart",
                "heard",
                "delete_channels",
                "delete_calendars",
                "fold",
            ]
        ),
        st.integers(min_value=1, max_value=4),
    ),
    min_size=1,
    max_size=12,
)


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS, rollback_last=st.booleans())
def test_counts_equal_counting_the_rows_after_any_writes(
    settings: Settings, db: None, steps: list[tuple[str, int]], rollback_last: bool
) -> None:
    make = session_factory(settings.database_url)
    with make() as session:
        if session.scalar(select(Host.id).limit(1)) is None:
            make_account(session, make_host(session))
            session.commit()
        for kind, n in steps:
            step(session, kind, n)
            session.commit()
            assert fleet_counts.current(session) == actual(session), kind
        # A rolled-back write leaves no count behind.
        step(session, "attach", 2)
        if rollback_last:
            session.rollback()
        else:
            session.commit()
        assert fleet_counts.current(session) == actual(session)


def test_a_fold_keeps_the_changes_of_a_transaction_still_open(settings: Settings, db: None):
    if not use_services():
        pytest.skip("SQLite has one writer at a time: a fold waits for the open transaction")
    make = session_factory(settings.database_url)
    with make() as writer, make() as folder:
        host = make_host(writer)
        make_calendar(writer, host, make_account(writer, host))
        writer.commit()
        make_channel(writer, make_calendar(writer, host, make_account(writer, host)))
        writer.flush()  # its change rows are written, not committed
        assert fleet_counts.fold(folder) >= 1
        folder.commit()
        writer.commit()
        assert fleet_counts.current(folder) == actual(folder) == fleet_counts.FleetTotals(2, 1)
        assert fleet_counts.fold(folder) == 3  # the folded row and the transaction's two


def test_truncate_restarts_the_counts(settings: Settings, db: None) -> None:
    if not use_services():
        pytest.skip("SQLite has no TRUNCATE (its DELETE fires the row triggers)")
    make = session_factory(settings.database_url)
    with make() as session:
        host = make_host(session)
        account = make_account(session, host)
        for _ in range(3):
            make_channel(session, make_calendar(session, host, account))
        session.commit()
        assert fleet_counts.current(session) == fleet_counts.FleetTotals(3, 3)
        session.execute(text("TRUNCATE channels"))
        session.commit()
        assert fleet_counts.current(session) == actual(session) == fleet_counts.FleetTotals(3, 0)
        make_channel(session, make_calendar(session, host, account))
        session.execute(text("TRUNCATE calendars CASCADE"))  # channels with them
        make_channel(session, make_calendar(session, host, account))
        session.commit()
        assert fleet_counts.current(session) == actual(session) == fleet_counts.FleetTotals(1, 1)


def trigger_names(session: Session) -> set[str]:
    if session.get_bind().dialect.name == "postgresql":
        query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    return {name for (name,) in session.execute(text(query))}


def test_every_counting_trigger_exists_at_head(settings: Settings, db: None) -> None:
    """A later migration that rebuilds calendars or channels (SQLite batch mode drops a
    table's triggers) must create them again."""
    with session_factory(settings.database_url)() as session:
        expected = {name for names in fleet_counts.TRIGGERS.values() for name in names}
        if use_services():
            expected |= {"fleet_counts_calendars_truncate", "fleet_counts_channels_truncate"}
        assert expected <= trigger_names(session)


def test_the_migration_starts_the_counts_from_the_rows_present(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'counts.db'}"
    upgrade(url, "0009_periodic_indexes")
    with get_engine(url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO hosts (id, name, time_zone, busy_policy, created_at)"
                " VALUES (1, 'h', 'UTC', '{}', '2031-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO google_accounts (id, host_id, credentials_encrypted, state,"
                " created_at, updated_at) VALUES (1, 1, x'00', 'ok', '2031-01-01 00:00:00',"
                " '2031-01-01 00:00:00')"
            )
        )
        for n in range(1, 4):
            conn.execute(
                text(
                    "INSERT INTO calendars (id, host_id, account_id, google_calendar_id,"
                    " watch_failures, created_at) VALUES (:n, 1, 1, :g, 0, '2031-01-01 00:00:00')"
                ),
                {"n": n, "g": f"c{n}"},
            )
            conn.execute(
                text(
                    "INSERT INTO channels (id, calendar_id, token_hash, created_at, stopped_at)"
                    " VALUES (:id, :n, 'x', '2031-01-01 00:00:00', :stopped)"
                ),
                {"id": f"ch{n}", "n": n, "stopped": "2031-01-02 00:00:00" if n == 3 else None},
            )
    upgrade(url)
    with Session(get_engine(url)) as session:
        assert fleet_counts.current(session) == fleet_counts.FleetTotals(3, 2)
        session.execute(delete(Calendar).where(Calendar.id == 1))  # cascades to ch1
        assert fleet_counts.current(session) == actual(session) == fleet_counts.FleetTotals(2, 1)
