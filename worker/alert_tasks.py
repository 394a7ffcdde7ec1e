"""Beat task of the built-in notifier (`calsync.evaluate_alerts`)."""

from __future__ import annotations

from worker.alert_notifier import run_cycle
from worker.celery_app import app
from worker.task_names import TaskNames


# No retry: beat runs it again in 30 s.
@app.task(name=str(TaskNames.EVALUATE_ALERTS), max_retries=0, expires=60)
def evaluate_alerts() -> int:
    """Evaluate alert conditions from the database and notify; returns messages sent."""
    return len(run_cycle().sent)
