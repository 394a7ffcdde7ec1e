"""calsync's web process: `gunicorn 'webhook:create_app()'` (see webhook/gunicorn_conf.py)."""

from webhook.app_factory import create_app

__all__ = ["create_app"]
