"""Beat's rounds that queue syncs again (the safety net for calendars still due, the sweeper
for calendars still dirty) send nothing more while the queue holds a backlog, and nothing
owed is lost when the backlog's messages are: on the real broker (Redis in CI, the embedded
one elsewhere), emptied first and with nobody consuming, so the queue is exactly what the
rounds sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from core.settings import Settings
from models.db import session_scope
from rules import sync_schedule
from tests.conftest import point_celery_at
from tests.factories import make_account, make_calendar, make_host
from worker import tasks
from worker.celery_app import app
from worker.enqueue import enqueue_syncs
from worker.queue_depth import queue_depth
from worker.task_names import QueueNames

CALENDARS = 6
BACKLOG = 4  # a queue of this many messages counts as a backlog (the product's is 2,000)


@pytest.fixture
def broker(settings: Settings, db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The suite's broker with the `calsync` queue emptied (in-process tests publish to it
    and nothing consumes), before the test and after it."""
    point_celery_at(settings)
    monkeypatch.setattr(sync_schedule, "BACKLOG_MESSAGES", BACKLOG)
    _lose_every_message()
    yield settings
    _lose_every_message()


def _calendars(dirty_since: datetime | None = None) -> list[int]:
    """CALENDARS calendars never synced (due their first sync), dirty since `dirty_since`."""
    with session_scope() as session:
        host = make_host(session)
        account = make_account(session, host)
        return [
            make_calendar(session, host, account, dirty_since=dirty_since).id
            for _ in range(CALENDARS)
        ]


def _lose_every_message() -> None:
    """The broker loses what it held (Redis restarted without persistence, say)."""
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(str(QueueNames.CALSYNC))


def test_the_safety_net_does_not_queue_a_backlog_again(broker: Settings) -> None:
    _calendars()
    assert tasks.safety_net() == CALENDARS
    assert queue_depth(broker) == CALENDARS
    # The workers have not reached them: the next rounds find them still due, and hold.
    assert tasks.safety_net() == 0
    assert tasks.safety_net() == 0
    assert queue_depth(broker) == CALENDARS
    # Lost with the broker: the next round finds them in the database and queues them again.
    _lose_every_message()
    assert tasks.safety_net() == CALENDARS
    assert queue_depth(broker) == CALENDARS


def test_the_sweeper_does_not_queue_a_backlog_again(broker: Settings) -> None:
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    _calendars(dirty_since=long_ago)
    assert tasks.sweep_dirty() == CALENDARS
    assert queue_depth(broker) == CALENDARS
    assert tasks.sweep_dirty() == 0
    assert queue_depth(broker) == CALENDARS
    _lose_every_message()
    assert tasks.sweep_dirty() == CALENDARS
    assert queue_depth(broker) == CALENDARS


def test_below_a_backlog_a_round_queues_what_is_still_owed(
    broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short queue says little about which calendars are in it: the round sends as before
    # (a sync queued twice runs once: the second finds nothing due and skips).
    monkeypatch.setattr(sync_schedule, "BACKLOG_MESSAGES", CALENDARS + 1)
    _calendars()
    assert tasks.safety_net() == CALENDARS
    assert tasks.safety_net() == CALENDARS
    assert queue_depth(broker) == 2 * CALENDARS


def _needs_priorities(broker: Settings) -> None:
    if not broker.broker_url.startswith("redis"):
        pytest.skip("the embedded broker keeps no priorities: this needs Redis (CI runs it)")


def _next_sync(channel) -> tuple[int, str]:
    """The calendar and trigger of the next sync message a worker would take."""
    message = channel.basic_get(str(QueueNames.CALSYNC), no_ack=True)
    assert message is not None, "the queue is empty"
    args, kwargs, _embed = message.decode()
    return args[0], kwargs["trigger"]


def test_a_pushed_change_is_synced_ahead_of_a_scheduled_backlog(
    broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_priorities(broker)
    monkeypatch.setattr(sync_schedule, "SPREAD_AT_MOST", 2)  # the round is a backlog
    scheduled = _calendars()
    assert tasks.safety_net() == CALENDARS
    with session_scope() as session:
        host = make_host(session)
        pushed = make_calendar(session, host, make_account(session, host)).id
    enqueue_syncs([pushed], reason="push")  # as the intake drainer sends a notification's
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        assert _next_sync(channel) == (pushed, "push")
        # The backlog follows, in the order the round sent it.
        assert [_next_sync(channel)[0] for _ in scheduled] == scheduled


def test_a_scheduled_backlog_does_not_hold_the_sweeper(
    broker: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker killed mid-sync while the safety net's backlog waits: the sweeper still
    # queues its calendar, ahead of the backlog.
    _needs_priorities(broker)
    monkeypatch.setattr(sync_schedule, "SPREAD_AT_MOST", 2)
    _calendars()
    assert tasks.safety_net() == CALENDARS
    left_dirty = _calendars(dirty_since=datetime.now(UTC) - timedelta(hours=1))
    assert tasks.sweep_dirty() == CALENDARS
    with app.connection_for_write() as connection:
        assert _next_sync(connection.default_channel) == (left_dirty[0], "sweeper")
