"""GET /metrics: Prometheus exposition of every calsync process on this host (multiprocess
files: web workers, Celery pool processes) plus gauges computed from the database.

prometheus_client is reached only through calsync.metrics, which must be imported first
(it chooses multiprocess mode before prometheus_client loads)."""

from __future__ import annotations

from flask import Blueprint, Response

from calsync import metrics
from webhook.request_scope import app_settings

metrics.install_web_hooks()

metrics_blueprint = Blueprint("metrics", __name__)


@metrics_blueprint.get("/metrics")
def scrape() -> Response:
    body, content_type = metrics.exposition(app_settings())
    return Response(body, content_type=content_type)
