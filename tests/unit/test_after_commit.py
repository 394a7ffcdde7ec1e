"""worker.enqueue.after_commit: a task is sent once its transaction commits, in order, once;
never when it rolls back; a broker failure after the commit is reported, not raised out of
the commit (the data is committed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, func, insert, select
from sqlalchemy.orm import Session

from core.errors import EnqueueError
from worker.enqueue import TaskBatch, after_commit

metadata = MetaData()
rows = Table("rows", metadata, Column("id", Integer, primary_key=True))


@pytest.fixture
def make_session(tmp_path: Path) -> Iterator[type[Session] | object]:
    engine = create_engine(f"sqlite:///{tmp_path / 'after_commit.db'}")
    metadata.create_all(engine)
    opened: list[Session] = []

    def open_session() -> Session:
        session = Session(engine)
        opened.append(session)
        return session

    yield open_session
    for session in opened:
        session.close()
    engine.dispose()


class Broker:
    def __init__(self, make_session) -> None:
        self.sent: list[tuple[str, int]] = []
        self.seen_rows: list[int] = []
        self.fail_on: set[str] = set()
        self._make_session = make_session

    def send(self, kind: str, row_id: int) -> None:
        # What a worker would see at the moment the message leaves: the committed data.
        with self._make_session() as other:
            self.seen_rows.append(other.scalar(select(func.count()).select_from(rows)))
        if kind in self.fail_on:
            raise EnqueueError("broker unavailable: test")
        self.sent.append((kind, row_id))


@pytest.fixture
def broker(make_session) -> Broker:
    return Broker(make_session)


def test_a_committed_transaction_sends_once_in_order_after_the_commit(
    make_session, broker: Broker
) -> None:
    session = make_session()
    session.execute(insert(rows).values(id=1))
    batch = after_commit(session, broker.send, "sync", 1)
    assert after_commit(session, broker.send, "watch", 1) is batch
    assert broker.sent == []  # nothing before the commit
    session.commit()
    assert broker.sent == [("sync", 1), ("watch", 1)]
    assert broker.seen_rows == [1, 1]  # the row was visible to others when each left
    assert batch.sent == 2 and not batch.failed
    session.execute(insert(rows).values(id=2))
    session.commit()  # a later transaction sends only what it registers itself
    assert broker.sent == [("sync", 1), ("watch", 1)]


def test_a_rolled_back_transaction_sends_nothing(make_session, broker: Broker) -> None:
    session = make_session()
    session.execute(insert(rows).values(id=1))
    after_commit(session, broker.send, "sync", 1)
    session.rollback()
    session.execute(insert(rows).values(id=2))
    after_commit(session, broker.send, "sync", 2)
    session.commit()
    assert broker.sent == [("sync", 2)]


def test_a_session_closed_without_commit_sends_nothing(make_session, broker: Broker) -> None:
    session = make_session()
    session.execute(insert(rows).values(id=1))
    after_commit(session, broker.send, "sync", 1)
    session.close()
    session.commit()  # a new, empty transaction
    assert broker.sent == []


def test_an_error_inside_a_begin_block_sends_nothing(make_session, broker: Broker) -> None:
    session = make_session()
    with pytest.raises(RuntimeError), session.begin():
        session.execute(insert(rows).values(id=1))
        after_commit(session, broker.send, "sync", 1)
        raise RuntimeError("the request failed")
    assert broker.sent == []


def test_a_savepoint_release_is_not_the_commit(make_session, broker: Broker) -> None:
    session = make_session()
    with session.begin_nested():
        session.execute(insert(rows).values(id=1))
        after_commit(session, broker.send, "sync", 1)
    assert broker.sent == []
    session.commit()
    assert broker.sent == [("sync", 1)]


def test_a_rolled_back_savepoint_drops_only_its_own_sends(make_session, broker: Broker) -> None:
    session = make_session()
    session.execute(insert(rows).values(id=1))
    after_commit(session, broker.send, "sync", 1)
    savepoint = session.begin_nested()
    session.execute(insert(rows).values(id=2))
    after_commit(session, broker.send, "sync", 2)
    savepoint.rollback()
    session.commit()
    assert broker.sent == [("sync", 1)]


def test_a_broker_failure_after_the_commit_is_reported_not_raised(
    make_session, broker: Broker
) -> None:
    broker.fail_on = {"sync"}
    session = make_session()
    session.execute(insert(rows).values(id=1))
    batch = after_commit(session, broker.send, "sync", 1)
    after_commit(session, broker.send, "watch", 1)
    session.commit()  # does not raise: the data is committed
    assert isinstance(batch.error, EnqueueError) and batch.failed
    assert broker.sent == []  # the broker is away: the rest is not tried
    with pytest.raises(EnqueueError):
        batch.raise_if_failed()
    with make_session() as other:
        assert other.scalar(select(func.count()).select_from(rows)) == 1
    # The session is usable afterwards.
    session.execute(insert(rows).values(id=2))
    session.commit()


def test_an_unexpected_send_error_is_reported_too(make_session) -> None:
    def broken(_row_id: int) -> None:
        raise RuntimeError("bug in the broker client")

    session = make_session()
    batch = after_commit(session, broken, 1)
    session.commit()
    assert isinstance(batch.error, RuntimeError)


def test_an_empty_batch_has_not_failed() -> None:
    batch = TaskBatch()
    assert not batch.failed
    batch.raise_if_failed()
