"""The web process's push spool (intake/spool.py) and its forwarder
(intake/forwarder.py): an accepted notification is on disk before the 204, reaches
Redis within a forwarder round, survives its process being killed (another process of the
host adopts the spool), waits out a Redis outage (meanwhile the webhook answers 503), and a
spooling process that vanishes with its host makes the drainer fetch every watched calendar.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from core.settings import Settings
from intake import drainer as intake_drainer
from intake import redis_intake as push_intake
from intake.forwarder import SpoolForwarder
from intake.redis_intake import PushIntake, chunks
from intake.spool import IntakeRecord, PushSpool, encode, holds_records
from webhook import create_app

from .conftest import Watched, push_headers
from .test_push_intake import state_of

URL = "/webhooks/google"


@pytest.fixture
def client(
    intake_settings: Settings, db: None, broker: redis.Redis, forwarder: SpoolForwarder
) -> FlaskClient:
    return create_app(intake_settings).test_client()


AT = datetime(2026, 11, 24, 9, 30, 0, 123000, tzinfo=UTC)


def record(calendar_id: int = 7, number: int | None = 42, channel: str = "c0ffee") -> IntakeRecord:
    return IntakeRecord(calendar_id, channel, AT, number)


# --- the spool on its own (no services) -----------------------------------------------------


def test_a_record_is_one_line_the_script_in_redis_parses() -> None:
    at_ms = int(AT.timestamp() * 1000)
    assert encode(record()) == f"7 {at_ms} c0ffee 42\n".encode()
    assert encode(record(number=None)) == f"7 {at_ms} c0ffee -\n".encode()


def test_lines_are_cut_into_pieces_at_line_ends_only() -> None:
    lines = b"".join(encode(record(calendar_id=n)) for n in range(100))
    pieces = list(chunks(lines, 100))
    assert b"".join(pieces) == lines
    assert all(len(piece) <= 100 and piece.endswith(b"\n") for piece in pieces)
    assert list(chunks(b"", 100)) == []


def test_sealing_starts_a_new_segment_and_a_sent_one_is_deleted(tmp_path: Path) -> None:
    spool = PushSpool(tmp_path, "web-1")
    spool.seal()
    assert spool.sealed_segments() == []  # nothing to seal
    spool.append(record(1))
    spool.append(record(2))
    spool.seal()
    spool.append(record(3))
    (first,) = spool.sealed_segments()
    assert first.read_bytes() == encode(record(1)) + encode(record(2))
    assert holds_records(tmp_path)
    spool.sent(first)
    assert not first.exists() and spool.sealed_segments() == []
    assert holds_records(tmp_path)  # record 3, not sealed yet

    spool.close()  # what is left is sealed, for the caller (or an adopter) to send
    (last,) = spool.sealed_segments()
    assert last.read_bytes() == encode(record(3))
    with pytest.raises(OSError):
        spool.append(record(4))


def test_a_seal_that_cannot_open_a_new_segment_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = PushSpool(tmp_path, "web-1")
    spool.append(record(1))
    opened = spool._open_segment

    def no_more_files(number: int) -> int:
        raise OSError("too many open files")

    monkeypatch.setattr(spool, "_open_segment", no_more_files)
    with pytest.raises(OSError):
        spool.seal()
    assert spool.sealed_segments() == []  # still the segment being written
    spool.append(record(2))
    monkeypatch.setattr(spool, "_open_segment", opened)
    spool.seal()
    (sealed,) = spool.sealed_segments()
    assert sealed.read_bytes() == encode(record(1)) + encode(record(2))


SPOOLING_CHILD = textwrap.dedent(
    """
    import sys, time
    from datetime import UTC, datetime
    from pathlib import Path
    from intake.spool import IntakeRecord
    from intake.spool import PushSpool

    spool = PushSpool(Path(sys.argv[1]), sys.argv[2])
    for calendar_id in (int(n) for n in sys.argv[3:]):
        spool.append(IntakeRecord(calendar_id, "c0ffee", datetime.now(UTC), calendar_id))
    print("spooled", flush=True)
    time.sleep(60)
    """
)


def spool_then_get_killed(directory: Path, owner: str, calendar_ids: list[int]) -> None:
    """A web process that accepted notifications and was SIGKILLed before sending them."""
    argv = [sys.executable, "-c", SPOOLING_CHILD, str(directory), owner]
    child = subprocess.Popen(
        argv + [str(n) for n in calendar_ids], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "spooled"
        # Alive: its lock is held, so nobody may adopt its spool.
        assert list(PushSpool(directory, "observer").orphans()) == []
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        child.stdout.close()


def test_the_spool_of_a_killed_process_is_adopted_whole(tmp_path: Path) -> None:
    spool_then_get_killed(tmp_path, "web-dead", [1, 2, 3])
    adopter = PushSpool(tmp_path, "web-2")
    (orphan,) = adopter.orphans()
    assert orphan.owner == "web-dead"
    lines = b"".join(path.read_bytes() for path in orphan.segments).splitlines()
    assert [line.split()[0] for line in lines] == [b"1", b"2", b"3"]
    assert list(PushSpool(tmp_path, "web-3").orphans()) == []  # locked by its adopter
    for path in orphan.segments:
        path.unlink()
    orphan.lock.release()
    assert list(adopter.orphans()) == []
    assert not holds_records(tmp_path)


# --- with Redis and PostgreSQL ------------------------------------------------------------


def test_the_forwarder_sends_the_spool_and_beats(
    forwarder: SpoolForwarder, broker: redis.Redis
) -> None:
    forwarder.spool.append(record(5, number=2**60 + 1))
    forwarder.spool.append(record(6, number=None))
    assert forwarder.forward_once() == 2
    at_ms = str(int(AT.timestamp() * 1000)).encode()
    assert broker.hgetall(push_intake.PENDING) == {b"5": at_ms, b"6": at_ms}
    assert broker.hget(push_intake.CHANNELS, "c0ffee") == at_ms + b" " + str(2**60 + 1).encode()
    assert broker.llen(push_intake.WAKE) == 1  # the drainer is woken
    assert broker.hexists(push_intake.SPOOLERS, forwarder.owner)
    assert not holds_records(forwarder.spool.directory)

    forwarder.close()  # a clean exit hands over and stops beating
    assert not broker.hexists(push_intake.SPOOLERS, forwarder.owner)
    assert list(forwarder.spool.directory.glob("*")) == []


def test_a_killed_web_process_spool_reaches_redis_through_a_sibling(
    forwarder: SpoolForwarder, broker: redis.Redis
) -> None:
    directory = forwarder.spool.directory
    broker.hset(push_intake.SPOOLERS, "web-dead", 1)  # it had registered before dying
    spool_then_get_killed(directory, "web-dead", [11, 12])
    forwarder.forward_once()  # the first round also looks for orphans
    assert set(broker.hkeys(push_intake.PENDING)) == {b"11", b"12"}
    assert not broker.hexists(push_intake.SPOOLERS, "web-dead")  # handed over: not lost
    assert not holds_records(directory)
    assert not (directory / "web-dead.lock").exists()


def test_while_redis_is_down_the_webhook_refuses_and_the_spool_keeps_what_it_accepted(
    client: FlaskClient,
    watched: Watched,
    forwarder: SpoolForwarder,
    broker: redis.Redis,
    intake_settings: Settings,
) -> None:
    assert client.post(URL, headers=push_headers(watched, number=1)).status_code == 204
    working = forwarder.intake
    forwarder.intake = PushIntake("redis://127.0.0.1:1/0")  # Redis goes away
    try:
        forwarder.forward_once()
        assert forwarder.broker_down
        refused = client.post(URL, headers=push_headers(watched, number=2))
        assert refused.status_code == 503
        assert refused.get_json()["error"]["code"] == "broker_unavailable"
        assert holds_records(intake_settings.spool_directory) or broker.hexists(
            push_intake.PENDING, watched.calendar_id
        )
    finally:
        forwarder.intake = working  # Redis is back
    forwarder.forward_once()
    assert not forwarder.broker_down
    assert broker.hexists(push_intake.PENDING, watched.calendar_id)
    assert not holds_records(intake_settings.spool_directory)
    assert client.post(URL, headers=push_headers(watched, number=3)).status_code == 204


def test_a_spooler_that_stops_beating_makes_the_drainer_fetch_every_watched_calendar(
    watched: Watched, drainer, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    drain, enqueued = drainer
    (seconds, _micros) = broker.time()
    now_ms = seconds * 1000
    broker.hset(push_intake.SPOOLERS, "host-gone", now_ms - intake_drainer.SPOOLER_LOST_MS - 1)
    broker.hset(push_intake.SPOOLERS, "host-alive", now_ms)
    monkeypatch.setattr(intake_drainer, "SPOOLER_CHECK_SECONDS", 0)
    recoveries = drain.recoveries
    assert drain.drain_once()
    assert drain.recoveries == recoveries + 1
    assert enqueued == [[watched.calendar_id]]
    assert state_of(watched.calendar_id).dirty_since is not None
    assert not broker.hexists(push_intake.SPOOLERS, "host-gone")
    assert broker.hexists(push_intake.SPOOLERS, "host-alive")

    assert drain.drain_once()  # nothing lost since: no second recovery
    assert drain.recoveries == recoveries + 1


def test_an_unusable_spool_directory_answers_503_and_changes_nothing(
    intake_settings: Settings,
    db: None,
    watched: Watched,
    broker: redis.Redis,
    tmp_path: Path,
    snapshot,
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    unusable = dataclasses.replace(intake_settings, push_spool_dir=blocker / "spool")
    before = snapshot()
    response = create_app(unusable).test_client().post(URL, headers=push_headers(watched))
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "spool_unavailable"
    assert snapshot() == before
    assert broker.keys(push_intake.PREFIX + "*") == []
