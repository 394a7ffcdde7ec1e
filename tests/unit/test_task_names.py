"""Every task name sent is a registered task, every registered task is named in `TaskNames`,
and every queue is consumed by the Procfile's worker (names are a wire contract between
processes: a typo here is a message nobody ever runs)."""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
from celery import Celery

from core.settings import get_settings
from worker.celery_factory import _beat_schedule
from worker.task_names import QueueNames, TaskNames

ROOT = Path(__file__).resolve().parents[2]
SENDERS = ["worker/enqueue.py", "worker/publishing.py", "worker/celery_factory.py"]
PRODUCT = ["calsync", "webhook", "worker", "intake", "models", "rules", "core"]


@pytest.fixture(scope="module")
def app() -> Celery:
    from worker.celery_app import app

    app.loader.import_default_modules()  # the app's `include`: every task module
    return app


def _task_names_used(path: Path) -> set[TaskNames]:
    """Every `TaskNames.X` a module mentions."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "TaskNames"
        ):
            used.add(TaskNames[node.attr])
    return used


def test_every_scheduled_task_is_registered(app: Celery) -> None:
    schedule = _beat_schedule(get_settings())
    assert schedule
    for entry, spec in schedule.items():
        assert spec["task"] in app.tasks, entry
        assert spec["task"] in set(TaskNames), entry


@pytest.mark.parametrize("sender", SENDERS)
def test_every_name_a_sender_uses_is_registered(app: Celery, sender: str) -> None:
    used = _task_names_used(ROOT / sender)
    assert used, f"{sender} names no task: is this test still reading the right file?"
    for name in used:
        assert str(name) in app.tasks, name


def test_every_registered_calsync_task_is_a_task_name(app: Celery) -> None:
    ours = {name for name in app.tasks if not name.startswith("celery.")}
    assert ours == {str(name) for name in TaskNames}


def test_no_task_name_is_spelled_out_in_product_code() -> None:
    names = {str(name) for name in TaskNames}
    found = []
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "worker" / "task_names.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and node.value in names:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert not found, "use TaskNames: " + ", ".join(found)


def _procfile_worker_queues(procfile: str, default_queue: str) -> set[str]:
    """The queues the Procfile's Celery workers consume, all together."""
    consumed: set[str] = set()
    for line in procfile.splitlines():
        _process, _, command = line.partition(":")
        words = shlex.split(command)
        if words[:2] != ["celery", "-A"] or "worker" not in words:
            continue
        queues: set[str] = set()
        for i, word in enumerate(words):
            if word in ("-Q", "--queues"):
                queues.update(words[i + 1].split(","))
            elif word.startswith("--queues="):
                queues.update(word.removeprefix("--queues=").split(","))
            elif word.startswith("-Q") and len(word) > 2:
                queues.update(word[2:].split(","))
        # Without -Q a Celery worker consumes the app's default queue only.
        consumed |= queues or {default_queue}
    assert consumed, "the Procfile has no worker process"
    return consumed


def test_every_queue_is_consumed_by_the_procfile_worker(app: Celery) -> None:
    default_queue = app.conf.task_default_queue
    assert default_queue == QueueNames.CALSYNC
    consumed = _procfile_worker_queues((ROOT / "Procfile").read_text(), default_queue)
    used = {str(queue) for queue in QueueNames}
    routes = app.conf.task_routes or {}
    assert isinstance(routes, dict), "task_routes changed shape: teach this test to read it"
    used |= {route["queue"] for route in routes.values() if "queue" in route}
    used |= {task.queue for task in app.tasks.values() if getattr(task, "queue", None)}
    assert used <= consumed, f"queues nobody consumes: {sorted(used - consumed)}"


@pytest.mark.parametrize(
    ("command", "queues"),
    [
        ("celery -A worker.celery_app worker --loglevel=INFO", {"default"}),
        ("celery -A worker.celery_app worker -Q calsync,alerts -c 2", {"calsync", "alerts"}),
        ("celery -A worker.celery_app worker --queues=alerts", {"alerts"}),
        ("celery -A worker.celery_app worker -Qalerts", {"alerts"}),
    ],
)
def test_procfile_reader(command: str, queues: set[str]) -> None:
    procfile = f"web: gunicorn app\nworker: {command}\nbeat: celery -A x beat -Q other\n"
    assert _procfile_worker_queues(procfile, "default") == queues


def test_messages_are_json_only(app: Celery) -> None:
    assert app.conf.task_serializer == "json"
    assert list(app.conf.accept_content) == ["json"]
