"""Celery entry point: `celery -A worker.celery_app worker` / `beat`."""

from worker.celery_factory import create_celery

app = create_celery()
