"""Beat task of the built-in notifier (`calsync.evaluate_alerts`)."""

from __future__ import annotations

from worker.alert_notifier import run_cycle
from worker.celery_app import app


@app.task(name="calsync.evaluate_alerts", ignore_result=True, expires=60)
def evaluate_alerts() -> int:
    """Evaluate alert conditions from the database and notify; returns messages sent."""
    return len(run_cycle().sent)
