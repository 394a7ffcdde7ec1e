"""The baseline web app for bench/webhook_ingestion.py: Flask with nothing behind it.

`POST /webhooks/google` answers 204 without looking at the request, `GET /healthz` 200. It is
served by exactly calsync's gunicorn command line (config file, workers, threads), so the
ratio against it measures what calsync's own receiver costs on top of gunicorn + Flask.
"""

from __future__ import annotations

from flask import Flask, Response


def create_app() -> Flask:
    app = Flask("bare")

    @app.post("/webhooks/google")
    def receive() -> Response:
        return Response(status=204)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", status=200, mimetype="text/plain")

    return app
