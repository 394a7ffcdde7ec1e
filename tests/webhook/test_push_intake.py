"""The Redis intake (PostgreSQL + Redis): the webhook spools an authenticated change and
answers 204, its forwarder records it in Redis, and the drainer moves it into the database
in batches, enqueues one sync per clean→dirty transition, and loses nothing when Redis loses
its data, a drainer dies mid-batch, or the database is down (then the webhook answers 503
so Google retries). The spool itself: tests/webhook/test_push_spool.py."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from core.settings import Settings
from intake import redis_intake as push_intake
from intake.forwarder import SpoolForwarder
from intake.spool import holds_records
from models import Channel, SyncState
from models.db import session_scope
from webhook import create_app

from .conftest import Snapshot, Watched, push_headers, watch_calendar

URL = "/webhooks/google"
M = TypeVar("M")


@pytest.fixture
def client(
    intake_settings: Settings, db: None, broker: redis.Redis, forwarder: SpoolForwarder
) -> FlaskClient:
    return create_app(intake_settings).test_client()


def wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def committed(model: type[M], key: object) -> M:
    """A row as other processes see it now."""
    with session_scope() as session:
        row = session.get(model, key)
        assert row is not None
        session.expunge(row)
        return row


def state_of(calendar_id: int) -> SyncState:
    return committed(SyncState, calendar_id)


def channel_row(channel_id: str) -> Channel:
    return committed(Channel, channel_id)


def intake_keys(broker: redis.Redis) -> set[str]:
    """The intake's data keys (not its epoch, lock, wake-up token or heartbeats)."""
    return {key.decode() for key in broker.keys(push_intake.PREFIX + "*")} - {
        push_intake.EPOCH,
        push_intake.LOCK,
        push_intake.WAKE,
        push_intake.SPOOLERS,
    }


def test_a_change_is_kept_at_204_and_in_the_database_after_one_round(
    client: FlaskClient,
    watched: Watched,
    drainer,
    broker: redis.Redis,
    forwarder: SpoolForwarder,
    intake_settings: Settings,
) -> None:
    drain, enqueued = drainer
    before = datetime.now(UTC) - timedelta(milliseconds=1)
    response = client.post(URL, headers=push_headers(watched, "exists", number=7))
    after = datetime.now(UTC)
    assert response.status_code == 204
    assert state_of(watched.calendar_id).dirty_since is None  # not written in the request
    # In the spool, or already in Redis if the forwarder's thread was quicker.
    assert holds_records(intake_settings.spool_directory) or broker.hexists(
        push_intake.PENDING, watched.calendar_id
    )
    forwarder.forward_once()
    assert broker.hexists(push_intake.PENDING, watched.calendar_id)
    assert not holds_records(intake_settings.spool_directory)

    assert drain.drain_once()
    state = state_of(watched.calendar_id)
    assert state.dirty_since is not None and before <= state.dirty_since <= after
    assert state.last_notification_at == state.dirty_since
    assert enqueued == [[watched.calendar_id]]
    channel = channel_row(watched.channel_id)
    assert channel.last_message_number == 7
    assert channel.last_notification_at == state.dirty_since
    assert intake_keys(broker) == set()  # batch deleted once committed


def test_a_burst_is_one_transition_and_a_dirty_calendar_is_not_enqueued_again(
    client: FlaskClient, watched: Watched, drainer
) -> None:
    drain, enqueued = drainer
    for number in range(1, 6):
        assert client.post(URL, headers=push_headers(watched, number=number)).status_code == 204
    drain.drain_once()
    first_mark = state_of(watched.calendar_id).dirty_since
    assert enqueued == [[watched.calendar_id]]

    client.post(URL, headers=push_headers(watched, number=6))
    drain.drain_once()
    state = state_of(watched.calendar_id)
    assert state.dirty_since == first_mark  # still the first unprocessed notification
    assert state.last_notification_at > first_mark
    assert enqueued == [[watched.calendar_id]]

    with session_scope() as session:  # the sync ran and cleared the mark
        session.execute(update(SyncState).values(dirty_since=None))
    client.post(URL, headers=push_headers(watched, number=7))
    drain.drain_once()
    assert enqueued == [[watched.calendar_id], [watched.calendar_id]]


def test_channel_bookkeeping_keeps_the_latest_time_and_the_highest_number(
    client: FlaskClient, watched: Watched, drainer
) -> None:
    drain, _ = drainer
    # Out of order, one above 2**53 (Lua's doubles) and one beyond the 64-bit column.
    for number in (9, 2**60 + 1, 12, 2**60, 2**64 + 5):
        assert client.post(URL, headers=push_headers(watched, number=number)).status_code == 204
    drain.drain_once()
    assert channel_row(watched.channel_id).last_message_number == 2**60 + 1
    client.post(URL, headers=push_headers(watched, number=3))
    drain.drain_once()
    assert channel_row(watched.channel_id).last_message_number == 2**60 + 1


def test_rejected_notifications_leave_the_intake_and_the_database_untouched(
    client: FlaskClient,
    watched: Watched,
    drainer,
    broker: redis.Redis,
    snapshot: Callable[[], Snapshot],
    intake_settings: Settings,
) -> None:
    before = snapshot()
    cases = {
        403: push_headers(watched, X_Goog_Channel_Token="wrong"),
        404: push_headers(watched, X_Goog_Channel_ID="unknown-channel"),
        400: push_headers(watched, X_Goog_Message_Number="seven"),
    }
    mismatch = push_headers(watched, X_Goog_Resource_ID="someone-elses-resource")
    for status, headers in cases.items():
        response = client.post(URL, headers=headers)
        assert response.status_code == status
        assert response.get_json()["error"]["code"]
    assert client.post(URL, headers=mismatch).status_code == 403
    assert not holds_records(intake_settings.spool_directory)
    assert intake_keys(broker) == set()
    drainer[0].drain_once()
    assert snapshot() == before


def test_a_sync_message_takes_the_direct_path(
    client: FlaskClient, session: Session, broker: redis.Redis
) -> None:
    fresh = watch_calendar(session, resource_id=None)  # the watch response not stored yet
    response = client.post(URL, headers=push_headers(fresh, "sync", number=1))
    assert response.status_code == 204
    channel = channel_row(fresh.channel_id)
    assert channel.resource_id == "resource-1" and channel.last_message_number == 1
    assert state_of(fresh.calendar_id).dirty_since is None
    assert intake_keys(broker) == set()


def test_while_the_database_is_down_the_webhook_refuses_and_the_batch_waits(
    client: FlaskClient,
    watched: Watched,
    drainer,
    make_drainer,
    broker: redis.Redis,
    forwarder: SpoolForwarder,
) -> None:
    drainer[0].stop()  # hands the lock over
    assert client.post(URL, headers=push_headers(watched, number=1)).status_code == 204
    down, _ = make_drainer("postgresql+psycopg://calsync@127.0.0.1:1/nowhere")
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        down.drain_once()
    assert broker.exists(push_intake.DATABASE_DOWN)
    assert broker.scard(push_intake.CLAIMS) == 1  # taken, not committed, not deleted

    # The forwarder learns it from Redis at its next call (a batch, or its heartbeat).
    wait_for(lambda: forwarder.database_down)
    refused = client.post(URL, headers=push_headers(watched, number=2))
    assert refused.status_code == 503
    assert refused.get_json()["error"]["code"] == "database_unavailable"
    assert state_of(watched.calendar_id).dirty_since is None

    down.stop()
    back, enqueued = make_drainer()
    assert back.drain_once()
    assert state_of(watched.calendar_id).dirty_since is not None
    assert enqueued == [[watched.calendar_id]]
    assert not broker.exists(push_intake.DATABASE_DOWN)
    assert intake_keys(broker) == set()
    wait_for(lambda: not forwarder.database_down)
    assert client.post(URL, headers=push_headers(watched, number=3)).status_code == 204


def test_a_batch_left_by_a_dead_drainer_is_applied_by_the_next_one(
    client: FlaskClient, watched: Watched, make_drainer, broker: redis.Redis, monkeypatch
) -> None:
    dying, _ = make_drainer()
    assert dying.drain_once()  # sets the epoch (marking the watched calendar dirty)
    with session_scope() as session:
        session.execute(update(SyncState).values(dirty_since=None))
    client.post(URL, headers=push_headers(watched, number=1))

    def die(_suffix: str) -> None:
        raise SystemExit("killed after taking the batch")

    monkeypatch.setattr(dying, "_apply", die)
    with pytest.raises(SystemExit):
        dying.drain_once()
    assert broker.scard(push_intake.CLAIMS) == 1

    successor, enqueued = make_drainer()
    assert not successor.drain_once()  # the lock is still the dead one's
    broker.delete(push_intake.LOCK)  # what its expiry does after LOCK_MS
    assert successor.drain_once()
    assert enqueued == [[watched.calendar_id]]
    assert state_of(watched.calendar_id).dirty_since is not None
    assert intake_keys(broker) == set()


def test_when_redis_loses_its_data_every_watched_calendar_is_fetched(
    client: FlaskClient, session: Session, drainer, broker: redis.Redis
) -> None:
    drain, enqueued = drainer
    watched = watch_calendar(session)
    stopped = watch_calendar(session)
    with session_scope() as other:
        other.execute(
            update(Channel)
            .where(Channel.id == stopped.channel_id)
            .values(stopped_at=datetime.now(UTC))
        )
    assert client.post(URL, headers=push_headers(watched, number=1)).status_code == 204
    broker.flushdb()  # Redis restarted without persistence: the notification is gone

    assert drain.drain_once()
    assert enqueued == [[watched.calendar_id]]
    assert state_of(watched.calendar_id).dirty_since is not None
    assert state_of(stopped.calendar_id).dirty_since is None
    assert drain.recoveries == 2  # the first round (fresh Redis) and this one
    assert broker.exists(push_intake.EPOCH)


def test_redis_down_answers_503_and_changes_nothing(
    intake_settings: Settings, db: None, watched: Watched, snapshot: Callable[[], Snapshot]
) -> None:
    unreachable = dataclasses.replace(intake_settings, broker_url="redis://127.0.0.1:1/0")
    before = snapshot()
    response = create_app(unreachable).test_client().post(URL, headers=push_headers(watched))
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "broker_unavailable"
    assert snapshot() == before


def test_a_notification_for_a_calendar_deleted_meanwhile_is_dropped(
    client: FlaskClient, watched: Watched, drainer
) -> None:
    drain, enqueued = drainer
    assert client.post(URL, headers=push_headers(watched, number=1)).status_code == 204
    with session_scope() as session:  # detached after the webhook accepted the notification
        session.delete(session.get(SyncState, watched.calendar_id))
    assert drain.drain_once()
    assert enqueued == []


def test_batches_left_by_failed_rounds_are_applied_oldest_first(
    client: FlaskClient, watched: Watched, drainer, make_drainer, broker: redis.Redis
) -> None:
    drainer[0].stop()
    down, _ = make_drainer("postgresql+psycopg://calsync@127.0.0.1:1/nowhere")
    first_at = datetime.now(UTC) - timedelta(milliseconds=1)  # marks keep milliseconds
    assert client.post(URL, headers=push_headers(watched, number=1)).status_code == 204
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        down.drain_once()
    down.stop()
    time.sleep(0.02)
    second_at = datetime.now(UTC)
    for number in (2, 3):  # each taken as its own batch by a failing round
        broker.delete(push_intake.DATABASE_DOWN)
        assert client.post(URL, headers=push_headers(watched, number=number)).status_code == 204
        again, _ = make_drainer("postgresql+psycopg://calsync@127.0.0.1:1/nowhere")
        with pytest.raises(Exception):  # noqa: B017
            again.drain_once()
        again.stop()
    assert broker.scard(push_intake.CLAIMS) == 3

    back, enqueued = make_drainer()
    assert back.drain_once()
    state = state_of(watched.calendar_id)
    # The oldest batch set the mark: it is the first unprocessed notification's time.
    assert first_at <= state.dirty_since < second_at
    assert state.last_notification_at > state.dirty_since
    assert enqueued == [[watched.calendar_id]]
    assert channel_row(watched.channel_id).last_message_number == 3
