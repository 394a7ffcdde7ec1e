"""POST /webhooks/google against the real database: authentication, coalescing into one
enqueue per clean→dirty transition, 503 when the database or broker is down, and no stored
change for any rejected request."""

from __future__ import annotations

import dataclasses
import io
import logging
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from core.settings import Settings
from models import Calendar, Channel, SyncState
from tests.factories import make_channel
from webhook import create_app, push_receiver
from webhook.app_factory import MAX_CONTENT_LENGTH

from .conftest import FakeQueue, Snapshot, Watched, push_headers, watch_calendar

URL = "/webhooks/google"


@pytest.fixture
def outcomes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    recorded: list[str] = []
    monkeypatch.setattr(push_receiver, "record_outcome", recorded.append)
    return recorded


def state_of(open_session: Callable[[], Session], calendar_id: int) -> SyncState:
    state = open_session().get(SyncState, calendar_id)
    assert state is not None
    return state


def channel_of(open_session: Callable[[], Session], channel_id: str) -> Channel:
    channel = open_session().get(Channel, channel_id)
    assert channel is not None
    return channel


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


# --- accepted notifications -------------------------------------------------------------


@pytest.mark.parametrize("state", ["exists", "not_exists"])
def test_change_marks_dirty_enqueues_once_and_answers_204(
    client: FlaskClient,
    watched: Watched,
    fake_queue: FakeQueue,
    fresh_session,
    outcomes: list[str],
    state: str,
) -> None:
    before = datetime.now(UTC)
    response = client.post(URL, headers=push_headers(watched, state, number=7))
    after = datetime.now(UTC)

    assert response.status_code == 204
    assert response.get_data() == b""
    assert fake_queue.calls == [(watched.calendar_id, "push")]
    sync_state = state_of(fresh_session, watched.calendar_id)
    assert sync_state.dirty_since is not None
    assert before <= sync_state.dirty_since <= after
    assert sync_state.last_notification_at == sync_state.dirty_since
    channel = channel_of(fresh_session, watched.channel_id)
    assert channel.last_notification_at == sync_state.dirty_since
    assert channel.last_message_number == 7
    assert outcomes == ["accepted"]


def test_task_is_enqueued_only_after_the_dirty_mark_is_committed(
    client: FlaskClient, watched: Watched, fake_queue: FakeQueue, fresh_session
) -> None:
    seen: list[datetime | None] = []
    # Another connection (a worker) must already see the mark when the task is sent.
    fake_queue.on_enqueue = lambda cid: seen.append(state_of(fresh_session, cid).dirty_since)

    assert client.post(URL, headers=push_headers(watched)).status_code == 204
    assert len(seen) == 1 and seen[0] is not None


def test_burst_of_50_notifications_enqueues_once_while_dirty(
    client: FlaskClient, watched: Watched, fake_queue: FakeQueue, fresh_session
) -> None:
    statuses = [
        client.post(URL, headers=push_headers(watched, number=n)).status_code for n in range(2, 52)
    ]
    assert statuses == [204] * 50
    assert fake_queue.calls == [(watched.calendar_id, "push")]
    sync_state = state_of(fresh_session, watched.calendar_id)
    channel = channel_of(fresh_session, watched.channel_id)
    # dirty_since keeps the first notification's time; the last one is recorded too.
    assert sync_state.dirty_since is not None
    assert sync_state.last_notification_at > sync_state.dirty_since
    assert channel.last_message_number == 51


def test_concurrent_burst_enqueues_once(
    app: Flask, watched: Watched, fake_queue: FakeQueue
) -> None:
    statuses: list[int] = []
    lock = threading.Lock()

    def send(numbers: range) -> None:
        client = app.test_client()
        for n in numbers:
            status = client.post(URL, headers=push_headers(watched, number=n)).status_code
            with lock:
                statuses.append(status)

    threads = [
        threading.Thread(target=send, args=(range(2 + 10 * i, 12 + 10 * i),)) for i in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [204] * 50
    assert fake_queue.calls == [(watched.calendar_id, "push")]


def test_after_the_worker_clears_the_mark_the_next_change_enqueues_again(
    client: FlaskClient, watched: Watched, fake_queue: FakeQueue, fresh_session
) -> None:
    assert client.post(URL, headers=push_headers(watched, number=2)).status_code == 204
    s = fresh_session()
    s.get(SyncState, watched.calendar_id).dirty_since = None  # what a sync run does
    s.commit()
    assert client.post(URL, headers=push_headers(watched, number=3)).status_code == 204
    assert fake_queue.calls == [(watched.calendar_id, "push")] * 2


def test_already_dirty_calendar_is_not_enqueued_again(
    client: FlaskClient, session: Session, fake_queue: FakeQueue, fresh_session
) -> None:
    earlier = datetime.now(UTC) - timedelta(seconds=3)
    watched = watch_calendar(session)
    session.get(SyncState, watched.calendar_id).dirty_since = earlier
    session.commit()

    assert client.post(URL, headers=push_headers(watched)).status_code == 204
    assert fake_queue.calls == []
    assert state_of(fresh_session, watched.calendar_id).dirty_since == earlier


def test_sync_message_is_only_acknowledged(
    client: FlaskClient,
    watched: Watched,
    fake_queue: FakeQueue,
    fresh_session,
    outcomes: list[str],
) -> None:
    response = client.post(URL, headers=push_headers(watched, "sync", number=1))

    assert response.status_code == 204
    assert fake_queue.calls == []
    sync_state = state_of(fresh_session, watched.calendar_id)
    assert sync_state.dirty_since is None
    assert sync_state.last_notification_at is None
    channel = channel_of(fresh_session, watched.channel_id)
    assert channel.last_message_number == 1
    assert channel.last_notification_at is not None
    assert outcomes == ["sync_ack"]


def test_sync_before_the_watch_response_stores_the_resource_id(
    client: FlaskClient, session: Session, fake_queue: FakeQueue, fresh_session
) -> None:
    watched = watch_calendar(session, resource_id=None)
    headers = push_headers(watched, "sync", number=1, X_Goog_Resource_ID="res-from-google")

    assert client.post(URL, headers=headers).status_code == 204
    assert channel_of(fresh_session, watched.channel_id).resource_id == "res-from-google"
    # From then on the stored resource id is enforced.
    other = push_headers(watched, number=2, X_Goog_Resource_ID="another-resource")
    assert_error(client.post(URL, headers=other), 403, "resource_mismatch")


def test_message_number_never_moves_back(
    client: FlaskClient, watched: Watched, fake_queue: FakeQueue, fresh_session
) -> None:
    client.post(URL, headers=push_headers(watched, number=9))
    client.post(URL, headers=push_headers(watched, number=4))
    assert channel_of(fresh_session, watched.channel_id).last_message_number == 9


def test_message_number_beyond_the_column_is_accepted_but_not_stored(
    client: FlaskClient, watched: Watched, fake_queue: FakeQueue, fresh_session
) -> None:
    client.post(URL, headers=push_headers(watched, number=5))
    assert client.post(URL, headers=push_headers(watched, number=2**40)).status_code == 204
    assert channel_of(fresh_session, watched.channel_id).last_message_number == 2**40
    response = client.post(URL, headers=push_headers(watched, number=2**64))
    assert response.status_code == 204
    assert channel_of(fresh_session, watched.channel_id).last_message_number == 2**40


def test_an_overlapping_renewed_channel_is_accepted(
    client: FlaskClient, session: Session, watched: Watched, fake_queue: FakeQueue
) -> None:
    calendar = session.get(Calendar, watched.calendar_id)
    renewed = make_channel(session, calendar, resource_id="resource-2")
    session.commit()
    renewed_watch = Watched(watched.calendar_id, renewed.id, renewed.plain_token, "resource-2")

    assert client.post(URL, headers=push_headers(renewed_watch, number=2)).status_code == 204
    assert client.post(URL, headers=push_headers(watched, number=3)).status_code == 204
    assert fake_queue.calls == [(watched.calendar_id, "push")]


# --- rejected notifications: status, JSON, outcome, and no stored change ----------------


def _assert_rejected_without_change(
    client: FlaskClient,
    snapshot: Callable[[], Snapshot],
    fake_queue: FakeQueue,
    outcomes: list[str],
    status: int,
    code: str,
    outcome: str,
    **request_kw,
) -> None:
    before = snapshot()
    assert_error(client.post(URL, **request_kw), status, code)
    assert snapshot() == before
    assert fake_queue.calls == []
    assert outcomes == [outcome]


def test_unknown_channel_is_404(client, watched, snapshot, fake_queue, outcomes) -> None:
    headers = push_headers(watched, X_Goog_Channel_ID="no-such-channel")
    _assert_rejected_without_change(
        client, snapshot, fake_queue, outcomes, 404, "unknown_channel", "unknown_channel",
        headers=headers,
    )  # fmt: skip


def test_stopped_channel_is_treated_as_unknown(
    client, session: Session, snapshot, fake_queue, outcomes
) -> None:
    watched = watch_calendar(session, stopped_at=datetime.now(UTC) - timedelta(minutes=5))
    _assert_rejected_without_change(
        client, snapshot, fake_queue, outcomes, 404, "unknown_channel", "unknown_channel",
        headers=push_headers(watched),
    )  # fmt: skip


@pytest.mark.parametrize(
    "token",
    [None, "", "forged", "ünïcödé-token", "x" * 256],
    ids=["missing", "blank", "wrong", "non-ascii", "max-length-wrong"],
)
def test_wrong_or_missing_token_is_403(
    client, watched: Watched, snapshot, fake_queue, outcomes, token: str | None
) -> None:
    headers = push_headers(watched, X_Goog_Channel_Token=token)
    _assert_rejected_without_change(
        client, snapshot, fake_queue, outcomes, 403, "bad_token", "bad_token", headers=headers
    )


def test_prefix_of_the_right_token_is_403(
    client, watched: Watched, snapshot, fake_queue, outcomes
) -> None:
    headers = push_headers(watched, X_Goog_Channel_Token=watched.token[:-1])
    _assert_rejected_without_change(
        client, snapshot, fake_queue, outcomes, 403, "bad_token", "bad_token", headers=headers
    )


def test_wrong_resource_id_is_403(client, watched: Watched, snapshot, fake_queue, outcomes) -> None:
    headers = push_headers(watched, X_Goog_Resource_ID="someone-elses-resource")
    _assert_rejected_without_change(
        client, snapshot, fake_queue, outcomes, 403, "resource_mismatch", "resource_mismatch",
        headers=headers,
    )  # fmt: skip


@pytest.mark.parametrize(
    "overrides",
    [
        {"X_Goog_Channel_ID": None},
        {"X_Goog_Resource_State": None},
        {"X_Goog_Resource_ID": None},
        {"X_Goog_Message_Number": None},
        {"X_Goog_Channel_ID": "   "},
        {"X_Goog_Channel_ID": "c" * 65},
        {"X_Goog_Channel_Token": "t" * 257},
        {"X_Goog_Resource_ID": "r" * 257},
        {"X_Goog_Resource_State": "deleted"},
        {"X_Goog_Resource_State": "EXISTS"},
        {"X_Goog_Message_Number": "two"},
        {"X_Goog_Message_Number": "-3"},
        {"X_Goog_Message_Number": "²"},
        {"X_Goog_Message_Number": "9" * 21},
    ],
    ids=lambda o: "-".join(f"{k}={str(v)[:8]}" for k, v in o.items()),
)
def test_malformed_headers_are_400(
    client, watched: Watched, snapshot, fake_queue, outcomes, overrides: dict
) -> None:
    _assert_rejected_without_change(
        client, snapshot, fake_queue, outcomes, 400, "malformed", "malformed",
        headers=push_headers(watched, **overrides),
    )  # fmt: skip


def test_no_headers_at_all_is_400(client, db, fake_queue, outcomes) -> None:
    assert_error(client.post(URL), 400, "malformed")
    assert outcomes == ["malformed"]


def test_a_body_is_400(client, watched: Watched, snapshot, fake_queue, outcomes) -> None:
    _assert_rejected_without_change(
        client, snapshot, fake_queue, outcomes, 400, "body_not_allowed", "body_not_allowed",
        headers=push_headers(watched), data=b'{"kind": "api#channel"}',
    )  # fmt: skip


def test_a_huge_body_is_413(client, watched: Watched, snapshot, fake_queue, outcomes) -> None:
    _assert_rejected_without_change(
        client, snapshot, fake_queue, outcomes, 413, "body_too_large", "body_too_large",
        headers=push_headers(watched), data=b"x" * (MAX_CONTENT_LENGTH + 1),
    )  # fmt: skip


class EndlessStream(io.RawIOBase):
    """A body that never ends; counts what was read from it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        buffer[:] = b"x" * len(buffer)
        self.read_bytes += len(buffer)
        return len(buffer)


def _streamed(client: FlaskClient, headers: dict, stream) -> object:
    """A chunked request as a server that de-chunks (gunicorn, werkzeug) hands it over."""
    return client.post(
        URL,
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True},
    )


def test_a_huge_chunked_body_is_413_and_read_only_up_to_the_limit(
    client, watched: Watched, snapshot, fake_queue, outcomes
) -> None:
    stream = EndlessStream()
    before = snapshot()
    assert_error(_streamed(client, push_headers(watched), stream), 413, "body_too_large")
    assert snapshot() == before
    assert stream.read_bytes <= MAX_CONTENT_LENGTH + 64 * 1024
    assert outcomes == ["body_too_large"]


def test_a_small_chunked_body_is_400(client, watched: Watched, fake_queue, outcomes) -> None:
    response = _streamed(client, push_headers(watched), io.BytesIO(b"hello"))
    assert_error(response, 400, "body_not_allowed")


def test_an_empty_chunked_body_is_accepted(client, watched: Watched, fake_queue) -> None:
    assert _streamed(client, push_headers(watched), io.BytesIO(b"")).status_code == 204


def test_a_content_length_claiming_too_much_is_413_without_reading(
    client, watched: Watched, snapshot, fake_queue, outcomes
) -> None:
    stream = EndlessStream()
    before = snapshot()
    response = client.post(
        URL,
        headers=push_headers(watched),
        environ_overrides={"wsgi.input": stream, "CONTENT_LENGTH": str(10**12)},
    )
    assert_error(response, 413, "body_too_large")
    assert stream.read_bytes == 0
    assert snapshot() == before


def test_a_content_length_smaller_than_the_body_is_400(
    client, watched: Watched, snapshot, fake_queue, outcomes
) -> None:
    stream = EndlessStream()
    response = client.post(
        URL,
        headers=push_headers(watched),
        environ_overrides={"wsgi.input": stream, "CONTENT_LENGTH": "10"},
    )
    assert_error(response, 400, "body_not_allowed")
    assert stream.read_bytes == 0


# --- unavailable dependencies: 503 so Google retries -------------------------------------


def test_enqueue_failure_is_503_and_undoes_the_dirty_mark(
    client: FlaskClient,
    watched: Watched,
    fake_queue: FakeQueue,
    fresh_session,
    outcomes: list[str],
) -> None:
    fake_queue.fail = True
    response = client.post(URL, headers=push_headers(watched, number=2))
    assert_error(response, 503, "broker_unavailable")
    assert state_of(fresh_session, watched.calendar_id).dirty_since is None
    assert outcomes == ["unavailable"]

    # Google retries the same message once the broker is back: it enqueues this time.
    fake_queue.fail = False
    assert client.post(URL, headers=push_headers(watched, number=2)).status_code == 204
    assert fake_queue.calls == [(watched.calendar_id, "push")]
    assert state_of(fresh_session, watched.calendar_id).dirty_since is not None


def test_unexpected_enqueue_error_is_also_503_and_undone(
    client: FlaskClient,
    watched: Watched,
    monkeypatch: pytest.MonkeyPatch,
    fresh_session,
) -> None:
    from worker import enqueue as task_queue

    def broken(*_args, **_kw):
        raise RuntimeError("bug in the broker client")

    monkeypatch.setattr(task_queue, "enqueue_sync", broken)
    assert_error(client.post(URL, headers=push_headers(watched)), 503, "broker_unavailable")
    assert state_of(fresh_session, watched.calendar_id).dirty_since is None


@pytest.fixture(
    params=["postgresql-unreachable", "sqlite-unopenable"],
)
def database_down_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "postgresql-unreachable":
        return "postgresql+psycopg://calsync@127.0.0.1:1/calsync?connect_timeout=2"
    # A directory where the database file should be: SQLite cannot open it.
    return f"sqlite:///{tmp_path}"


def test_database_down_is_503_not_500(
    settings: Settings, database_down_url: str, fake_queue: FakeQueue, outcomes: list[str]
) -> None:
    app = create_app(dataclasses.replace(settings, database_url=database_down_url))
    watched = Watched(1, "some-channel", "some-token", "resource-1")
    for state in ("sync", "exists"):
        response = app.test_client().post(URL, headers=push_headers(watched, state))
        assert_error(response, 503, "database_unavailable")
    assert fake_queue.calls == []
    assert outcomes == ["unavailable", "unavailable"]


# --- logging and layering ----------------------------------------------------------------


def test_each_rejection_logs_one_line_without_the_token(
    client, watched: Watched, fake_queue, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "a-forged-token-that-must-not-be-logged"
    caplog.set_level(logging.DEBUG, logger="calsync")
    client.post(URL, headers=push_headers(watched, X_Goog_Channel_Token=secret))
    client.post(URL, headers=push_headers(watched, X_Goog_Channel_ID="unknown"))

    lines = [r.getMessage() for r in caplog.records if r.name == "calsync.webhook.push"]
    assert len(lines) == 2
    assert "outcome=bad_token" in lines[0] and watched.channel_id in lines[0]
    assert "outcome=unknown_channel" in lines[1]
    assert secret not in caplog.text and watched.token not in caplog.text


def test_every_outcome_name_is_stable() -> None:
    assert push_receiver.OUTCOMES == (
        "accepted", "sync_ack", "unknown_channel", "bad_token", "resource_mismatch",
        "malformed", "body_not_allowed", "body_too_large", "unavailable",
    )  # fmt: skip


def test_every_outcome_is_counted_in_the_metric(client, watched: Watched, fake_queue) -> None:
    from core import metrics

    def count(outcome: str) -> float:
        return metrics.WEBHOOK_NOTIFICATIONS.labels(outcome)._value.get()

    before = {outcome: count(outcome) for outcome in ("sync_ack", "bad_token")}
    client.post(URL, headers=push_headers(watched, "sync", number=1))
    client.post(URL, headers=push_headers(watched, X_Goog_Channel_Token="bad"))
    assert {outcome: count(outcome) - was for outcome, was in before.items()} == {
        "sync_ack": 1,
        "bad_token": 1,
    }


def test_the_web_process_never_loads_the_sync_engine_or_google_client(tmp_path) -> None:
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from core.settings import Settings\n"
        "from webhook import create_app\n"
        f"create_app(Settings(data_dir=Path({str(tmp_path)!r})))\n"
        "import worker.enqueue, worker.celery_app\n"
        "bad = [m for m in ('worker.sync_engine', 'worker.google_client', 'worker.tasks',\n"
        "       'googleapiclient') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_stored_token_is_a_hash_that_cannot_be_replayed(client, watched, session) -> None:
    from models import Channel
    from models.calendars import channel_token_hash

    stored = session.get(Channel, watched.channel_id).token_hash
    assert stored == channel_token_hash(watched.token) and watched.token not in stored
    replayed = push_headers(watched, X_Goog_Channel_Token=stored)
    assert client.post("/webhooks/google", headers=replayed).status_code == 403
    assert client.post("/webhooks/google", headers=push_headers(watched)).status_code == 204
