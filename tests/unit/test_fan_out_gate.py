"""The outbound fan-out gate (worker/fan_out_gate.py): one fan-out message waiting at a time,
in a process and, on a Redis broker, across processes, unless a sooner one is wanted;
never a lost message when Redis cannot answer."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
import redis

from core.settings import Settings, configure
from worker import fan_out_gate


class Sent:
    def __init__(self) -> None:
        self.countdowns: list[float] = []

    def __call__(self, countdown: float) -> None:
        self.countdowns.append(countdown)


def broker_away(countdown: float) -> None:
    raise OSError("broker away")


@pytest.fixture
def on_broker(settings: Settings) -> Iterator[object]:
    def use(url: str) -> None:
        configure(dataclasses.replace(settings, broker_url=url))

    fan_out_gate.reset()
    yield use
    fan_out_gate.reset()
    configure(settings)


def test_one_message_waits_in_a_process_until_it_is_due(on_broker) -> None:
    on_broker("sqla+sqlite:////tmp/unused-broker.db")
    sent = Sent()
    assert fan_out_gate.send_once(sent, 0.2)
    assert not fan_out_gate.send_once(sent, 0.2)  # the first is still waiting
    assert not fan_out_gate.send_once(sent, 0.195)  # sooner, but within the slack
    time.sleep(0.2)
    assert fan_out_gate.send_once(sent, 0.2)  # it ran: the next one goes
    assert sent.countdowns == [0.2, 0.2]


def test_a_sooner_message_is_not_held_back_by_a_later_one(on_broker) -> None:
    on_broker("sqla+sqlite:////tmp/unused-broker.db")
    sent = Sent()
    assert fan_out_gate.send_once(sent, 0.2)
    assert fan_out_gate.send_once(sent, 0.03)  # a host's window ends long before
    assert not fan_out_gate.send_once(sent, 0.2)  # the sooner one waits now
    assert sent.countdowns == [0.2, 0.03]


def test_a_message_that_failed_to_send_does_not_hold_the_gate(on_broker) -> None:
    on_broker("sqla+sqlite:////tmp/unused-broker.db")

    with pytest.raises(OSError):
        fan_out_gate.send_once(broker_away, 0.2)
    sent = Sent()
    assert fan_out_gate.send_once(sent, 0.2)


def test_a_message_that_failed_to_send_lets_other_processes_send_at_once(
    on_broker, redis_url: str
) -> None:
    on_broker(redis_url)

    with pytest.raises(OSError):
        fan_out_gate.send_once(broker_away, 0.3)
    assert redis.Redis.from_url(redis_url).get(fan_out_gate.KEY) is None
    fan_out_gate.reset()  # another process
    sent = Sent()
    assert fan_out_gate.send_once(sent, 0.3)  # not held back by the message never sent
    assert sent.countdowns == [0.3]


def test_a_failed_send_leaves_a_sooner_message_that_took_the_gate_since(
    on_broker, redis_url: str
) -> None:
    on_broker(redis_url)
    sent = Sent()

    def sooner_one_sent_meanwhile_then_broker_away(countdown: float) -> None:
        fan_out_gate.reset()  # as another process, while this one's send is under way
        assert fan_out_gate.send_once(sent, 0.05)
        raise OSError("broker away")

    with pytest.raises(OSError):
        fan_out_gate.send_once(sooner_one_sent_meanwhile_then_broker_away, 0.3)
    assert redis.Redis.from_url(redis_url).get(fan_out_gate.KEY) is not None
    fan_out_gate.reset()
    assert not fan_out_gate.send_once(sent, 0.3)  # the sooner one still counts
    assert sent.countdowns == [0.05]


def test_processes_share_one_waiting_message_through_redis(on_broker, redis_url: str) -> None:
    on_broker(redis_url)
    sent = Sent()
    assert fan_out_gate.send_once(sent, 0.3)
    for _other_process in range(5):
        fan_out_gate.reset()  # another process: its own gate is open, the shared one is not
        assert not fan_out_gate.send_once(sent, 0.3)
    ttl = redis.Redis.from_url(redis_url).pttl(fan_out_gate.KEY)
    assert 0 < ttl <= 300 - fan_out_gate.EARLY_SECONDS * 1000
    time.sleep(0.3)
    fan_out_gate.reset()
    assert fan_out_gate.send_once(sent, 0.3)  # the waiting one ran: the next goes
    assert len(sent.countdowns) == 2


def test_a_writers_message_does_not_hold_back_a_fan_outs_sooner_follow_up(
    on_broker, redis_url: str
) -> None:
    # A busy writer's commit (a whole window away) takes the gate while a fan-out runs;
    # the fan-out's follow-up, for a host whose window ends in 30 ms, must still go (it
    # did not: that host then waited for the writer's message, up to a window more).
    on_broker(redis_url)
    sent = Sent()
    assert fan_out_gate.send_once(sent, 0.2)  # the writer, in its process
    fan_out_gate.reset()  # the fan-out, in another
    assert fan_out_gate.send_once(sent, 0.03)
    fan_out_gate.reset()  # a third process's writer: the sooner message serves it
    assert not fan_out_gate.send_once(sent, 0.2)
    assert sent.countdowns == [0.2, 0.03]
    # The key now holds the sooner message, expiring just before it is due.
    assert redis.Redis.from_url(redis_url).pttl(fan_out_gate.KEY) <= 30 - 20


def test_a_fan_out_running_on_time_may_send_its_follow_up(on_broker, redis_url: str) -> None:
    # The shared hold ends a little before the message is due, so the fan-out it starts
    # (which sends the next message when hosts are still inside their window) is not
    # refused by its own, already-running message.
    on_broker(redis_url)
    sent = Sent()
    assert fan_out_gate.send_once(sent, 0.1)
    time.sleep(0.1)  # the message is due and runs
    fan_out_gate.reset()
    assert fan_out_gate.send_once(sent, 0.05)


def test_redis_away_sends_anyway(on_broker) -> None:
    on_broker("redis://127.0.0.1:1/0")  # nothing listens there
    sent = Sent()
    assert fan_out_gate.send_once(sent, 0.2)
    assert sent.countdowns == [0.2]


def test_a_process_refused_by_a_sooner_message_goes_once_that_one_ran(
    on_broker, redis_url: str
) -> None:
    # A fan-out's follow-up (due in 50 ms) waits; a writer in another process is refused.
    # Once the follow-up has run, the writer's next commit must send: nothing waits for it.
    # (The process gate counted the refused message as its own, due a window later, and
    # held that commit back: the last change of a burst waited for the sweep, ~5 s.)
    on_broker(redis_url)
    sent = Sent()
    assert fan_out_gate.send_once(sent, 0.05)
    fan_out_gate.reset()  # the writer's process
    assert not fan_out_gate.send_once(sent, 0.2)
    time.sleep(0.06)  # the follow-up ran
    assert fan_out_gate.send_once(sent, 0.2)
    assert sent.countdowns == [0.05, 0.2]
