"""The task base class: transient errors are retried (bounded), anything else fails at once,
and every run's outcome and duration is counted."""

from __future__ import annotations

import httplib2
import pytest
from googleapiclient.errors import HttpError
from prometheus_client import REGISTRY
from sqlalchemy.exc import OperationalError

from core.errors import EnqueueError
from worker import channels, tasks
from worker.task_base import CalsyncTask, is_transient
from worker.task_names import TaskNames


def http_error(status: int, reason: str = "") -> HttpError:
    body = b'{"error": {"errors": [{"reason": "%s"}]}}' % reason.encode()
    return HttpError(httplib2.Response({"status": status}), body)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (EnqueueError("broker unavailable: test"), True),
        (OperationalError("SELECT 1", {}, Exception("server closed the connection")), True),
        (http_error(503), True),
        (http_error(429), True),
        (http_error(403, "rateLimitExceeded"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        (http_error(404), False),
        (http_error(403, "forbidden"), False),
        (http_error(410), False),
        (http_error(400), False),
        (FileNotFoundError("not a network error"), False),
        (ValueError("a bug"), False),
        (KeyError("a bug"), False),
    ],
)
def test_only_known_transient_errors_are_transient(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_every_task_uses_the_base_class() -> None:
    tasks.app.loader.import_default_modules()  # the app's `include`: every task module
    for name in TaskNames:
        task = tasks.app.tasks[str(name)]
        assert isinstance(task, CalsyncTask), name
        assert task.acks_late and task.reject_on_worker_lost and task.ignore_result, name


def _start_watch_attempts(monkeypatch: pytest.MonkeyPatch, error: Exception) -> list[int]:
    attempts: list[int] = []

    def failing(calendar_id: int) -> None:
        attempts.append(calendar_id)
        raise error

    monkeypatch.setattr(channels, "start_watch", failing)
    return attempts


def test_start_watch_retries_a_transient_error_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts = _start_watch_attempts(monkeypatch, http_error(503))
    countdowns: list[float] = []
    real_retry = tasks.start_watch.retry

    def record_retry(*args, countdown=None, **kwargs):
        countdowns.append(countdown)
        return real_retry(*args, countdown=countdown, **kwargs)

    monkeypatch.setattr(tasks.start_watch, "retry", record_retry)
    name = str(TaskNames.START_WATCH)
    retried = sample("calsync_task_runs_total", task=name, outcome="retry")
    failed = sample("calsync_task_runs_total", task=name, outcome="failed")
    result = tasks.start_watch.apply(args=[7])  # eager: each retry runs at once
    assert result.failed() and isinstance(result.result, HttpError)
    assert attempts == [7] * (tasks.start_watch.max_retries + 1)
    assert countdowns == [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]
    assert sample("calsync_task_runs_total", task=name, outcome="retry") == retried + 10
    assert sample("calsync_task_runs_total", task=name, outcome="failed") == failed + 1


@pytest.mark.parametrize("error", [ValueError("a bug"), http_error(404), http_error(400)])
def test_start_watch_does_not_retry_other_errors(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    attempts = _start_watch_attempts(monkeypatch, error)
    result = tasks.start_watch.apply(args=[7])
    assert result.failed() and result.result is error
    assert attempts == [7]


def test_stop_channels_retries_only_transient_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []
    errors: list[Exception] = [http_error(500), RuntimeError("a bug")]

    def failing(account_id: int, channel_list: list, **_sealed: object) -> None:
        attempts.append(account_id)
        raise errors.pop(0)

    monkeypatch.setattr(channels, "stop_channels_of_account", failing)
    result = tasks.stop_channels.apply(args=[3, [["channel-1", "resource-1"]]])
    assert attempts == [3, 3]  # the 500 was retried, the bug was not
    assert isinstance(result.result, RuntimeError)


def test_beat_tasks_do_not_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def unavailable() -> list[int]:
        calls.append(1)
        raise EnqueueError("broker unavailable: test")

    monkeypatch.setattr(channels, "renew_expiring", unavailable)
    result = tasks.renew_channels.apply()
    assert isinstance(result.result, EnqueueError)
    assert calls == [1]  # the next beat tick runs it again


def test_a_run_is_timed_and_counted_by_task_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channels, "start_watch", lambda calendar_id: "channel-1")
    name = str(TaskNames.START_WATCH)
    ok = sample("calsync_task_runs_total", task=name, outcome="ok")
    timed = sample("calsync_task_duration_seconds_count", task=name)
    assert tasks.start_watch.apply(args=[7]).result == "channel-1"
    assert sample("calsync_task_runs_total", task=name, outcome="ok") == ok + 1
    assert sample("calsync_task_duration_seconds_count", task=name) == timed + 1
